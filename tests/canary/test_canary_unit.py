"""The broker compatibility canary's judgement, pure (mt5farm/canary.py): journal, check, verdict."""

from __future__ import annotations

import pytest

from mt5farm import canary

ACCOUNT = {"login": 5001001, "server": "Simulator-Demo"}
HEALTHY = (200, {"connected": True, "auth_failed": False, "trade_allowed": True, "reason": "ok"})
INFO = (200, {"login": 5001001, "server": "Simulator-Demo"})
CHECK = (200, {"retcode": 0})
# Lines as MetaTrader 5 writes its journal (logs/YYYYMMDD.log): kind, time, source, message.
AUTH = "NG\t0\t09:15:02.114\tNetwork\t'5001001': authorization on Simulator-Demo failed (Invalid account)"
LOST = "KP\t0\t11:00:00.000\tNetwork\t'5001001': connection to Simulator-Demo lost"
FINE = "CS\t0\t09:15:03.001\tNetwork\t'5001001': authorized on Simulator-Demo through Access Server #1 (ping: 4.12 ms)"


def test_a_journal_in_utf16_as_the_terminal_writes_it_is_read() -> None:
    text = FINE + "\r\n" + AUTH + "\r\n"
    for data in (b"\xff\xfe" + text.encode("utf-16-le"), text.encode("utf-16-le"), text.encode("utf-8")):
        assert canary.decode_journal(data).splitlines() == [FINE, AUTH]


def test_only_lines_written_since_the_last_check_are_read() -> None:
    first, seen = canary.new_lines({"20261203.log": (FINE + "\n").encode("utf-16")}, {})
    assert first == [FINE]
    again, seen = canary.new_lines({"20261203.log": (FINE + "\n" + AUTH + "\n").encode("utf-16")}, seen)
    assert again == [AUTH]
    replaced, _ = canary.new_lines({"20261203.log": b"x\n"}, seen)  # shorter than read: read from its start
    assert replaced == ["x"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (AUTH, "authorization failed"),
        ("NG\t0\t09:00:00.000\tTerminal\tWine detected, this platform is not supported", "Wine or an emulator detected"),
        ("NG\t0\t09:00:00.000\tNetwork\tterminal build is an old version, update required", "old terminal version"),
    ],
)
def test_each_forbidden_line_is_found_and_named(line: str, reason: str) -> None:
    problems, drops = canary.judge(ACCOUNT, HEALTHY, INFO, CHECK, [FINE, line])
    assert len(problems) == 1 and problems[0].startswith(f"journal: {reason}: ") and drops == 0


def test_a_healthy_check_has_no_problem_and_counts_drops() -> None:
    assert canary.judge(ACCOUNT, HEALTHY, INFO, CHECK, [FINE, LOST]) == ([], 1)


def test_service_answers_are_judged() -> None:
    refused = (503, {"connected": False, "auth_failed": True, "reason": "authorization failed"})
    wrong = (200, {"login": 5001001, "server": "Other-Live"})
    problems, _ = canary.judge(ACCOUNT, refused, wrong, (409, {"error": "trading_disabled"}), None)
    assert problems[0] == "the trade server refused the login (auth_failed)"
    assert problems[1].startswith("not connected: authorization failed")
    assert "logged in as 5001001 on Other-Live, not 5001001 on Simulator-Demo" in problems
    assert any(p.startswith("order_check failed:") for p in problems)
    assert problems[-1] == "no terminal journal in /data/terminal/logs"
    assert canary.judge(ACCOUNT | {"backend": "simulator"}, HEALTHY, INFO, CHECK, None) == ([], 0)  # it keeps none
    assert canary.judge(ACCOUNT, "URLError: refused", INFO, CHECK, [])[0] == ["/health did not answer: URLError: refused"]


def record(day: int, problems: list[str] | None = None, drops: int = 0) -> dict:
    return {"time": f"2026-12-0{day}T09:00:00+00:00", "problems": problems or [], "drops": drops}


def test_the_prd_rule_passes_after_the_days_fails_on_any_problem_naming_it_once() -> None:
    assert canary.verdict([record(1), record(1)], days=7, max_drops=0) == ("RUNNING", [], 1)
    assert canary.verdict([record(d) for d in range(1, 8)], days=7, max_drops=0) == ("PASS", [], 7)
    bad = [record(1), record(2, [f"journal: authorization failed: {AUTH}"]), record(3, [f"journal: authorization failed: {AUTH}"])]
    state, reasons, seen = canary.verdict(bad, days=7, max_drops=0)
    assert (state, seen) == ("FAIL", 3) and reasons == [f"2026-12-02: journal: authorization failed: {AUTH}"]
    assert canary.verdict([record(1, drops=1)], days=1, max_drops=0)[1] == ["1 connection drop(s) in the journal, 0 allowed"]
    assert canary.verdict([record(1, drops=1)], days=1, max_drops=1)[0] == "PASS"


def test_the_report_says_the_decision() -> None:
    text = canary.render({5001001: ("PASS", [], 7), 5002001: ("FAIL", ["2026-12-02: journal: authorization failed: x"], 2)}, 7)
    assert "5001001: PASS after 7 day(s)" in text
    assert "5002001: FAIL after 2 day(s): move this broker's accounts to the Windows path" in text
    assert "  - 2026-12-02: journal: authorization failed: x" in text
