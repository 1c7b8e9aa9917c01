#!/usr/bin/python3
"""MT5 Farm broker compatibility canary: the PRD's decision point, run on a farm host.

    mt5farm-canary --accounts FILE --state-dir DIR [--days 7] [--max-drops 0]
                   [--symbol EURUSD] check|report

The PRD (seed 001, section 2.2, "Validation Checklist (Week 1)") tests the Linux (Wine) path
with a broker for 7 days: the terminal connects, no "Wine detected" errors in its logs, the
account is not flagged, API calls return valid data, no connection drops; if any check fails,
the site takes the Windows path. ``check`` does one round of that for every canary account of
``--accounts`` (a JSON list the mt5_linux role writes: ``login``, ``server``, ``url`` of its
account service, ``api_key_file``, ``container``, ``backend``, and ``ca``, the CA file an
https ``url`` is verified against):

* ``/health``: connected, not refused by the trade server (``auth_failed``), trading allowed;
* ``GET /api/account``: the login and the server are the expected ones (an API read);
* ``POST /api/orders/check``: the terminal's ``order_check`` of a minimal buy passes (nothing
  is sent);
* the terminal's journal (``/data/terminal/logs/*.log`` in the account's volume, read with
  ``docker cp``; MetaTrader writes it in UTF-16) since the last check: no line that says
  authorization failed, Wine (or an emulator) detected or not allowed, or an old version;
  lines saying a connection was lost count as drops. A terminal without a journal directory is
  a problem; the simulator writes none (a test writes one for it, named as such).

Each round is appended to ``DIR/<login>.jsonl`` (one JSON object per check: time, problems,
drops). ``report`` (and the end of ``check``) judges every account from its records by the
PRD's rule: FAIL as soon as any check found a problem or the drops exceed ``--max-drops``
(the PRD allows none), naming each reason and the day it was first seen; PASS once checks on
``--days`` different days (UTC) found none; else RUNNING, day k of n. The report is written to
``DIR/report.txt`` too. Exit 3 when an account FAILs (a verdict), 0 otherwise; 2 on a usage
error; anything else (1: a crash) is an error of the canary itself.

Standard library only; needs the docker CLI for the journal (root). Pure parts are unit-tested
(tests/canary/test_canary_unit.py).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import re
import ssl
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

JOURNAL_DIR = "/data/terminal/logs"
# What a journal line must never say (case-insensitive), by the reason the report gives.
PATTERNS: dict[str, str] = {
    "authorization failed": r"authori[sz]ation\b.*\bfailed|invalid account",
    "Wine or an emulator detected": r"\bwine\b.*\b(detected|not allowed|not supported|unsupported)\b"
    r"|\b(detected|not allowed|unsupported)\b.*\b(wine|emulator|virtual machine)\b",
    "old terminal version": r"\bold version\b|\bversion\b.*\b(no longer|not) supported\b|\bupdate (is )?required\b",
}
DROP = r"\bconnection\b.*\blost\b"
FAIL_EXIT = 3  # an account FAILs: the report's verdict, not an error of the canary
TIMEOUT = 10.0


# --- the journal ----------------------------------------------------------------------------


def decode_journal(data: bytes) -> str:
    """A MetaTrader journal file's text: UTF-16 LE (with or without its BOM, as the terminal
    writes it) or UTF-8 (a file a test or a tool wrote)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if len(data) >= 4 and data[1] == 0 and data[3] == 0:
        return data.decode("utf-16-le", errors="replace")
    return data.decode("utf-8", errors="replace")


def new_lines(files: Mapping[str, bytes], seen: Mapping[str, int]) -> tuple[list[str], dict[str, int]]:
    """The journal lines written since the last check, and the new per-file positions.

    ``seen``: file name -> characters already read. A file shorter than its position was
    replaced (a new day's file of the same name is not expected, but a restore may do it): it
    is read again from its start."""
    lines: list[str] = []
    positions: dict[str, int] = {}
    for name in sorted(files):
        text = decode_journal(files[name])
        start = seen.get(name, 0)
        start = 0 if start > len(text) else start
        lines += [line for line in text[start:].splitlines() if line.strip()]
        positions[name] = len(text)
    return lines, positions


