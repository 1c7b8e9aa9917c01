"""A real Nginx running the platform_nginx role's own config, in front of real account services.

Once per session:

- the role's config is rendered by Ansible (tests/nginx/render.yml calls the role's `render`
  entry point, so routes, keys, rate-limit zones and the services' derived keys come out exactly
  as a converge makes them) for a test inventory: accounts on free loopback ports;
- ``adapt_for_test`` changes the few lines of nginx.conf that cannot run unprivileged in a
  temp dir (user, pid, /etc/nginx paths, temp paths; and the client timeouts, so that the 408
  behaviour is seen in 1 s instead of 60). Everything else is the role's config as rendered;
- ``nginx -t``, then Debian's nginx on its own prefix (``-p <tmp> -e stderr -g 'daemon off;'``),
  its access log (stdout) and error log (stderr) captured to files; no system nginx service is
  used or needed;
- two account services (``mt5-account-service``, simulator backend), each holding only its own
  derived key; a third account is routed but down (nothing listens on its port).

The same steps serve the other modules here with inventories of their own: one_farm_inventory
(or farm_host_vars and platform_host_vars) builds the inventory, running_nginx renders, adapts,
checks and runs Nginx, start_service starts an account service.

Without nginx the tests are skipped, and fail under CI (like the other suites).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from farm_testing import unavailable

from mt5farm.credentials import mt5_account_credential

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# The test inventory's accounts: A and B are served, DOWN is routed but nothing listens.
LOGIN_A, LOGIN_B, LOGIN_DOWN = 5001001, 5001002, 5001003
UPSTREAM_BASE = "upstream-base-secret-0123456789abcdef"
FLEET_KEY = "mt5farm-demo-key"
SCOPED_KEY = "Fund-A-Scoped-Key-0123456789"  # fund-a: account A only
LIMITED_KEY = "Limited-Key-0123456789abcdef"  # limited: 1 request a minute, burst 1
READ_KEY = "Dashboard-Read-Key-0123456789"  # dashboard: every account, read only
OPS_API_KEYS: list[dict[str, Any]] = [{"name": "ops", "key": FLEET_KEY, "rate": "off"}]  # the fleet key alone, no rate limit
API_KEYS: list[dict[str, Any]] = [
    *OPS_API_KEYS,
    {"name": "fund-a", "key": SCOPED_KEY, "accounts": [LOGIN_A], "rate": "off"},
    {"name": "limited", "key": LIMITED_KEY, "rate": "1r/m", "burst": 1},
    {"name": "dashboard", "key": READ_KEY, "accounts": "all", "access": "read", "rate": "off"},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def nginx_binary() -> str:
    binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if binary is None:
        message = "nginx not found: install the Debian package 'nginx' (scripts/test-deps.sh, or apt-get install nginx)"
        unavailable(message)
    return binary


# --- the one place the role's rendered config is changed for the test -------------------------
def adapt_for_test(conf: str, root: Path) -> str:
    """TEST ADAPTATION of the role's rendered nginx.conf, so it runs unprivileged in ``root``.

    Only these lines change (each must be found exactly once, so a template change that moves
    them fails here rather than silently testing something else):
    - ``user nginx;`` is dropped (no such user here, and a non-root master cannot switch);
    - ``pid /run/nginx.pid;`` and every ``/etc/nginx/`` path point into ``root``;
    - temp paths in ``root`` (Debian's compiled-in ones are under /var/lib/nginx);
    - client_header_timeout / client_body_timeout 1 s (Nginx's default 60 s), to see 408.
    Listen addresses and ports are not changed here: they are the role's variables, given by
    the test inventory.
    """

    def once(pattern: str, replacement: str, text: str) -> str:
        new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"test adaptation: {pattern!r} found {count} times in the rendered nginx.conf"
        return new

    conf = once(r"^user nginx;\n", "", conf)
    conf = once(r"^pid /run/nginx\.pid;$", f"pid {root}/nginx.pid;", conf)
    conf = conf.replace("/etc/nginx/", f"{root}/")
    temp = "".join(f"    {kind}_temp_path {root}/temp/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = once(
        r"^http \{\n",
        "http {\n    # TEST ADAPTATION (tests/nginx/conftest.py)\n" + temp + "    client_header_timeout 1s;\n    client_body_timeout 1s;\n",
        conf,
    )
    return conf


@dataclass
class Nginx:
    root: Path
    https_port: int
    http_port: int
    status_port: int
    process: subprocess.Popen[bytes]
    access_log: Path
    error_log: Path
    services: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    service_ports: dict[int, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.https_port}{path}"

    def logs(self) -> str:
        return self.access_log.read_text(errors="replace") + self.error_log.read_text(errors="replace")

    def wait_logged(self, request_id: str) -> None:
        """The access log is buffered (flush=1s): wait until a request is in it (and all before it)."""
        wait_until(lambda: request_id in self.access_log.read_text(errors="replace"), 10, f"request {request_id} in the access log")


def raw_request(port: int, data: bytes, tls: bool = True, timeout: float = 5.0, sni: bool = True) -> bytes:
    """Send bytes as they are (malformed requests no client library would send); read to EOF."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname="localhost" if sni else None)
    with sock:
        sock.sendall(data)
        data = b""
        while not _complete(data):
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            data += chunk
    return data


def _complete(data: bytes) -> bool:
    """A whole response with a Content-Length is in (Nginx may keep the connection open a while
    after an error, in its lingering close, to read what the client still sends)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(sep and match and len(body) >= int(match.group(1)))


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_response(data: bytes) -> Response:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3}) ?(.*)", lines[0])
    assert match, f"not an HTTP/1.x response: {data[:300]!r}"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        decoded, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        body = decoded
    return Response(int(match.group(1)), match.group(2), headers, body)


def render(out: Path, inventory: dict[str, Any]) -> None:
    """The role's config, rendered by Ansible for the test inventory (tests/nginx/render.yml).

    MT5FARM_NGINX_TEST_ROLES (optional): a roles directory to render from instead of roles/,
    to run these tests against another version of the role (e.g. the committed one).
    """
    inventory_file = out.parent / "inventory.yml"
    inventory_file.write_text(yaml.safe_dump(inventory))
    roles = Path(os.environ.get("MT5FARM_NGINX_TEST_ROLES", REPO / "roles"))
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(roles), "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(inventory_file),
            str(REPO / "tests/nginx/render.yml"),
            "-e",
            f"nginx_test_out={out}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, "rendering the role's templates failed:\n" + done.stdout[-4000:] + done.stderr[-2000:]


def self_signed(out: Path) -> None:
    (out / "tls").mkdir(mode=0o700)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(out / "tls/key.pem"),
            "-out",
            str(out / "tls/cert.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def start_service(
    root: Path, login: int, port: int, key: str, tls: tuple[Path, Path, Path] | None = None, read_key: str | None = None
) -> subprocess.Popen[bytes]:
    """An account service holding only ``key`` (its own derived key) and, given, ``read_key``
    (its read-only one, secret file api_key_read), as its container would;
    with ``tls``, (ca, cert, key) also as its secret files tls_ca.pem, tls_cert.pem, tls_key.pem,
    as mt5_linux writes them (the service then serves HTTPS only). Its log: ``root/service-<login>/log``."""
    home = root / f"service-{login}"
    secrets = home / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "api_key").write_text(key + "\n")
    if read_key:
        (secrets / "api_key_read").write_text(read_key + "\n")
    if tls:
        for name, source in zip(("tls_ca.pem", "tls_cert.pem", "tls_key.pem"), tls, strict=True):
            shutil.copyfile(source, secrets / name)
    env = {
        **os.environ,
        "MT5_BACKEND": "simulator",
        "MT5_LOGIN": str(login),
        "SERVICE_PORT": str(port),
        "MT5_SECRETS_DIR": str(secrets),
        "STATE_DIR": str(home / "state"),
        "POLL_INTERVAL": "0.2",
        "LOG_LEVEL": "warning",
    }
    for name in ("REDIS_URL", "DATABASE_URL"):
        env.pop(name, None)
    log = open(home / "log", "wb")
    return subprocess.Popen([str(VENV_BIN / "mt5-account-service")], env=env, stdout=log, stderr=subprocess.STDOUT)


def service_healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --- the test inventory ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Ports:
    """Nginx's three listen ports on 127.0.0.1 (the role's https, http and status servers)."""

    https: int
    http: int
    status: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port())


def simulator_account(login: int, api_port: int, **extra: Any) -> dict[str, Any]:
    """One ``mt5_accounts`` entry: a simulator account whose service listens on ``api_port``;
    ``extra``: more of the account's keys (e.g. ``vnc=True``)."""
    return {"login": login, "server": "MT5Farm-Simulator", "backend": "simulator", "api_port": api_port, **extra}


def farm_host_vars(accounts: list[dict[str, Any]]) -> dict[str, Any]:
    """A farm host of the test inventory: run locally by this Python, its ``accounts`` on 127.0.0.1."""
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "mt5_bind_address": "127.0.0.1",
        "mt5_accounts": accounts,
    }


