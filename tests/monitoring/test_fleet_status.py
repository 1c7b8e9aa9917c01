"""mt5farm.fleet_status: the fleet status report (table, JSON, exit code) from /health and Prometheus.

The pure parts from tables of inputs; then the program itself against real account services
(the simulator backend, tests/nginx/nginx_testlib.start_service) and a port where nothing
listens, one shot and in loop mode, and against a small real HTTP server standing in for
Prometheus' query API (a stand-in: it answers the queries the program asks with fixed series).
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mt5farm import fleet_status as fs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nginx"))  # nginx_testlib: the account service runner
from nginx_testlib import free_port, service_healthy, start_service, stop, wait_until

PROGRAM = Path(fs.__file__)
NOW = 1_790_000_000.0


def account(login: int = 5001001, enabled: bool = True, host: str = "farm-01") -> fs.Account:
    return fs.Account(login, "Demo-Sim", host, f"http://127.0.0.1:{20000 + login % 10000}", enabled)


HEALTHY = fs.Probe(200, {"status": "ok", "connected": True, "trade_allowed": True, "reason": None})
DEGRADED = fs.Probe(503, {"status": "degraded", "connected": False, "reason": "terminal not connected", "trade_allowed": None})
AUTH = fs.Probe(503, {"status": "degraded", "connected": False, "reason": "invalid account", "auth_failed": True})
REFUSED = fs.Probe(None, error="Connection refused")


# --- inputs ----------------------------------------------------------------------------------


def test_accounts_file_is_parsed_and_sorted_by_login() -> None:
    data = [
        {"login": 7, "server": "B", "host": "h2", "url": "https://10.0.0.2:20007/", "enabled": False},
        {"login": 3, "server": "A", "host": "h1", "url": "http://127.0.0.1:20003"},
    ]
    assert fs.parse_accounts(data) == [
        fs.Account(3, "A", "h1", "http://127.0.0.1:20003", True),
        fs.Account(7, "B", "h2", "https://10.0.0.2:20007", False),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"login": 1}, "JSON list"),
        (["x"], "account #0 is not a JSON object"),
        ([{"login": "5", "url": "http://x"}], "login must be a positive integer"),
        ([{"login": True, "url": "http://x"}], "login must be a positive integer"),
        ([{"login": 5, "url": "ftp://x"}], "account 5: url must start with http"),
        ([{"login": 5, "url": "http://x", "enabled": "yes"}], "account 5: enabled must be true or false"),
    ],
)
def test_a_bad_accounts_file_is_a_usage_error_naming_the_entry(data: Any, message: str) -> None:
    with pytest.raises(fs.UsageError, match=message):
        fs.parse_accounts(data)


def test_a_prometheus_vector_is_read_and_anything_else_is_empty() -> None:
    payload = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"login": "5001001"}, "value": [NOW, "10000.5"]},
                {"metric": {"login": "5001002"}, "value": [NOW, "NaN-ish"]},
                {"metric": {}, "value": [NOW]},
            ],
        },
    }
    assert fs.parse_vector(payload) == [({"login": "5001001"}, 10000.5)]
    assert fs.parse_vector({"status": "error"}) == []
    assert fs.parse_vector({"status": "success", "data": {"resultType": "matrix", "result": []}}) == []
    assert fs.parse_vector(None) == []


def test_container_series_are_taken_from_the_account_container_only() -> None:
    def series(container: str, value: float, service: str = "account", **extra: str) -> tuple[dict[str, str], float]:
        return ({"container": container, "login": "5001001", "service": service, **extra}, value)

    vectors = {
        "running": [series("mt5-5001001", 1), series("mt5-5001001-mt5farm-prev", 0)],
        "restarts": [series("mt5-5001001", 3), series("mt5-5001001-mt5farm-prev", 9)],
        "held": [series("mt5-5001001", 0)],
        "started": [series("mt5-5001001", NOW - 90)],
        "info": [series("mt5-5001001", 1, image="mt5farm/account:abc123")],
        "healthy": [series("mt5-redis", 1, service="redis")],
    }
    assert fs.account_containers(vectors) == {
        5001001: {
            "container": "mt5-5001001",
            "running": True,
            "restarts": 3,
            "held": False,
            "started": NOW - 90,
            "image": "mt5farm/account:abc123",
        }
    }


# --- state and reason ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acct", "probe", "container", "state", "reason"),
    [
        (account(), HEALTHY, {}, "healthy", None),
        (
            account(),
            fs.Probe(200, {"trade_allowed": False, "trade_reason": "AutoTrading is off"}),
            {},
            "healthy",
            "trading not allowed: AutoTrading is off",
        ),
        (account(), DEGRADED, {}, "degraded", "terminal not connected"),
        (account(), AUTH, {}, "degraded", "login refused by the broker: invalid account"),
        (account(), fs.Probe(500, None), {}, "degraded", "/health answered 500"),
        (account(), REFUSED, {}, "down", "no answer from http://127.0.0.1:21001/health: Connection refused"),
        (account(), REFUSED, {"running": False}, "down", "container not running"),
        (
            account(),
            REFUSED,
            {"running": False, "held": True},
            "held",
            "stopped by an operator (make start LOGINS=5001001, or mt5farm-account start 5001001 on its host)",
        ),
        # Started again: the service answers before Prometheus' hold series follows (up to a minute).
        (account(), HEALTHY, {"running": False, "held": True}, "healthy", None),
        (account(enabled=False), None, {}, "disabled", "disabled in the inventory"),
        (account(), None, {}, "down", "not probed"),
    ],
)
def test_state_and_reason(acct: fs.Account, probe: fs.Probe | None, container: dict[str, Any], state: str, reason: str | None) -> None:
    assert fs.classify(acct, probe, container) == (state, reason)


def test_a_row_has_every_field_and_missing_data_is_null() -> None:
    full = fs.row(
        account(),
        HEALTHY,
        {"balance": 10000.0, "equity": 10012.5, "positions": 2.0},
        {"running": True, "started": NOW - 3600, "restarts": 1, "image": "mt5farm/account:abc"},
        NOW,
        None,
    )
    assert full == {
        "login": 5001001,
        "server": "Demo-Sim",
        "host": "farm-01",
        "enabled": True,
        "state": "healthy",
        "reason": None,
        "connected": True,
        "trade_allowed": True,
        "balance": 10000.0,
        "equity": 10012.5,
        "positions": 2,
        "image": "mt5farm/account:abc",
        "uptime_s": 3600,
        "restarts": 1,
        "last_change": None,
    }
    bare = fs.row(account(), REFUSED, {}, {"running": False, "started": NOW - 50}, NOW, None)
    assert {key for key, value in bare.items() if value is not None} == {"login", "server", "host", "enabled", "state", "reason"}


def test_last_change_is_kept_while_the_state_holds_and_set_when_it_changes() -> None:
    rows = [{"login": 1, "state": "healthy"}, {"login": 2, "state": "down"}, {"login": 3, "state": "healthy"}]
    previous = {1: ("healthy", "2026-01-01T00:00:00Z"), 2: ("healthy", None)}
    assert fs.changes(rows, previous, "2026-01-02T00:00:00Z") == {
        1: ("healthy", "2026-01-01T00:00:00Z"),
        2: ("down", "2026-01-02T00:00:00Z"),
        3: ("healthy", None),
    }


def test_last_change_survives_a_restart_of_the_loop_through_the_written_report() -> None:
    earlier = {"accounts": [{"login": 1, "state": "down", "last_change": "2026-01-01T00:00:00Z"}, {"login": 2, "state": "bogus"}, "x"]}
    assert fs.previous_changes(earlier) == {1: ("down", "2026-01-01T00:00:00Z")}
    assert fs.previous_changes([]) == {}


def test_host_totals_count_states_and_sum_known_money() -> None:
    rows: list[dict[str, Any]] = [
        {"host": "b", "state": "healthy", "balance": 100.0, "equity": 101.0},
        {"host": "a", "state": "down", "balance": None, "equity": None},
        {"host": "b", "state": "degraded", "balance": 50.25, "equity": None},
        {"host": "b", "state": "held", "balance": None, "equity": None},
        {"host": "b", "state": "disabled", "balance": None, "equity": None},
    ]
    assert fs.host_totals(rows) == [
        {"host": "a", "accounts": 1, "healthy": 0, "not_healthy": 1, "held": 0, "disabled": 0, "balance": None, "equity": None},
        {"host": "b", "accounts": 4, "healthy": 1, "not_healthy": 1, "held": 1, "disabled": 1, "balance": 150.25, "equity": 101.0},
    ]


def test_the_exit_code_counts_enabled_accounts_neither_healthy_nor_held() -> None:
    rows = [
        {"login": 1, "enabled": True, "state": "healthy"},
        {"login": 2, "enabled": True, "state": "held"},
        {"login": 3, "enabled": False, "state": "disabled"},
    ]
    assert fs.failing(rows) == []
    assert [r["login"] for r in fs.failing([*rows, {"login": 4, "enabled": True, "state": "degraded"}])] == [4]


def test_the_report_joins_probes_prometheus_and_the_previous_round() -> None:
    accounts = [account(5001001), account(5001002), account(5001003, enabled=False, host="farm-02")]
    vectors = {
        "balance": [({"login": "5001001"}, 1000.0)],
        "equity": [({"login": "5001001"}, 990.0)],
        "positions": [({"login": "5001001"}, 1.0)],
        "running": [({"login": "5001002", "service": "account", "container": "mt5-5001002"}, 0.0)],
    }
    previous = {5001001: ("down", "2026-01-01T00:00:00Z"), 5001002: ("down", "2026-01-01T00:00:00Z")}
    data, kept = fs.report(accounts, {5001001: HEALTHY, 5001002: REFUSED}, vectors, NOW, previous, ["a note"])
    assert data["generated"] == fs.iso(NOW) == "2026-09-21T14:13:20Z"
    assert [(r["login"], r["state"], r["last_change"]) for r in data["accounts"]] == [
        (5001001, "healthy", "2026-09-21T14:13:20Z"),
        (5001002, "down", "2026-01-01T00:00:00Z"),
        (5001003, "disabled", None),
    ]
    assert data["accounts"][0]["balance"] == 1000.0 and data["accounts"][1]["reason"] == "container not running"
    assert [h["host"] for h in data["hosts"]] == ["farm-01", "farm-02"] and data["notes"] == ["a note"]
    assert kept[5001001] == ("healthy", "2026-09-21T14:13:20Z")


def test_the_text_form_is_an_aligned_table_with_totals_and_what_is_wrong() -> None:
    accounts = [account(5001001), account(5001002)]
    data, _ = fs.report(accounts, {5001001: HEALTHY, 5001002: DEGRADED}, {"balance": [({"login": "5001001"}, 1000.0)]}, NOW, {})
    text = fs.render_text(data)
    lines = text.splitlines()
    assert lines[0] == "Fleet status at 2026-09-21T14:13:20Z"
    header = lines[2]
    assert header.startswith("LOGIN    SERVER    HOST     STATE")
    first, second = lines[3], lines[4]
    assert first.index("healthy") == header.index("STATE") == second.index("degraded")
    assert "1000.00" in first and "terminal not connected" in second
    assert "farm-01  2         1        1" in text
    assert lines[-1] == "1 enabled account(s) not healthy: 5001002 degraded (terminal not connected)"
    assert not any(line != line.rstrip() for line in lines)


def test_durations_and_cells() -> None:
    assert [fs.duration(s) for s in (None, 42, 423, 18720, 273600)] == ["-", "42s", "7m3s", "5h12m", "3d4h"]
    assert [fs.cell(v) for v in (None, True, False, 1.5, 7, "x")] == ["-", "yes", "no", "1.50", "7", "x"]


def test_the_file_is_replaced_atomically_and_readable(tmp_path: Path) -> None:
    out = tmp_path / "fleet" / "fleet.json"
    fs.write_atomic(out, "one")
    fs.write_atomic(out, "two")
    assert out.read_text() == "two" and out.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["fleet.json"]


# --- the program against real processes -----------------------------------------------------------


class FakePrometheus(http.server.BaseHTTPRequestHandler):
    """A STAND-IN for Prometheus' /api/v1/query: fixed series per metric name (SERIES)."""

    SERIES: ClassVar[dict[str, list[dict[str, Any]]]] = {}

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query).get("query", [""])[0]
        result = self.SERIES.get(query, [])
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
        self.send_response(200 if url.path == "/api/v1/query" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Path, int, int]]:
    """A real account service (simulator) on a free port, and a port where nothing listens;
    the accounts file naming both: (file, healthy login, down login)."""
    up, down = 5001001, 5001003
    port, dead = free_port(), free_port()
    service = start_service(tmp_path, up, port, "fleet-status-test-key-0123456789")
    try:
        wait_until(lambda: service.poll() is not None or service_healthy(port), 40, "the account service to be healthy")
        assert service.poll() is None, (tmp_path / f"service-{up}/log").read_text()
        accounts = [
            {"login": up, "server": "MT5Farm-Simulator", "host": "farm", "url": f"http://127.0.0.1:{port}", "enabled": True},
            {"login": down, "server": "MT5Farm-Simulator", "host": "farm", "url": f"http://127.0.0.1:{dead}", "enabled": True},
            {"login": 5001009, "server": "MT5Farm-Simulator", "host": "farm", "url": "http://127.0.0.1:9", "enabled": False},
        ]
        path = tmp_path / "accounts.json"
        path.write_text(json.dumps(accounts))
        yield path, up, down
    finally:
        stop(service)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROGRAM), *args], capture_output=True, text=True, timeout=60)


