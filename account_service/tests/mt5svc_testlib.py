"""Shared fixtures: the service served by a real uvicorn on loopback, real Redis and
PostgreSQL servers started privately for the session, and the RPyC simulator server.

Nothing here is a mock. The only stand-in is the SimulatedTerminal, which replaces the
MetaTrader 5 terminal that cannot exist on this machine.
"""

from __future__ import annotations

import asyncio
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
from collections.abc import Callable, Iterator
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
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
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

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, password=self.password, autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description is not None else []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
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
    with open(datadir / "postgresql.conf", "a") as conf:
        conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
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


# --- the RPyC simulator server (the mt5linux path) ----------------------------------------------------
@dataclass
class RpycSimulator:
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mt5-account-service") or str(Path(sys.executable).parent / "mt5-account-service")
        self.process = subprocess.Popen(
            [exe, "simulator-rpyc", "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
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
