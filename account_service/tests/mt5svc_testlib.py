"""Shared fixtures: the service served by a real uvicorn on loopback, real Redis and
PostgreSQL servers started privately for the session, and the RPyC simulator server.

Nothing here is a mock. The only stand-in is the SimulatedTerminal, which replaces the
MetaTrader 5 terminal that cannot exist on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from mt5_account_service.api import create_app
from mt5_account_service.backends.simulator import ManualClock, SimulatedTerminal
from mt5_account_service.config import Settings
from mt5_account_service.server import protocol

API_KEY = "test-key-0123456789abcdef"
OTHER_KEY = "second-key-abcdef0123456789"
LOGIN = 5550123
#: A Wednesday noon (UTC): forex markets open. Tests use this instant unless they need
#: the market closed; the price path is deterministic, so they also know the prices.
WEDNESDAY = datetime(2026, 1, 7, 12, 0, tzinfo=UTC).timestamp()
SATURDAY = datetime(2026, 1, 10, 12, 0, tzinfo=UTC).timestamp()
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def missing_binary(package: str, binary: str) -> None:
    """Skip (or, under CI, fail) when a Debian package's binary is absent."""
    message = f"{binary} not found: install the Debian package '{package}' (apt-get install {package})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# --- the service in-process, served by real uvicorn -----------------------------------------------
class LiveService:
    """The app served by uvicorn on a free loopback port, in a thread with its own loop."""

    def __init__(self, settings: Settings, backend: Any, http_protocol: Any = None) -> None:
        self.settings = settings
        self.backend = backend
        self.app = create_app(settings, backend=backend)
        self.port = settings.service_port
        # HTTPS when the settings carry a certificate (as cli.serve does).
        tls = settings.tls_cert_file is not None
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ws_url = f"{'wss' if tls else 'ws'}://127.0.0.1:{self.port}/ws"
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            http=http_protocol or protocol(),
            ws="websockets-sansio",
            lifespan="on",
            access_log=False,
            log_level="warning",
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=3,
            ssl_certfile=str(settings.tls_cert_file) if tls else None,
            ssl_keyfile=str(settings.tls_key_file) if tls else None,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def svc(self) -> Any:
        return self.app.state.svc

    def start(self) -> LiveService:
        self._thread.start()
        wait_until(lambda: self.server.started, timeout=15, what="uvicorn to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "uvicorn did not stop"

    def client(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def wait_healthy(self, timeout: float = 10.0) -> None:
        with self.client() as http:
            wait_until(lambda: http.get("/health").status_code == 200, timeout=timeout, what="/health to be 200")


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    secrets = tmp / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    base = Settings(
        login=LOGIN,
        server="MT5Farm-Simulator",
        backend="simulator",
        poll_interval=0.05,
        service_port=free_port(),
        secrets_dir=secrets,
        state_dir=tmp / "state",
        api_keys=(API_KEY, OTHER_KEY),
    )
    return replace(base, **overrides)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(WEDNESDAY)


@pytest.fixture
def terminal(clock: ManualClock) -> SimulatedTerminal:
    return SimulatedTerminal(clock=clock)


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., LiveService]]:
    """Factory: start_service(backend_or_None, **settings_overrides) -> a running service."""
    running: list[LiveService] = []

    def start(terminal_backend: Any, /, **overrides: Any) -> LiveService:
        settings = make_settings(tmp_path, **overrides)
        service = LiveService(settings, terminal_backend).start()
        running.append(service)
        return service

    yield start
    for service in running:
        if service._thread.is_alive():
            service.stop()


@pytest.fixture
def service(start_service: Callable[..., LiveService], terminal: SimulatedTerminal) -> LiveService:
    live = start_service(terminal)
    live.wait_healthy()
    return live


@pytest.fixture
def http(service: LiveService) -> Iterator[httpx.Client]:
    with service.client() as client:
        yield client