def platform_host_vars(ports: Ports, api_keys: list[dict[str, Any]]) -> dict[str, Any]:
    """The platform_nginx variables of the test inventory's platform host: Nginx on ``ports`` of
    127.0.0.1, one small worker, the clients' ``api_keys`` (platform_nginx_api_keys entries),
    the services' keys derived from UPSTREAM_BASE."""
    return {
        "platform_nginx_image": "nginx:test",
        "platform_nginx_listen_address": "127.0.0.1",
        "platform_nginx_https_port": ports.https,
        "platform_nginx_http_port": ports.http,
        "platform_nginx_status_port": ports.status,
        "platform_nginx_worker_processes": 1,
        "platform_nginx_worker_shutdown_timeout": 2,
        "platform_nginx_worker_connections": 512,
        "platform_nginx_upstream_api_key": UPSTREAM_BASE,
        "platform_nginx_api_keys": api_keys,
    }


def one_farm_inventory(accounts: list[dict[str, Any]], ports: Ports, api_keys: list[dict[str, Any]]) -> dict[str, Any]:
    """An inventory of one host, ``farm``, that is both the farm host of ``accounts`` (mt5_linux)
    and the platform host (see farm_host_vars, platform_host_vars)."""
    return {
        "all": {
            "children": {
                "mt5_linux": {"hosts": {"farm": farm_host_vars(accounts)}},
                "platform": {"hosts": {"farm": platform_host_vars(ports, api_keys)}},
            }
        }
    }