def test_the_program_reports_a_real_service_healthy_and_a_silent_port_down(live: tuple[Path, int, int], prometheus: str) -> None:
    accounts, up, down = live
    FakePrometheus.SERIES = {
        "mt5_account_balance": [{"metric": {"login": str(up)}, "value": [NOW, "10000"]}],
        "mt5_container_restart_count": [
            {"metric": {"login": str(up), "service": "account", "container": f"mt5-{up}"}, "value": [NOW, "2"]}
        ],
    }
    started = time.monotonic()
    done = run("--accounts", str(accounts), "--prometheus", prometheus, "--format", "json")
    assert time.monotonic() - started < 10
    assert done.returncode == 1, done.stderr
    rows = {r["login"]: r for r in json.loads(done.stdout)["accounts"]}
    assert rows[up]["state"] == "healthy" and rows[up]["connected"] is True and rows[up]["trade_allowed"] is True
    assert rows[up]["balance"] == 10000.0 and rows[up]["restarts"] == 2 and rows[up]["equity"] is None
    assert rows[down]["state"] == "down" and "Connection refused" in rows[down]["reason"]
    assert rows[5001009]["state"] == "disabled"
    text = run("--accounts", str(accounts))
    assert text.returncode == 1
    assert f"1 enabled account(s) not healthy: {down} down" in text.stdout
    assert "note: Prometheus" not in text.stdout  # none asked for: no note either


