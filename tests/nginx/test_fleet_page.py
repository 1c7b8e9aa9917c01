"""The fleet page: the role's config in a real Nginx, the generator in loop mode, headless Chromium.

Set up once for the module (nginx_testlib explains the Nginx part): the role's config rendered
with the page on (an operator password, fleet.json's directory in the test's temp dir), two
real account services (A, B), a third account routed but with nothing on its port (DOWN), and
mt5farm-fleet-status in loop mode (``--every GENERATOR_EVERY``) writing fleet.json into the
directory Nginx serves it from, as the monitoring role's generator does (without Prometheus:
balances stay ``-``).

What is proved:
- plain HTTP clients: /fleet/ and /fleet/fleet.json answer 401 (JSON, a Basic challenge)
  without or with a wrong password, 200 with the right one; fleet.json is the report; a POST is
  refused (405, Allow: GET, HEAD) before any password is asked; nothing else under /fleet/;
- Debian's headless ``chromium`` with the credentials in the page's URL: ``--dump-dom`` (with
  ``--virtual-time-budget``) shows every account's row with its state, so the page's own
  fetch() of fleet.json authenticated with the credentials the browser holds for the origin;
- one page kept open (Chromium's DevTools protocol): account B's service is stopped and its row
  turns red (state down) within BOUND_S = GENERATOR_EVERY + the probe (a refused connection: at
  once; a hung service: --timeout 2 s) + REFRESH_S (the page's own interval) + 1 s of slack.
  A screenshot of the page then is kept as artifacts/fleet-page.png (git-ignored).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from farm_testing import unavailable
from nginx_testlib import (
    LOGIN_A,
    LOGIN_B,
    LOGIN_DOWN,
    OPS_API_KEYS,
    REPO,
    Nginx,
    Ports,
    Response,
    free_port,
    mt5_account_credential,
    one_farm_inventory,
    parse_response,
    raw_request,
    running_nginx,
    service_healthy,
    simulator_account,
    start_service,
    stop,
    wait_until,
)

PASSWORD = "fleet-page-test-password"
USER = "operator"
GENERATOR_EVERY = 2.0  # the generator's interval here (the monitoring role's default: 5 s)
REFRESH_S = 5.0  # the page's REFRESH_MS
BOUND_S = GENERATOR_EVERY + REFRESH_S + 1.0
ARTIFACT = REPO / "artifacts" / "fleet-page.png"


def chromium_binary() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        unavailable("chromium not found: install the Debian package 'chromium' (scripts/test-deps.sh)")
    return binary


@dataclass
class Fleet:
    nginx: Nginx
    fleet_dir: Path
    root: Path

    def page_url(self, user: str = USER, password: str = PASSWORD) -> str:
        return f"https://{user}:{password}@127.0.0.1:{self.nginx.https_port}/fleet/"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    chromium_binary()  # skipped (failed under CI) before anything starts
    root = Path(tempfile.mkdtemp(prefix="mt5-fleet-page-test-"))
    root.chmod(0o755)  # the workers (nobody, run as root) read fleet.json below it
    fleet_dir = root / "fleet-data"
    fleet_dir.mkdir(mode=0o755)
    processes: list[subprocess.Popen[bytes]] = []
    services: dict[int, subprocess.Popen[bytes]] = {}
    try:
        ports = {login: free_port() for login in (LOGIN_A, LOGIN_B, LOGIN_DOWN)}
        for login in (LOGIN_A, LOGIN_B):
            services[login] = start_service(
                root, login, ports[login], mt5_account_credential("fleet-page-base-0123456789", "api_key", login)
            )
        nginx_ports = Ports.free()
        inventory = one_farm_inventory([simulator_account(login, port) for login, port in ports.items()], nginx_ports, OPS_API_KEYS)
        platform = inventory["all"]["children"]["platform"]["hosts"]["farm"]
        platform.update({"platform_nginx_operator_password": PASSWORD, "platform_nginx_fleet_dir": str(fleet_dir)})
        accounts = [
            {"login": login, "server": "MT5Farm-Simulator", "host": "farm", "url": f"http://127.0.0.1:{port}", "enabled": True}
            for login, port in ports.items()
        ]
        (root / "accounts.json").write_text(json.dumps(accounts))
        with running_nginx(root, inventory, nginx_ports) as server:
            for login, service in services.items():
                wait_until(lambda s=service, p=ports[login]: s.poll() is not None or service_healthy(p), 40, f"account service {login}")
                assert service.poll() is None, (root / f"service-{login}/log").read_text()
            server.services, server.service_ports = services, ports
            generator = [sys.executable, str(REPO / "mt5farm/fleet_status.py"), "--accounts", str(root / "accounts.json")]
            generator += ["--format", "json", "--out", str(fleet_dir / "fleet.json"), "--every", str(GENERATOR_EVERY)]
            processes.append(subprocess.Popen(generator))
            wait_until(lambda: (fleet_dir / "fleet.json").exists(), 15, "the generator's first fleet.json")
            yield Fleet(server, fleet_dir, root)
    finally:
        for process in processes:
            stop(process)
        for service in services.values():
            stop(service)
        shutil.rmtree(root, ignore_errors=True)


def get(fleet: Fleet, path: str, method: str = "GET", auth: tuple[str, str] | None = None) -> Response:
    headers = "Host: localhost\r\nConnection: close\r\nContent-Length: 0\r\n"
    if auth:
        headers += "Authorization: Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() + "\r\n"
    return parse_response(raw_request(fleet.nginx.https_port, f"{method} {path} HTTP/1.1\r\n{headers}\r\n".encode()))


# --- plain HTTP clients -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/fleet/", "/fleet/fleet.json"])
def test_the_page_and_its_data_need_the_operator_password(fleet: Fleet, path: str) -> None:
    for auth in (None, (USER, "wrong-password"), ("admin", PASSWORD)):
        response = get(fleet, path, auth=auth)
        assert response.status == 401, (auth, response)
        assert response.headers["content-type"].startswith("application/json") and response.json()["error"] == "unauthorized"
        # One challenge (auth_basic's), and a message that asks for what this page takes.
        assert response.headers["www-authenticate"] == 'Basic realm="MT5 Farm fleet"'
        raw = raw_request(fleet.nginx.https_port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        assert raw.partition(b"\r\n\r\n")[0].lower().count(b"www-authenticate") == 1, raw
        assert response.json()["message"] == "The fleet page needs the operator password: HTTP basic auth, user operator."
    response = get(fleet, path, auth=(USER, PASSWORD))
    assert response.status == 200, response
    assert response.headers["cache-control"] == "no-store" and response.headers["x-content-type-options"] == "nosniff"


def test_the_page_is_html_and_fleet_json_is_the_report(fleet: Fleet) -> None:
    page = get(fleet, "/fleet/", auth=(USER, PASSWORD))
    assert page.headers["content-type"].startswith("text/html") and b"fleet.json" in page.body
    assert "default-src 'none'" in page.headers["content-security-policy"]
    data = get(fleet, "/fleet/fleet.json", auth=(USER, PASSWORD))
    assert data.headers["content-type"].startswith("application/json")
    report = data.json()
    assert [row["login"] for row in report["accounts"]] == [LOGIN_A, LOGIN_B, LOGIN_DOWN]
    assert report["hosts"][0]["host"] == "farm"


def test_a_post_is_refused_and_nothing_else_is_served(fleet: Fleet) -> None:
    for auth in (None, (USER, PASSWORD)):
        response = get(fleet, "/fleet/fleet.json", method="POST", auth=auth)
        assert response.status == 405 and response.headers["allow"] == "GET, HEAD", response
    for path in ("/fleet/operators.htpasswd", "/fleet/index.html", "/fleet/../auth/operators.htpasswd", "/fleetx"):
        response = get(fleet, path, auth=(USER, PASSWORD))
        assert response.status in (400, 404) and response.headers["content-type"].startswith("application/json"), (path, response)
    # Typed without its slash, the page's address leads to the page.
    response = get(fleet, "/fleet")
    assert response.status == 301 and response.headers["location"] == "/fleet/", response
    # The API keeps its own challenge.
    assert get(fleet, f"/accounts/{LOGIN_A}/api/account").headers["www-authenticate"] == 'Bearer realm="mt5farm"'


def test_password_guessing_is_rate_limited_per_address(fleet: Fleet) -> None:
    began = time.monotonic()
    statuses = [get(fleet, "/fleet/fleet.json", auth=(USER, f"guess-{n}")) for n in range(60)]
    elapsed = time.monotonic() - began
    limited = [response for response in statuses if response.status == 429]
    # 5 a second with bursts of 30: of 60 quick guesses, no more than the burst and 5 a second
    # reach the password check, the rest are refused before it. (Not "the last one is refused":
    # on a loaded machine a slow client sees the bucket refill between two guesses.)
    read = len(statuses) - len(limited)
    assert limited and read <= 30 + 5 * elapsed + 1, (round(elapsed, 2), [response.status for response in statuses])
    assert limited[0].json()["error"] == "rate_limited" and "fleet page" in limited[0].json()["message"]
    assert limited[0].headers["retry-after"] == "1"
    time.sleep(7)  # the burst refills (30 at 5 a second) before the next test reads the page
    assert get(fleet, "/fleet/fleet.json", auth=(USER, PASSWORD)).status == 200


# --- headless Chromium --------------------------------------------------------------------------------


def chromium_command(user_data: Path, *args: str) -> list[str]:
    # --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start.
    return [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--ignore-certificate-errors",  # Nginx's self-signed test certificate
        f"--user-data-dir={user_data}",
        "--window-size=1280,720",
        *args,
    ]


def rows_of(html: str) -> dict[int, str]:
    """login -> state of every account row of the page's DOM."""
    rows = re.findall(r'<tr class="([a-z]+)" data-login="(\d+)" data-state="([a-z]+)">', html)
    assert all(cls == state for cls, _, state in rows), rows
    return {int(login): state for _, login, state in rows}


