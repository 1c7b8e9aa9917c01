"""mt5farm.container_specs: each account container reaches Redis
and Postgres as its own user and role (least privilege), on Linux and Windows alike."""

from __future__ import annotations

import pytest

from mt5farm import container_specs as containers

ACCOUNT = {"login": 5001001, "server": "S", "backend": "simulator"}
SETTINGS = {
    "poll_interval": 0.5,
    "env": {"REDIS_URL": "redis://mt5-redis:6379/0", "DATABASE_URL": "postgresql://mt5_writer@mt5-postgres:5432/mt5farm", "OTHER": 1},
}


def test_the_urls_name_the_accounts_own_user_and_role() -> None:
    env = containers.account_service_env(ACCOUNT, SETTINGS, "/run/secrets/mt5", "/data/service", "http://127.0.0.1:21001")
    assert env["REDIS_URL"] == "redis://mt5-account-5001001@mt5-redis:6379/0"
    assert env["DATABASE_URL"] == "postgresql://mt5_account_5001001@mt5-postgres:5432/mt5farm"
    assert env["OTHER"] == "1"
    assert SETTINGS["env"]["REDIS_URL"] == "redis://mt5-redis:6379/0"  # the host's settings are not changed


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("redis://10.0.0.11:6379/0", "redis://mt5-account-7@10.0.0.11:6379/0"),
        ("redis://someone@10.0.0.11:6379/0", "redis://someone@10.0.0.11:6379/0"),  # a site's own user: kept
        ("postgresql://mt5_writer@10.0.0.11:5432/fund", "postgresql://mt5_account_7@10.0.0.11:5432/fund"),
        ("postgresql://10.0.0.11:5432/fund", "postgresql://10.0.0.11:5432/fund"),
        # over TLS (mt5_tls): the account's own user too, the TLS parameters kept
        ("rediss://10.0.0.11:6379/0", "rediss://mt5-account-7@10.0.0.11:6379/0"),
        ("rediss://someone@10.0.0.11:6379/0", "rediss://someone@10.0.0.11:6379/0"),
        (
            "postgresql://mt5_writer@10.0.0.11:5432/fund?sslmode=verify-full",
            "postgresql://mt5_account_7@10.0.0.11:5432/fund?sslmode=verify-full",
        ),
    ],
)
def test_account_url(url: str, want: str) -> None:
    assert containers.account_url(url, 7) == want


def test_no_platform_no_urls() -> None:
    env = containers.account_service_env(ACCOUNT, {"poll_interval": 0.5, "env": {}}, "/s", "/d", "http://x")
    assert "REDIS_URL" not in env and "DATABASE_URL" not in env
