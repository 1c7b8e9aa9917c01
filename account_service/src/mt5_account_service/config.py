"""Settings: parsed once from the environment and the secret files, then read-only.

Secrets (broker password, API keys, Redis/Postgres passwords) come only from files in
``MT5_SECRETS_DIR``; they are kept out of ``repr`` so a logged settings object leaks nothing.
So do the TLS files of a farm of more than one host (``tls_files``): the farm's CA, which
Redis' and Postgres' certificates are verified against, and the host's certificate and key,
with which the service serves HTTPS.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .server_time import LIMIT, OFFSET_STEP

BACKENDS = ("simulator", "mt5linux", "mt5")
#: The largest trade body is a few hundred bytes; 64 KiB leaves ample room and caps what
#: a request can make the service buffer.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
#: The TLS files in MT5_SECRETS_DIR (written by the mt5_linux role from the farm's PKI).
TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE = "tls_ca.pem", "tls_cert.pem", "tls_key.pem"


class ConfigError(ValueError):
    """The configuration is unusable; the message names the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    login: int
    server: str
    backend: str
    poll_interval: float = 0.5
    service_port: int = 8000
    mt5linux_host: str = "127.0.0.1"
    mt5linux_port: int = 18812
    terminal_path: str | None = None
    #: The terminal build the image was built with (MT5_IMAGE_BUILD, set by the Wine image's
    #: entrypoint from its build report); None: unknown (no terminal in the image, or no
    #: version resource). Exported as mt5_image_terminal_build next to the running build.
    image_build: int | None = None
    secrets_dir: Path = Path("/run/secrets/mt5")
    redis_url: str | None = None
    redis_ttl: int = 30
    advertise_url: str | None = None
    database_url: str | None = None
    snapshot_interval: float = 60.0
    state_dir: Path = Path("/var/lib/mt5-account")
    ws_queue_size: int = 256
    simulator_balance: float = 10_000.0
    simulator_leverage: int = 100
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    snapshot_retention_days: int = 90
    #: Seconds the trade server's clock is ahead of UTC, when the operator fixes it
    #: (MT5_SERVER_TIME_OFFSET); None: learned from quotes (server_time.py).
    server_time_offset: int | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Keys that read and stream but never trade (``api_key_read``, one per line): GET and
    #: WebSocket only, 403 ``read_only_key`` for any other method (issue 15).
    read_api_keys: tuple[str, ...] = field(default=(), repr=False)
    password: str | None = field(default=None, repr=False)
    redis_password: str | None = field(default=None, repr=False)
    postgres_password: str | None = field(default=None, repr=False)
    #: SHA-256 hex digests of the Prometheus scrape token(s): the container holds only the
    #: digests, so it cannot present the token to another account's /metrics.
    metrics_token_sha256: tuple[str, ...] = field(default=(), repr=False)
    #: The CA certificate that Redis' (rediss://) and Postgres' (sslmode=verify-*) server
    #: certificates are verified against; None: the system's CAs.
    tls_ca_file: Path | None = None
    #: Certificate and key to serve HTTPS with; None: plain HTTP.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @property
    def stale_after(self) -> float:
        """Age after which the last poll counts as stale for /health."""
        return max(3.0 * self.poll_interval, 5.0)

    @property
    def endpoint(self) -> str:
        """What Redis advertises for this account (ADVERTISE_URL, else host:port)."""
        return self.advertise_url or f"{socket.gethostname()}:{self.service_port}"


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _int(env: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int:
    raw = _get(env, name)
    if raw is None:
        if default is None:
            raise ConfigError(f"{name} is required (an integer from {low} to {high})")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range: use {low}..{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range: use {low}..{high}")
    return value


def read_secret(directory: Path, name: str) -> str | None:
    path = directory / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None
    text = text.strip()
    return text or None


def _digests(directory: Path, name: str) -> tuple[str, ...]:
    """One lowercase SHA-256 hex digest per line (blank lines ignored)."""
    lines = [line.strip().lower() for line in (read_secret(directory, name) or "").splitlines()]
    digests = tuple(line for line in lines if line)
    for number, digest in enumerate(digests, 1):
        if not _SHA256_HEX.fullmatch(digest):
            raise ConfigError(
                f"{directory / name}: entry {number} is not a SHA-256 hex digest (64 hex "
                f"characters): write the digest of the token, e.g. `printf %s TOKEN | "
                f"sha256sum`, never the token itself"
            )
    return digests


def tls_files(directory: Path) -> tuple[Path | None, Path | None, Path | None]:
    """(ca, cert, key): the TLS files present in the secrets ``directory``, None for each absent.

    Raises ConfigError when only one of the certificate and the key is there.
    """
    ca, cert, key = (directory / name for name in (TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE))
    if cert.is_file() != key.is_file():
        raise ConfigError(f"{cert} and {key} go together: write both to serve HTTPS, or neither")
    return (ca if ca.is_file() else None, cert if cert.is_file() else None, key if key.is_file() else None)


def _reject_inline_password(name: str, url: str | None) -> None:
    if url and urlsplit(url).password is not None:
        raise ConfigError(
            f"{name} must not contain a password: put it in the secret file instead (redis_password / postgres_password in MT5_SECRETS_DIR)"
        )


def _server_time_offset(env: Mapping[str, str]) -> int | None:
    if not _get(env, "MT5_SERVER_TIME_OFFSET"):
        return None
    offset = _int(env, "MT5_SERVER_TIME_OFFSET", None, -LIMIT, LIMIT)
    if offset % OFFSET_STEP:
        raise ConfigError(
            f"MT5_SERVER_TIME_OFFSET={offset} is not a whole number of {OFFSET_STEP} s: give the "
            f"trade server's UTC offset in seconds, e.g. 7200 for UTC+2, or leave it unset to learn it"
        )
    return offset


def read_keys(secrets_dir: Path, name: str) -> tuple[str, ...]:
    """The keys of the secret file ``name`` (one per line; none when it is absent);
    ConfigError for a key shorter than 16 characters."""
    text = read_secret(secrets_dir, name)
    keys = tuple(line.strip() for line in (text or "").splitlines() if line.strip())
    if any(len(key) < 16 for key in keys):
        raise ConfigError(f"every API key in {secrets_dir / name} must be at least 16 characters")
    return keys


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``) and the secret files."""
    env = os.environ if env is None else env
    backend = _get(env, "MT5_BACKEND") or "simulator"
    if backend not in BACKENDS:
        raise ConfigError(f"MT5_BACKEND={backend!r} is unknown: use one of {', '.join(BACKENDS)}")
    secrets_dir = Path(_get(env, "MT5_SECRETS_DIR") or "/run/secrets/mt5")
    api_keys = read_keys(secrets_dir, "api_key")
    if not api_keys:
        raise ConfigError(f"no API key: write at least one key (one per line) to {secrets_dir / 'api_key'}")
    read_api_keys = read_keys(secrets_dir, "api_key_read")
    if set(api_keys) & set(read_api_keys):
        raise ConfigError(
            f"a key is in both {secrets_dir / 'api_key'} and {secrets_dir / 'api_key_read'}: a key either trades or only reads"
        )
    password = read_secret(secrets_dir, "password")
    if password is None and backend != "simulator":
        raise ConfigError(f"MT5_BACKEND={backend} needs the broker password in {secrets_dir / 'password'}")
    redis_url, database_url = _get(env, "REDIS_URL"), _get(env, "DATABASE_URL")
    _reject_inline_password("REDIS_URL", redis_url)
    _reject_inline_password("DATABASE_URL", database_url)
    tls_ca, tls_cert, tls_key = tls_files(secrets_dir)
    return Settings(
        login=_int(env, "MT5_LOGIN", None, 1, 2**63 - 1),
        server=_get(env, "MT5_SERVER") or ("MT5Farm-Simulator" if backend == "simulator" else ""),
        backend=backend,
        poll_interval=_float(env, "POLL_INTERVAL", 0.5, 0.01, 60.0),
        service_port=_int(env, "SERVICE_PORT", 8000, 1, 65535),
        mt5linux_host=_get(env, "MT5LINUX_HOST") or "127.0.0.1",
        mt5linux_port=_int(env, "MT5LINUX_PORT", 18812, 1, 65535),
        terminal_path=_get(env, "MT5_TERMINAL_PATH"),
        image_build=_int(env, "MT5_IMAGE_BUILD", 0, 0, 10**7) or None,
        secrets_dir=secrets_dir,
        redis_url=redis_url,
        redis_ttl=_int(env, "REDIS_TTL", 30, 3, 86400),
        advertise_url=_get(env, "ADVERTISE_URL"),
        database_url=database_url,
        snapshot_interval=_float(env, "SNAPSHOT_INTERVAL", 60.0, 0.1, 86400.0),
        state_dir=Path(_get(env, "STATE_DIR") or "/var/lib/mt5-account"),
        ws_queue_size=_int(env, "WS_QUEUE_SIZE", 256, 1, 100_000),
        simulator_balance=_float(env, "SIMULATOR_BALANCE", 10_000.0, 0.0, 1e12),
        simulator_leverage=_int(env, "SIMULATOR_LEVERAGE", 100, 1, 10_000),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1024, 16 * 2**20),
        snapshot_retention_days=_int(env, "SNAPSHOT_RETENTION_DAYS", 90, 1, 36_500),
        server_time_offset=_server_time_offset(env),
        api_keys=api_keys,
        read_api_keys=read_api_keys,
        password=password,
        redis_password=read_secret(secrets_dir, "redis_password"),
        postgres_password=read_secret(secrets_dir, "postgres_password"),
        metrics_token_sha256=_digests(secrets_dir, "metrics_token_sha256"),
        tls_ca_file=tls_ca,
        tls_cert_file=tls_cert,
        tls_key_file=tls_key,
    )