def test_all_healthy_exits_0_and_usage_errors_exit_2(live: tuple[Path, int, int], tmp_path: Path) -> None:
    accounts, up, _ = live
    only_up = tmp_path / "up.json"
    only_up.write_text(json.dumps([a for a in json.loads(accounts.read_text()) if a["login"] == up]))
    assert run("--accounts", str(only_up)).returncode == 0
    missing = run("--accounts", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "--accounts" in missing.stderr
    assert run("--accounts", str(only_up), "--every", "5").returncode == 2


def test_loop_mode_rewrites_the_file_and_marks_the_change(live: tuple[Path, int, int], tmp_path: Path) -> None:
    accounts, up, down = live
    out = tmp_path / "fleet" / "fleet.json"
    out.parent.mkdir()
    # An earlier report: the down account was healthy then, so this run sees it change.
    out.write_text(json.dumps({"accounts": [{"login": down, "state": "healthy", "last_change": None}]}))
    loop = subprocess.Popen(
        [sys.executable, str(PROGRAM), "--accounts", str(accounts), "--format", "json", "--out", str(out), "--every", "0.5"]
    )
    try:

        def rows() -> dict[int, Any] | None:
            try:
                data = json.loads(out.read_text())
            except ValueError:
                return None
            return {r["login"]: r for r in data.get("accounts", [])} if "generated" in data else None

        seen = wait_until(rows, 15, "the loop to write its first report")
        assert seen[down]["state"] == "down" and seen[down]["last_change"] is not None
        first = json.loads(out.read_text())["generated"]
        wait_until(lambda: json.loads(out.read_text())["generated"] != first, 5, "a second report")
        assert rows()[up]["last_change"] is None  # type: ignore[index]
    finally:
        loop.terminate()
        assert loop.wait(timeout=10) == 0  # SIGTERM ends it cleanly (docker stop)


def test_the_hosts_holds_replace_prometheus_lagging_ones() -> None:
    """playbooks/status.yml passes --holds from mt5farm-account status: right after make stop,
    before the container metrics and a scrape carry it, the account is held, not down."""
    accounts = [account(), account(login=5001002)]
    probes = {5001001: REFUSED, 5001002: REFUSED}
    vectors = {
        "held": [
            ({"container": "mt5-5001001", "login": "5001001", "service": "account"}, 0.0),
            ({"container": "mt5-5001002", "login": "5001002", "service": "account"}, 1.0),
        ]
    }
    data, _ = fs.report(accounts, probes, vectors, NOW, {}, (), holds={5001001})
    assert [r["state"] for r in data["accounts"]] == ["held", "down"]
    assert fs.failing(data["accounts"]) == [data["accounts"][1]]
    assert fs.parse_holds("5001001, 5001003,") == {5001001, 5001003} and fs.parse_holds("") == set() and fs.parse_holds(None) is None
    with pytest.raises(fs.UsageError, match="not a login: abc"):
        fs.parse_holds("5001001,abc")


def test_uptime_only_while_the_service_answers() -> None:
    # A stopped account's container series still say running until the next collector pass.
    stale = {"running": True, "started": NOW - 3600}
    assert fs.row(account(), REFUSED, {}, stale, NOW, None)["uptime_s"] is None
    assert fs.row(account(), HEALTHY, {}, stale, NOW, None)["uptime_s"] == 3600