def journal_findings(lines: Sequence[str], patterns: Mapping[str, str] = PATTERNS) -> tuple[dict[str, list[str]], int]:
    """The lines matching each reason's pattern (at most 3 kept per reason), and the drops."""
    found: dict[str, list[str]] = {}
    drops = 0
    for line in lines:
        for reason, pattern in patterns.items():
            if re.search(pattern, line, re.IGNORECASE):
                found.setdefault(reason, [])
                if len(found[reason]) < 3:
                    found[reason].append(line.strip()[:300])
        if re.search(DROP, line, re.IGNORECASE):
            drops += 1
    return found, drops


# --- one check ------------------------------------------------------------------------------


def judge(account: Mapping[str, Any], health: Any, info: Any, check: Any, journal: Sequence[str] | None) -> tuple[list[str], int]:
    """The problems of one check (sentences), and its connection drops.

    ``health``/``info``/``check``: (status, JSON body) of /health, GET /api/account and POST
    /api/orders/check, or an error string when there was no answer; ``journal``: the new
    lines, or None when the account has no journal."""
    problems: list[str] = []
    if isinstance(health, str):
        problems.append(f"/health did not answer: {health}")
    else:
        body = health[1] if isinstance(health[1], Mapping) else {}
        if body.get("auth_failed"):
            problems.append("the trade server refused the login (auth_failed)")
        if not body.get("connected"):
            problems.append(f"not connected: {body.get('reason') or 'no reason given'}")
        elif body.get("trade_allowed") is False:
            problems.append(f"trading not allowed: {body.get('trade_reason') or 'no reason given'}")
    if isinstance(info, str) or info[0] != 200:
        problems.append(f"GET /api/account failed: {info if isinstance(info, str) else info[1]}")
    else:
        login, server = info[1].get("login"), info[1].get("server")
        if login != account["login"] or server != account["server"]:
            problems.append(f"logged in as {login} on {server}, not {account['login']} on {account['server']}")
    if isinstance(check, str) or check[0] != 200:
        problems.append(f"order_check failed: {check if isinstance(check, str) else check[1]}")
    if journal is None:
        # A terminal keeps its journal from its first start; the simulator has none of its own.
        if account.get("backend") != "simulator":
            problems.append(f"no terminal journal in {JOURNAL_DIR}")
        return problems, 0
    found, drops = journal_findings(journal)
    problems += [f"journal: {reason}: {' | '.join(lines)}" for reason, lines in found.items()]
    return problems, drops


# --- the verdict ----------------------------------------------------------------------------


def kind_of(problem: str) -> str:
    """A problem's kind (its first clause; for a journal finding, its reason): the report names
    each kind once, on the day it was first seen."""
    head, _, rest = problem.partition(": ")
    return f"{head}: {rest.partition(':')[0]}" if head == "journal" else head


def verdict(records: Sequence[Mapping[str, Any]], days: int, max_drops: int) -> tuple[str, list[str], int]:
    """(PASS | FAIL | RUNNING, reasons, days checked) from an account's check records, oldest
    first (each {time: ISO UTC, problems: [...], drops: n}), by the PRD's rule."""
    seen_days = sorted({str(r["time"])[:10] for r in records})
    reasons: list[str] = []
    first: dict[str, str] = {}
    for record in records:
        for problem in record.get("problems") or []:
            first.setdefault(kind_of(problem), f"{str(record['time'])[:10]}: {problem}")
    reasons += list(first.values())
    drops = sum(int(r.get("drops") or 0) for r in records)
    if drops > max_drops:
        reasons.append(f"{drops} connection drop(s) in the journal, {max_drops} allowed")
    if reasons:
        return "FAIL", reasons, len(seen_days)
    if len(seen_days) >= days:
        return "PASS", [], len(seen_days)
    return "RUNNING", [], len(seen_days)


