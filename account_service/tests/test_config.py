"""Settings from environment + secret files, parsed once, with errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from mt5_account_service.config import ConfigError, load_settings


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    (tmp_path / "api_key").write_text("key-one-0123456789abcdef\n\nkey-two-0123456789abcdef\n")
    return tmp_path


def env(secrets: Path, **extra: str) -> dict[str, str]:
    return {"MT5_LOGIN": "1234", "MT5_SECRETS_DIR": str(secrets), **extra}


def test_defaults(secrets: Path) -> None:
    s = load_settings(env(secrets))
    assert (s.login, s.backend, s.poll_interval, s.service_port) == (1234, "simulator", 0.5, 8000)
    assert (s.mt5linux_host, s.mt5linux_port, s.redis_ttl, s.snapshot_interval) == ("127.0.0.1", 18812, 30, 60.0)
    assert str(s.state_dir) == "/var/lib/mt5-account"
    assert s.api_keys == ("key-one-0123456789abcdef", "key-two-0123456789abcdef")
    assert s.stale_after == 5.0
    assert load_settings(env(secrets, POLL_INTERVAL="3")).stale_after == 9.0


def test_secrets_come_from_files_and_never_show_in_repr(secrets: Path) -> None:
    (secrets / "password").write_text("broker-secret\n")
    (secrets / "redis_password").write_text("redis-secret")
    (secrets / "postgres_password").write_text("pg-secret")
    s = load_settings(env(secrets, MT5_BACKEND="mt5linux"))
    assert (s.password, s.redis_password, s.postgres_password) == ("broker-secret", "redis-secret", "pg-secret")
    text = repr(s)
    for secret in ("broker-secret", "redis-secret", "pg-secret", "key-one"):
        assert secret not in text


@pytest.mark.parametrize(
    "extra,fragment",
    [
        ({"MT5_LOGIN": ""}, "MT5_LOGIN is required"),
        ({"MT5_LOGIN": "abc"}, "MT5_LOGIN='abc' is not an integer"),
        ({"MT5_BACKEND": "wine"}, "use one of simulator, mt5linux, mt5"),
        ({"POLL_INTERVAL": "0"}, "POLL_INTERVAL=0.0 is out of range"),
        ({"SERVICE_PORT": "70000"}, "SERVICE_PORT=70000 is out of range"),
        ({"REDIS_URL": "redis://:hunter2@redis:6379/0"}, "REDIS_URL must not contain a password"),
        ({"DATABASE_URL": "postgresql://svc:hunter2@db/mt5"}, "DATABASE_URL must not contain"),
        ({"MT5_BACKEND": "mt5"}, "needs the broker password"),
    ],
)
def test_bad_configuration_is_explained(secrets: Path, extra: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(env(secrets, **extra))
    assert fragment in str(error.value)


def test_missing_or_short_api_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no API key: write at least one key"):
        load_settings(env(tmp_path))
    (tmp_path / "api_key").write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_settings(env(tmp_path))


def test_read_only_keys_come_from_their_own_file(tmp_path: Path) -> None:
    (tmp_path / "api_key").write_text("trading-key-0123456789\n")
    assert load_settings(env(tmp_path)).read_api_keys == ()
    (tmp_path / "api_key_read").write_text("dashboard-key-0123456789\n\nsecond-reader-0123456789\n")
    assert load_settings(env(tmp_path)).read_api_keys == ("dashboard-key-0123456789", "second-reader-0123456789")
    (tmp_path / "api_key_read").write_text("short\n")
    with pytest.raises(ConfigError, match="api_key_read must be at least 16 characters"):
        load_settings(env(tmp_path))
    (tmp_path / "api_key_read").write_text("trading-key-0123456789\n")
    with pytest.raises(ConfigError, match="a key either trades or only reads"):
        load_settings(env(tmp_path))