# --- Nginx running the role's config ----------------------------------------------------------------
@contextmanager
def running_nginx(root: Path, inventory: dict[str, Any], ports: Ports, staged: Mapping[str, Path] | None = None) -> Iterator[Nginx]:
    """Nginx running the role's config for ``inventory``, until the block ends (then SIGQUIT).

    The config is rendered into ``root/etc`` (render), adapted (adapt_for_test), given a
    self-signed pair (``tls/``), the files of ``staged`` (path in the config dir -> file to copy:
    what a converge stages beside the render, e.g. the upstream CA) and the temp dirs; then
    ``nginx -t`` must pass. Nginx's stdout and stderr (access and error log) go to
    ``root/access.log`` and ``root/error.log``. Yields once all three ``ports`` listen.
    Raises AssertionError when rendering, ``nginx -t`` or the start fails.
    """
    binary = nginx_binary()
    out = root / "etc"
    out.mkdir()
    render(out, inventory)
    conf = out / "nginx.conf"
    conf.write_text(adapt_for_test(conf.read_text(), out))
    self_signed(out)
    for name, source in (staged or {}).items():
        shutil.copyfile(source, out / name)
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (out / "temp" / kind).mkdir(parents=True)
    command = [binary, "-e", "stderr", "-p", str(out), "-c", str(conf)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"nginx -t refused the role's config:\n{checked.stderr}"
    access_log, error_log = root / "access.log", root / "error.log"
    with open(access_log, "wb") as stdout, open(error_log, "wb") as stderr:
        process = subprocess.Popen([*command, "-g", "daemon off;"], stdout=stdout, stderr=stderr)
    try:
        listen = (ports.https, ports.http, ports.status)
        wait_until(lambda: process.poll() is not None or all(_listening(p) for p in listen), 15, "nginx to listen")
        assert process.poll() is None, f"nginx exited: {error_log.read_text()}"
        yield Nginx(out, ports.https, ports.http, ports.status, process, access_log, error_log)
    finally:
        stop(process, signal.SIGQUIT)


@pytest.fixture(scope="session")
def nginx() -> Iterator[Nginx]:
    nginx_binary()  # skipped (failed under CI) before anything starts
    # Not pytest's tmp_path: its parents are 0700 and, run as root, the workers are nobody.
    root = Path(tempfile.mkdtemp(prefix="mt5-nginx-test-"))
    root.chmod(0o755)
    services: dict[int, subprocess.Popen[bytes]] = {}
    try:
        ports = {login: free_port() for login in (LOGIN_A, LOGIN_B, LOGIN_DOWN)}
        keys = {login: mt5_account_credential(UPSTREAM_BASE, "api_key", login) for login in (LOGIN_A, LOGIN_B)}
        # Start the services first: they take a few seconds, the render runs meanwhile.
        for login in (LOGIN_A, LOGIN_B):
            read_key = mt5_account_credential(UPSTREAM_BASE, "api_key_read", login)
            services[login] = start_service(root, login, ports[login], keys[login], read_key=read_key)
        nginx_ports = Ports.free()
        inventory = one_farm_inventory([simulator_account(login, port) for login, port in ports.items()], nginx_ports, API_KEYS)
        with running_nginx(root, inventory, nginx_ports) as server:
            server.services, server.service_ports = services, ports
            for login, service in services.items():
                # Bound now (default arguments): wait_until calls the lambda before the loop moves on.
                wait_until(
                    lambda service=service, login=login: service.poll() is not None or service_healthy(ports[login]),
                    40,
                    f"account service {login} to be healthy",
                )
                assert service.poll() is None, f"account service {login} exited: {(root / f'service-{login}/log').read_text()}"
            yield server
    finally:
        for service in services.values():
            stop(service)
        shutil.rmtree(root, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