def next_message(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The next WebSocket message, as JSON."""
    return json.loads(ws.recv(timeout=timeout))


def next_of_type(ws: Any, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next WebSocket message of ``type`` ``kind`` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        message = next_message(ws, max(deadline - time.monotonic(), 0.01))
        if message["type"] == kind:
            return message


def ws_connect(service: LiveService, key: str | None = API_KEY, **kwargs: Any) -> Any:
    from websockets.sync.client import connect

    headers = {"X-API-Key": key} if key else {}
    return connect(service.ws_url, additional_headers=headers, open_timeout=5, **kwargs)


# --- real Redis -------------------------------------------------------------------------------
@dataclass
class RedisServer:
    port: int
    password: str
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        missing_binary("redis-server", "redis-server")
    port, password = free_port(), "redis-test-password-123"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", password],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, password, proc)
    client = server.client()

    def ping() -> bool:
        try:
            return bool(client.ping())
        except Exception:  # noqa: BLE001 - not up yet, whatever the client says
            return False

    wait_until(ping, timeout=10, what="redis-server to answer")
    yield server
    proc.terminate()
    proc.wait(timeout=10)


# --- real PostgreSQL ------------------------------------------------------------------------------
@dataclass
class PostgresServer:
    port: int
    datadir: Path
    sockdir: Path
    user: str | None  # the system user postgres runs as (None: the current user)
    password: str = "pg-test-password-123"

    @property
    def dsn(self) -> str:
        return f"postgresql://mt5svc@127.0.0.1:{self.port}/mt5farm"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", *args] if self.user else list(args)

    def start(self) -> None:
        subprocess.run(
            self._cmd(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-w",
                "-t",
                "30",
                "-l",
                str(self.datadir / "server.log"),
                "-o",
                f"-p {self.port} -h 127.0.0.1 -k {self.sockdir}",
                "start",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        subprocess.run(
            self._cmd(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-w", "-m", "fast", "stop"), check=True, stdout=subprocess.DEVNULL
        )

    def migrate(self) -> None:
        """Apply the service's migrations as the service would (its own connection helper)."""
        import asyncio

        from mt5_account_service.store import apply_migrations, connect_postgres

        async def run() -> None:
            conn = await connect_postgres(self.dsn, self.password)
            try:
                await apply_migrations(conn)
            finally:
                await conn.close()

        asyncio.run(run())

    def reset(self) -> None:
        """Drop every table of the database, so the next test migrates from scratch (a list
        of names would miss the tables of a later migration, whose CREATE POLICY then fails)."""
        tables = [name for (name,) in self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        if tables:
            self.query("DROP TABLE IF EXISTS " + ", ".join(f'"{name}"' for name in tables))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, password=self.password, autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description is not None else []


def _postgres_cluster(conf: str = "", hba: str | None = None, files: Sequence[Path] = ()) -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster with the role mt5svc owning the database mt5farm.

    ``conf``: more postgresql.conf lines; ``hba``: pg_hba.conf in place of initdb's (the
    local socket stays trusted for the setup); ``files``: copied into the data directory,
    owned by the server's user, 0600 (TLS certificate and key)."""
    if not (PG_BIN / "postgres").exists():
        missing_binary("postgresql", str(PG_BIN / "postgres"))
    root = Path(tempfile.mkdtemp(prefix="mt5-pg-"))
    datadir, sockdir = root / "data", root / "sock"
    sockdir.mkdir()
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            missing_binary("postgresql", "the 'postgres' system user")
        os.chmod(root, 0o755)
        shutil.chown(sockdir, pw.pw_uid, pw.pw_gid)
        datadir.mkdir()
        shutil.chown(datadir, pw.pw_uid, pw.pw_gid)
    server = PostgresServer(free_port(), datadir, sockdir, user)
    pwfile = root / "pwfile"
    pwfile.write_text("bootstrap-superuser-password\n")
    os.chmod(pwfile, 0o644)
    subprocess.run(
        server._cmd(
            str(PG_BIN / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "pgadmin",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--no-sync",
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with open(datadir / "postgresql.conf", "a") as handle:
        handle.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n" + conf)
    if hba is not None:
        (datadir / "pg_hba.conf").write_text("local all all trust\n" + hba)
    for source in files:
        target = datadir / source.name
        shutil.copyfile(source, target)
        os.chmod(target, 0o600)
        if user:
            shutil.chown(target, user, user)
    server.start()
    setup = f"CREATE ROLE mt5svc LOGIN PASSWORD '{server.password}';CREATE DATABASE mt5farm OWNER mt5svc;"
    subprocess.run(
        server._cmd(
            str(PG_BIN / "psql"),
            "-h",
            str(sockdir),
            "-p",
            str(server.port),
            "-U",
            "pgadmin",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            setup.split(";")[0],
            "-c",
            setup.split(";")[1],
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    yield server
    try:
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from _postgres_cluster()


@pytest.fixture(scope="session")
def postgres_tls_server(tls_material: TlsMaterial) -> Iterator[PostgresServer]:
    """Postgres as platform_postgres runs it with TLS on: TLS only over TCP (hostssl, and
    hostnossl rejected), the server's certificate from the farm's CA."""
    yield from _postgres_cluster(
        conf=f"ssl = on\nssl_cert_file = '{tls_material.cert.name}'\nssl_key_file = '{tls_material.key.name}'\n",
        hba="hostssl all all all scram-sha-256\nhostnossl all all all reject\n",
        files=(tls_material.cert, tls_material.key),
    )


# --- the RPyC simulator server (the mt5linux path) ----------------------------------------------------
@dataclass
class RpycSimulator:
    port: int
    process: subprocess.Popen[bytes] | None = None
    #: More simulator-rpyc options (the terminal's harder cases: --margin-mode netting, ...).
    args: tuple[str, ...] = ()
    #: Where the simulated terminal keeps its account (None: in memory, whatever STATE_DIR says).
    state_dir: Path | None = None

    def start(self) -> None:
        exe = shutil.which("mt5-account-service") or str(Path(sys.executable).parent / "mt5-account-service")
        self.process = subprocess.Popen(
            [exe, "simulator-rpyc", "--port", str(self.port), "--state-dir", str(self.state_dir or ""), *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_until(listening, timeout=15, what="the simulator RPyC server to listen")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def rpyc_simulator() -> Iterator[RpycSimulator]:
    sim = RpycSimulator(free_port())
    sim.start()
    yield sim
    sim.kill()


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


# --- a private CA and server certificates (openssl), for the TLS tests ------------------------------
@dataclass
class Pki:
    """A CA made by openssl in ``root``, like the farm's (roles/mt5_pki): ECDSA keys, serverAuth
    certificates naming what clients dial."""

    root: Path

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ca(self, name: str) -> Path:
        """A self-signed CA ``<name>-ca.pem`` (its key beside it); returns the certificate."""
        key, cert = self.root / f"{name}-ca-key.pem", self.root / f"{name}-ca.pem"
        self._openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
        self._openssl(
            "req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name} test CA",
            "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        return cert

    def server(self, ca: Path, name: str, sans: str) -> tuple[Path, Path]:
        """(cert, key) of a server certificate signed by ``ca`` with subjectAltName ``sans``."""
        ca_key = ca.with_name(ca.name.replace("-ca.pem", "-ca-key.pem"))
        key, csr, cert = self.root / f"{name}-key.pem", self.root / f"{name}.csr", self.root / f"{name}.pem"
        ext = self.root / f"{name}.ext"
        ext.write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyAgreement\n")
        self._openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
        self._openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        self._openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext),
        )  # fmt: skip
        os.chmod(key, 0o600)
        return cert, key


@dataclass
class TlsMaterial:
    ca: Path  # the farm's CA
    other_ca: Path  # a CA nobody's certificate comes from
    cert: Path  # names 127.0.0.1 only (dialling "localhost" is a wrong name)
    key: Path


@pytest.fixture(scope="session")
def tls_material() -> Iterator[TlsMaterial]:
    if shutil.which("openssl") is None:
        missing_binary("openssl", "openssl")
    root = Path(tempfile.mkdtemp(prefix="mt5-pki-"))
    os.chmod(root, 0o755)
    pki = Pki(root)
    ca = pki.ca("farm")
    other = pki.ca("other")
    cert, key = pki.server(ca, "server", "IP:127.0.0.1")
    yield TlsMaterial(ca, other, cert, key)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_tls_server(tls_material: TlsMaterial) -> Iterator[RedisServer]:
    """redis-server as platform_redis runs it with TLS on: no plaintext port (port 0), TLS on
    tls-port with the farm's certificate, clients authenticated by password (no client cert)."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing_binary("redis-server", "redis-server")
    port, password = free_port(), "redis-test-password-123"
    proc = subprocess.Popen(
        [
            binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--requirepass", password, "--tls-cert-file", str(tls_material.cert), "--tls-key-file", str(tls_material.key),
            "--tls-ca-cert-file", str(tls_material.ca), "--tls-auth-clients", "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = RedisServer(port, password, proc)

    def ping() -> bool:
        import redis

        try:
            client = redis.Redis.from_url(f"rediss://127.0.0.1:{port}/0", password=password, ssl_ca_certs=str(tls_material.ca))
            return bool(client.ping())
        except Exception:  # noqa: BLE001 - not up yet, whatever the client says
            return False

    wait_until(ping, timeout=10, what="redis-server (TLS) to answer")
    yield server
    proc.terminate()
    proc.wait(timeout=10)