def render(results: Mapping[int, tuple[str, list[str], int]], days: int) -> str:
    """The report: one paragraph per account, and the PRD's decision."""
    out = [f"Broker compatibility canary (PRD: {days} days; any failed check means the Windows path)"]
    for login, (state, reasons, seen) in sorted(results.items()):
        if state == "RUNNING":
            out.append(f"{login}: RUNNING, day {seen} of {days}, no problem so far")
        elif state == "PASS":
            out.append(f"{login}: PASS after {seen} day(s): the Linux (Wine) path works with this broker")
        else:
            out.append(f"{login}: FAIL after {seen} day(s): move this broker's accounts to the Windows path (mt5_windows)")
            out += [f"  - {reason}" for reason in reasons]
    return "\n".join(out) + "\n"


# --- I/O ------------------------------------------------------------------------------------


def call(url: str, key: str | None, body: Mapping[str, Any] | None, context: ssl.SSLContext | None) -> tuple[int, Any] | str:
    """(status, JSON) of one request to an account service, or why there was no answer."""
    headers = {"Content-Type": "application/json"} | ({"X-API-Key": key} if key else {})
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except ValueError:
            return error.code, None
    except (OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}"


def read_journal(container: str) -> dict[str, bytes] | None:
    """The journal files of the account's volume (``docker cp`` works on a stopped container
    too), or None when there is no journal directory."""
    done = subprocess.run(["docker", "cp", f"{container}:{JOURNAL_DIR}/.", "-"], capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        return None
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith(".log"):
                handle = archive.extractfile(member)
                if handle is not None:
                    files[Path(member.name).name] = handle.read()
    return files


def load_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def check_account(account: Mapping[str, Any], state_dir: Path, symbol: str) -> dict[str, Any]:
    """One check of one account, appended to its records; returns the record."""
    key = Path(account["api_key_file"]).read_text().splitlines()[0].strip()
    context = ssl.create_default_context(cafile=str(account["ca"])) if account.get("ca") else None
    url = str(account["url"]).rstrip("/")
    health = call(f"{url}/health", None, None, context)
    info = call(f"{url}/api/account", key, None, context)
    check = call(f"{url}/api/orders/check", key, {"symbol": symbol, "type": "buy", "volume": 0.01}, context)
    positions_file = state_dir / f"{account['login']}.journal.json"
    seen = json.loads(positions_file.read_text()) if positions_file.is_file() else {}
    files = read_journal(str(account["container"]))
    lines, positions = new_lines(files, seen) if files is not None else (None, seen)
    problems, drops = judge(account, health, info, check, lines)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    record = {"time": now, "problems": problems, "drops": drops, "journal_lines": len(lines or [])}
    with (state_dir / f"{account['login']}.jsonl").open("a") as out:
        out.write(json.dumps(record) + "\n")
    positions_file.write_text(json.dumps(positions))
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mt5farm-canary", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=Path, required=True, help="JSON list of the canary accounts on this host")
    parser.add_argument("--state-dir", type=Path, required=True, help="records, journal positions and report.txt")
    parser.add_argument("--days", type=int, default=7, help="days of checks before PASS (PRD: 7)")
    parser.add_argument("--max-drops", type=int, default=0, help="connection drops allowed over the test (PRD: none)")
    parser.add_argument("--symbol", default="EURUSD", help="the symbol of the order_check (default EURUSD)")
    parser.add_argument("command", choices=["check", "report"])
    args = parser.parse_args(argv)
    if args.days < 1 or args.max_drops < 0:
        parser.error("--days must be at least 1 and --max-drops at least 0")
    accounts = json.loads(args.accounts.read_text())
    args.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    results = {}
    for account in accounts:
        if args.command == "check":
            check_account(account, args.state_dir, args.symbol)
        results[int(account["login"])] = verdict(load_records(args.state_dir / f"{account['login']}.jsonl"), args.days, args.max_drops)
    report = render(results, args.days)
    (args.state_dir / "report.txt").write_text(report)
    print(report, end="")
    return FAIL_EXIT if any(state == "FAIL" for state, _, _ in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
