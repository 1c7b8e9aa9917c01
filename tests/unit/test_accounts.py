"""mt5farm.accounts (the mt5_accounts filters): resolved accounts and their secret files."""

from __future__ import annotations

from typing import Any

import pytest

from mt5farm import accounts
from mt5farm.credentials import mt5_account_credential
from mt5farm.errors import FarmError

SECRET = "s3cr3t-Never-Print-Me"


def acct(login: Any = 1001, **extra: Any) -> dict[str, Any]:
    account = {"login": login, "server": "Broker-Live", "password": SECRET}
    account.update(extra)
    return account


# ---------------------------------------------------------------------------------------
# Resolved accounts
# ---------------------------------------------------------------------------------------


def test_resolved_accounts_name_port_and_limit_each_account_from_the_profile() -> None:
    (account,) = accounts.mt5_resolved_accounts([{"login": 12345678, "server": "Broker-Live"}])
    assert account["container"] == "mt5-12345678"
    assert account["volume"] == "mt5-12345678-data"
    assert account["api_port"] == 20000 + 5678
    assert account["vnc"] is False and account["vnc_port"] is None
    assert account["backend"] == "mt5linux"
    assert account["enabled"] is True
    assert account["memory_bytes"] == int(1.2 * 1024**3)
    assert account["memory_reservation_bytes"] == 768 * 1024**2
    assert account["nano_cpus"] == 500_000_000
    assert account["labels"] == {"mt5farm.login": "12345678", "mt5farm.server": "Broker-Live", "mt5farm.backend": "mt5linux"}


def test_resolved_accounts_take_the_accounts_own_overrides() -> None:
    (account,) = accounts.mt5_resolved_accounts(
        [
            {
                "login": 7,
                "server": "S",
                "memory": "512M",
                "cpus": 1.5,
                "api_port": 18007,
                "vnc": True,
                "vnc_password": SECRET,
                "enabled": False,
            }
        ]
    )
    assert account["api_port"] == 18007
    assert account["vnc_port"] == 30007
    assert account["memory_bytes"] == 512 * 1024**2
    assert account["memory_reservation_bytes"] == 512 * 1024**2  # never above the limit
    assert account["nano_cpus"] == 1_500_000_000
    assert account["enabled"] is False
    assert SECRET not in repr(account)


def test_windows_accounts_use_the_windows_profile_and_backend() -> None:
    (account,) = accounts.mt5_resolved_accounts([{"login": 7, "server": "S", "vnc": True}], "windows")
    assert account["memory_bytes"] == int(1.8 * 1024**3)
    assert account["backend"] == "mt5"
    assert account["vnc"] is False


def test_resolving_refuses_an_unvalidated_account() -> None:
    with pytest.raises(FarmError, match=r"run playbooks/validate\.yml"):
        accounts.mt5_resolved_accounts([{"login": "7"}])


def test_secrets_hold_each_enabled_accounts_files_and_the_common_ones() -> None:
    given = [
        acct(1),
        {"login": 2, "server": "S", "backend": "simulator"},
        acct(3, vnc=True, vnc_password="v3"),
        acct(4, enabled=False),
    ]
    secrets = accounts.mt5_account_secrets(given, {"api_key": "k", "redis_password": ""})
    assert secrets == {
        "1": {"api_key": "k", "password": SECRET},
        "2": {"api_key": "k"},
        "3": {"api_key": "k", "password": SECRET, "vnc_password": "v3"},
    }


def test_derived_secrets_are_each_accounts_own_credential() -> None:
    given = [acct(1), {"login": 2, "server": "S", "backend": "simulator"}, acct(3, enabled=False)]
    secrets = accounts.mt5_account_secrets(
        given,
        {"metrics_token_sha256": "ab" * 32},
        {"api_key": "fleet-key-0123456789\nsecond-key-0123456789", "redis_password": "redis-base-0123456789", "postgres_password": ""},
    )
    assert set(secrets) == {"1", "2"}
    for login in (1, 2):
        files = secrets[str(login)]
        assert files["api_key"] == mt5_account_credential("fleet-key-0123456789", "api_key", login)
        assert files["redis_password"] == mt5_account_credential("redis-base-0123456789", "redis_password", login)
        assert "postgres_password" not in files  # an empty base: no file
        assert files["metrics_token_sha256"] == "ab" * 32
    assert secrets["1"]["password"] == SECRET and "password" not in secrets["2"]
    # No account's credential opens another, and none is the base.
    assert secrets["1"]["api_key"] != secrets["2"]["api_key"]
    assert "fleet-key-0123456789" not in str(secrets)


def test_derived_must_be_a_mapping() -> None:
    with pytest.raises(FarmError, match="derived must map file names"):
        accounts.mt5_account_secrets([acct(1)], {}, ["api_key"])


def test_windows_accounts_carry_their_isolation_linux_ones_none() -> None:
    (hyperv, default) = accounts.mt5_resolved_accounts([acct(1, isolation="hyperv"), acct(2)], "windows")
    assert hyperv["isolation"] == "hyperv" and default["isolation"] is None
    (linux,) = accounts.mt5_resolved_accounts([acct(1)], "linux")
    assert linux["isolation"] is None


def test_resolving_names_the_os_it_does_not_know() -> None:
    with pytest.raises(FarmError, match=r"^mt5_resolved_accounts: os is not a known OS: got 'macos'"):
        accounts.mt5_resolved_accounts([acct(1)], "macos")


@pytest.mark.parametrize(("login", "api_port", "ports"), [(12345678, None, (25678, 35678)), (7, 18007, (18007, 30007))])
def test_account_ports_come_from_the_login_unless_set(login: int, api_port: int | None, ports: tuple[int, int]) -> None:
    assert accounts.account_ports(login, api_port) == ports