def test_chromium_renders_every_account_with_its_state(fleet: Fleet, tmp_path: Path) -> None:
    command = chromium_command(tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", fleet.page_url())
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert rows_of(done.stdout) == {LOGIN_A: "healthy", LOGIN_B: "healthy", LOGIN_DOWN: "down"}, done.stdout[-3000:]
    assert '<tr data-host="farm">' in done.stdout
    # fleet.json was read by the page's own fetch(), with the credentials Chromium holds for the origin.
    assert re.search(r'<p id="status" class="">Generated \S+Z; refreshed every 5 s', done.stdout), done.stdout[:1500]


class DevTools:
    """One page of a headless Chromium, driven over its DevTools protocol (websockets' sync client)."""

    def __init__(self, user_data: Path) -> None:
        from websockets.sync.client import connect

        self.process = subprocess.Popen(
            chromium_command(user_data, "--remote-debugging-port=0", "about:blank"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        deadline = time.monotonic() + 60
        match = None
        while match is None and time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                break
            match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        assert match, "chromium did not open its DevTools port"
        port = match.group(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            page = next(t for t in json.loads(answer.read()) if t["type"] == "page")
        self.stack = contextlib.ExitStack()
        self.socket = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10))
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return dict(message["result"])

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        self.stack.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


STATES_JS = (
    "JSON.stringify(Object.fromEntries([...document.querySelectorAll('#accounts tbody tr')].map(r => [r.dataset.login, r.dataset.state])))"
)
COLOUR_JS = "getComputedStyle(document.querySelector('tr[data-login=\"%d\"] .state')).backgroundColor"


def test_a_stopped_account_turns_red_on_the_open_page_within_the_bound(fleet: Fleet, tmp_path: Path) -> None:
    browser = DevTools(tmp_path / "profile")
    try:
        browser.call("Page.navigate", url=fleet.page_url())

        def states() -> dict[int, str]:
            return {int(k): v for k, v in json.loads(browser.evaluate(STATES_JS) or "{}").items()}

        wait_until(lambda: states() == {LOGIN_A: "healthy", LOGIN_B: "healthy", LOGIN_DOWN: "down"}, 30, "the page's rows", interval=0.2)
        assert browser.evaluate(COLOUR_JS % LOGIN_B) == "rgb(30, 125, 50)"  # green
        stopped = time.monotonic()
        stop(fleet.nginx.services[LOGIN_B])
        wait_until(lambda: states().get(LOGIN_B) == "down", BOUND_S + 5, "account B's row to turn down", interval=0.1)
        elapsed = time.monotonic() - stopped
        print(f"account B's row turned red {elapsed:.1f} s after its service stopped (bound {BOUND_S:.0f} s)")
        assert elapsed <= BOUND_S, f"{elapsed:.1f} s > {BOUND_S} s"
        assert browser.evaluate(COLOUR_JS % LOGIN_B) == "rgb(198, 40, 40)"  # red
        assert "could not be read" not in browser.evaluate("document.getElementById('status').textContent")
        shot = browser.call("Page.captureScreenshot", format="png")["data"]
        ARTIFACT.parent.mkdir(exist_ok=True)
        ARTIFACT.write_bytes(base64.b64decode(shot))
        print(f"screenshot: {ARTIFACT}")
    finally:
        browser.close()
