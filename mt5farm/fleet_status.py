#!/usr/bin/python3
"""The MT5 Farm fleet status: every account's state, reason, money and container, as a table or JSON.

    mt5farm-fleet-status --accounts FILE [--prometheus URL] [--ca FILE]
                         [--format text|json] [--out FILE] [--every SECONDS]

``--accounts``: the JSON list the monitoring role writes from the inventory (or the status
playbook, for one host's accounts), one object per account: ``login``, ``server``, ``host``,
``url`` (where its account service answers, ``http://`` or ``https://``), ``enabled``.

What it reads, and nothing else (no Docker socket): each enabled account's open ``/health``
(200 healthy; 503 with ``reason``, ``connected``, ``trade_allowed``, ``trade_reason``,
``auth_failed``; no answer within ``--timeout`` = down), probed concurrently, https ones
verified against ``--ca``; and, with ``--prometheus``, instant queries for the accounts'
balance, equity and open positions and for the container series node exporter publishes from
``mt5farm-container-metrics`` (running, healthy, restarts; held, started time and image when
present). Anything missing is shown as ``-`` (null in JSON), never an error.

A row's state: ``healthy`` (/health 200), ``degraded`` (it answers, but not 200), ``down``
(no answer), ``held`` (stopped by an operator, ``mt5farm-account stop``), ``disabled``
(``enabled: false`` in the inventory). ``last_change`` is when the state last changed: kept
across ``--every`` rounds and across restarts of the loop (read back from ``--out``); null
when not seen to change.

One shot (no ``--every``): prints (or writes to ``--out``) the report and exits 1 when an
enabled account is neither healthy nor held, else 0; 2 on a usage error (cron, CI, the status
playbook). With ``--every N`` it rewrites ``--out`` atomically every N seconds, forever (the
fleet page's generator, a container of the monitoring role).

Standard library only (Python 3.10 or later); installed by the monitoring role as
/usr/local/sbin/mt5farm-fleet-status. Everything but ``main`` and the network calls is pure
and unit-tested (tests/monitoring/test_fleet_status.py).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import signal
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATES = ("healthy", "degraded", "down", "held", "disabled")
# Prometheus series read, by the name used in a row.
ACCOUNT_QUERIES = {"balance": "mt5_account_balance", "equity": "mt5_account_equity", "positions": "mt5_open_positions"}
CONTAINER_QUERIES = {
    "running": "mt5_container_running",
    "healthy": "mt5_container_healthy",
    "restarts": "mt5_container_restart_count",
    "held": "mt5_container_held",
    "started": "mt5_container_started_timestamp_seconds",
    "info": "mt5_container_info",
}
# Containers the reconcile module keeps beside an account's own during an update: not the account's.
SIDE_SUFFIXES = ("-mt5farm-next", "-mt5farm-prev")


class UsageError(Exception):
    """A bad argument or accounts file: exit code 2, with this message."""


@dataclass(frozen=True)
class Account:
    login: int
    server: str
    host: str
    url: str
    enabled: bool


@dataclass(frozen=True)
class Probe:
    """One /health answer: ``status`` the HTTP status (None without an answer), ``body`` its
    JSON object (None when there is none), ``error`` why there was no answer."""

    status: int | None
    body: Mapping[str, Any] | None = None
    error: str | None = None


# A Prometheus instant vector: (labels, value) per series.
Vector = list[tuple[dict[str, str], float]]


# --- inputs -----------------------------------------------------------------------------------


def parse_accounts(data: Any) -> list[Account]:
    """The accounts of an accounts file's JSON, sorted by login.

    Raises UsageError naming the entry when the data is not a list of objects with an integer
    ``login``, a ``url`` starting http:// or https://, and ``server``, ``host``, ``enabled``.
    """
    if not isinstance(data, list):
        raise UsageError(f"the accounts file must hold a JSON list of accounts, not {type(data).__name__}")
    out = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise UsageError(f"account #{index} is not a JSON object: {entry!r}")
        login = entry.get("login")
        if isinstance(login, bool) or not isinstance(login, int) or login <= 0:
            raise UsageError(f"account #{index}: login must be a positive integer, got {login!r}")
        url = entry.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise UsageError(f"account {login}: url must start with http:// or https://, got {url!r}")
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise UsageError(f"account {login}: enabled must be true or false, got {enabled!r}")
        out.append(Account(login, str(entry.get("server", "")), str(entry.get("host", "")), url.rstrip("/"), enabled))
    return sorted(out, key=lambda account: account.login)


def parse_vector(payload: Any) -> Vector:
    """The series of a Prometheus ``/api/v1/query`` answer (resultType vector); [] for any
    other shape, and a series whose value is not a number is left out."""
    if not isinstance(payload, dict) or payload.get("status") != "success":
        return []
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        return []
    out: Vector = []
    for item in data.get("result") or []:
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            out.append((labels, float(item["value"][1])))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            continue
    return out


def by_login(vector: Vector) -> dict[int, float]:
    """The value of each login's series (label ``login``); the first one when there are several."""
    out: dict[int, float] = {}
    for labels, value in vector:
        login = labels.get("login", "")
        if login.isdigit():
            out.setdefault(int(login), value)
    return out


def account_containers(vectors: Mapping[str, Vector]) -> dict[int, dict[str, Any]]:
    """Per login, its account container's series: running, healthy, held (bools), restarts,
    started (numbers), image (from ``mt5_container_info``'s label) and container (its name).

    Only series with ``service="account"`` count; the side containers of an update
    (``-mt5farm-next``, ``-mt5farm-prev``) are left out.
    """
    out: dict[int, dict[str, Any]] = {}
    for key, vector in vectors.items():
        for labels, value in vector:
            login, name = labels.get("login", ""), labels.get("container", "")
            if labels.get("service") != "account" or not login.isdigit() or name.endswith(SIDE_SUFFIXES):
                continue
            entry = out.setdefault(int(login), {"container": name})
            if key == "info":
                if value:
                    entry["image"] = labels.get("image")
            elif key in ("running", "healthy", "held"):
                entry[key] = value >= 1
            else:
                entry[key] = value
    return out


# --- one row ------------------------------------------------------------------------------------


def classify(account: Account, probe: Probe | None, container: Mapping[str, Any]) -> tuple[str, str | None]:
    """(state, reason) of an account from its /health probe and its container's series."""
    if not account.enabled:
        return "disabled", "disabled in the inventory"
    # Held only while the service does not answer: the hold in Prometheus lags a start by up
    # to a collector interval and a scrape, and an account that answers is not stopped.
    if container.get("held") and (probe is None or probe.status is None):
        return "held", f"stopped by an operator (make start LOGINS={account.login}, or mt5farm-account start {account.login} on its host)"
    if probe is None:
        return "down", "not probed"
    if probe.status is None:
        if container.get("running") is False:
            return "down", "container not running"
        return "down", f"no answer from {account.url}/health: {probe.error}"
    body = probe.body or {}
    if probe.status == 200:
        if body.get("trade_allowed") is False:
            return "healthy", f"trading not allowed: {body.get('trade_reason') or 'no reason given'}"
        return "healthy", None
    if body.get("auth_failed"):
        return "degraded", f"login refused by the broker: {body.get('reason') or 'authorization failed'}"
    if body.get("reason"):
        return "degraded", str(body["reason"])
    return "degraded", f"/health answered {probe.status}"


def row(
    account: Account,
    probe: Probe | None,
    metrics: Mapping[str, float],
    container: Mapping[str, Any],
    now: float,
    last_change: str | None,
) -> dict[str, Any]:
    """The report's row of one account. ``metrics``: balance, equity, positions when known."""
    state, reason = classify(account, probe, container)
    body = (probe.body if probe else None) or {}
    started = container.get("started")
    # Only while the service answers: the container series lag a stop by up to a collector
    # interval and a scrape.
    answers = probe is not None and probe.status is not None
    uptime = int(now - started) if started and answers and now >= started else None
    positions = metrics.get("positions")
    restarts = container.get("restarts")
    return {
        "login": account.login,
        "server": account.server,
        "host": account.host,
        "enabled": account.enabled,
        "state": state,
        "reason": reason,
        "connected": body.get("connected") if isinstance(body.get("connected"), bool) else None,
        "trade_allowed": body.get("trade_allowed") if isinstance(body.get("trade_allowed"), bool) else None,
        "balance": metrics.get("balance"),
        "equity": metrics.get("equity"),
        "positions": None if positions is None else int(positions),
        "image": container.get("image"),
        "uptime_s": uptime,
        "restarts": None if restarts is None else int(restarts),
        "last_change": last_change,
    }


def changes(
    rows: Iterable[Mapping[str, Any]], previous: Mapping[int, tuple[str, str | None]], now_iso: str
) -> dict[int, tuple[str, str | None]]:
    """Each login's (state, last_change) after this round: unchanged state keeps its time, a
    changed one gets ``now_iso``, a login not seen before gets None (not seen to change)."""
    out: dict[int, tuple[str, str | None]] = {}
    for item in rows:
        login, state = item["login"], item["state"]
        if login not in previous:
            out[login] = (state, None)
        elif previous[login][0] == state:
            out[login] = previous[login]
        else:
            out[login] = (state, now_iso)
    return out


def previous_changes(report: Any) -> dict[int, tuple[str, str | None]]:
    """(state, last_change) per login from an earlier JSON report ({} when it has none)."""
    out: dict[int, tuple[str, str | None]] = {}
    if isinstance(report, dict):
        for item in report.get("accounts") or []:
            if isinstance(item, dict) and isinstance(item.get("login"), int) and item.get("state") in STATES:
                last = item.get("last_change")
                out[item["login"]] = (item["state"], last if isinstance(last, str) else None)
    return out


def host_totals(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per host, sorted: accounts, healthy, not_healthy (enabled ones that are not), held,
    disabled, and the sums of the known balances and equities (null when none is known)."""
    hosts: dict[str, dict[str, Any]] = {}
    for item in rows:
        total = hosts.setdefault(
            item["host"],
            {
                "host": item["host"],
                "accounts": 0,
                "healthy": 0,
                "not_healthy": 0,
                "held": 0,
                "disabled": 0,
                "balance": None,
                "equity": None,
            },
        )
        total["accounts"] += 1
        if item["state"] == "healthy":
            total["healthy"] += 1
        elif item["state"] in ("held", "disabled"):
            total[item["state"]] += 1
        else:
            total["not_healthy"] += 1
        for key in ("balance", "equity"):
            if item[key] is not None:
                total[key] = round((total[key] or 0.0) + item[key], 2)
    return [hosts[name] for name in sorted(hosts)]


def failing(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The enabled accounts that are neither healthy nor held (exit code 1 when there are any)."""
    return [item for item in rows if item["enabled"] and item["state"] not in ("healthy", "held")]


def report(
    accounts: Sequence[Account],
    probes: Mapping[int, Probe],
    vectors: Mapping[str, Vector],
    now: float,
    previous: Mapping[int, tuple[str, str | None]],
    notes: Sequence[str] = (),
    holds: Collection[int] | None = None,
) -> tuple[dict[str, Any], dict[int, tuple[str, str | None]]]:
    """The whole report (generated, accounts, hosts, notes) and the state changes to keep for
    the next round. ``vectors``: Prometheus answers by the keys of ACCOUNT_QUERIES and
    CONTAINER_QUERIES (missing keys: no data). ``holds``: the logins their hosts say an
    operator holds, when known (``mt5farm-account status``; playbooks/status.yml): they
    replace Prometheus' mt5_container_held, which lags a stop or start by up to a minute."""
    now_iso = iso(now)
    money = {key: by_login(vectors.get(key, [])) for key in ACCOUNT_QUERIES}
    containers = account_containers({key: vectors[key] for key in CONTAINER_QUERIES if key in vectors})
    if holds is not None:
        for account in accounts:
            containers.setdefault(account.login, {})["held"] = account.login in holds
    rows = []
    for account in accounts:
        metrics = {key: values[account.login] for key, values in money.items() if account.login in values}
        rows.append(row(account, probes.get(account.login), metrics, containers.get(account.login, {}), now, None))
    kept = changes(rows, previous, now_iso)
    for item in rows:
        item["last_change"] = kept[item["login"]][1]
    return {"generated": now_iso, "accounts": rows, "hosts": host_totals(rows), "notes": list(notes)}, kept


def iso(timestamp: float) -> str:
    """UTC ISO 8601 with a Z, to the second."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017 (datetime.UTC: 3.11)


# --- output -----------------------------------------------------------------------------------


def cell(value: Any) -> str:
    """A table cell: ``-`` for null, yes/no for booleans, two decimals for money."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def duration(seconds: int | None) -> str:
    """``3d4h``, ``5h12m``, ``7m3s``, ``42s``, or ``-``."""
    if seconds is None:
        return "-"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart, no trailing spaces."""
    widths = [max(len(text) for text in column) for column in zip(header, *lines, strict=False)]
    return ["  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip() for line in (header, *lines)]


def render_text(data: Mapping[str, Any]) -> str:
    """The report as an aligned table of accounts, a table of host totals and the notes."""
    header = ("LOGIN", "SERVER", "HOST", "STATE", "CONN", "TRADE", "BALANCE", "EQUITY", "POS", "UPTIME", "RESTARTS", "IMAGE", "REASON")
    lines = [
        (
            cell(item["login"]),
            cell(item["server"]),
            cell(item["host"]),
            item["state"],
            cell(item["connected"]),
            cell(item["trade_allowed"]),
            cell(item["balance"]),
            cell(item["equity"]),
            cell(item["positions"]),
            duration(item["uptime_s"]),
            cell(item["restarts"]),
            cell(item["image"]),
            cell(item["reason"]),
        )
        for item in data["accounts"]
    ]
    out = [f"Fleet status at {data['generated']}", "", *table(header, lines), ""]
    host_header = ("HOST", "ACCOUNTS", "HEALTHY", "NOT HEALTHY", "HELD", "DISABLED", "BALANCE", "EQUITY")
    host_lines = [
        (
            h["host"],
            cell(h["accounts"]),
            cell(h["healthy"]),
            cell(h["not_healthy"]),
            cell(h["held"]),
            cell(h["disabled"]),
            cell(h["balance"]),
            cell(h["equity"]),
        )
        for h in data["hosts"]
    ]
    out += table(host_header, host_lines)
    bad = failing(data["accounts"])
    out += [
        "",
        f"{len(bad)} enabled account(s) not healthy: " + "; ".join(f"{i['login']} {i['state']} ({i['reason']})" for i in bad)
        if bad
        else "",
    ]
    out += [f"note: {note}" for note in data.get("notes", [])]
    return "\n".join(out).rstrip("\n") + "\n"


def render_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def write_atomic(out: Path, text: str) -> None:
    """Replace ``out`` with ``text`` atomically (a temporary file in its directory, then a
    rename), mode 0644: a reader never sees half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- the network ----------------------------------------------------------------------------------


def probe_health(url: str, context: ssl.SSLContext | None, timeout: float) -> Probe:
    """GET ``url``/health (open, no key): its status and JSON body, or why there was no answer."""
    request = urllib.request.Request(url + "/health", headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context if url.startswith("https") else None) as answer:
            return Probe(answer.status, _json_object(answer.read()))
    except urllib.error.HTTPError as error:
        return Probe(error.code, _json_object(error.read()))
    except (OSError, ValueError) as error:  # URLError, timeouts, TLS errors, refused connections
        reason = getattr(error, "reason", error)
        text = getattr(reason, "strerror", None) or str(reason)
        return Probe(None, error=text or type(reason).__name__)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def query_prometheus(base: str, query: str, timeout: float) -> Vector:
    """An instant query; raises OSError/ValueError when Prometheus does not answer properly."""
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return parse_vector(json.loads(answer.read()))


def gather(
    accounts: Sequence[Account],
    prometheus: str | None,
    context: ssl.SSLContext | None,
    timeout: float,
    workers: int,
    probe: Callable[[str, ssl.SSLContext | None, float], Probe] = probe_health,
) -> tuple[dict[int, Probe], dict[str, Vector], list[str]]:
    """Every enabled account's /health and Prometheus' series, concurrently: (probes by
    login, vectors by key, notes on what could not be read)."""
    queries = {**ACCOUNT_QUERIES, **CONTAINER_QUERIES} if prometheus else {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        probes = {a.login: pool.submit(probe, a.url, context, timeout) for a in accounts if a.enabled}
        asked = {key: pool.submit(query_prometheus, prometheus, name, timeout) for key, name in queries.items() if prometheus}
        vectors: dict[str, Vector] = {}
        notes: list[str] = []
        for key, future in asked.items():
            try:
                vectors[key] = future.result()
            except (OSError, ValueError) as error:
                if not notes:
                    notes.append(
                        f"Prometheus at {prometheus} did not answer ({getattr(error, 'reason', error)}): no balances, equity, positions or container data"
                    )
        return {login: future.result() for login, future in probes.items()}, vectors, notes


def parse_holds(text: str | None) -> set[int] | None:
    """The logins of ``--holds`` ("5001001,5001003"; empty: none held), or None when not given.
    Raises UsageError naming an item that is not a login."""
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    bad = [item for item in items if not item.isdigit()]
    if bad:
        raise UsageError(f"--holds: not a login: {', '.join(bad)}")
    return {int(item) for item in items}


def tls_context(ca: Path | None) -> ssl.SSLContext:
    """Verifies https account services against ``ca`` (the farm's CA), or the system's CAs."""
    return ssl.create_default_context(cafile=str(ca) if ca else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mt5farm-fleet-status", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=Path, required=True, help="JSON list of accounts (login, server, host, url, enabled)")
    parser.add_argument("--prometheus", help="Prometheus' URL, e.g. http://127.0.0.1:9090 (balance, positions, containers)")
    parser.add_argument("--ca", type=Path, help="CA certificate the https account services are verified against")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--out", type=Path, help="write the report to this file (atomically) instead of stdout")
    parser.add_argument("--every", type=float, help="rewrite --out every SECONDS, forever (the fleet page's generator)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per /health probe and Prometheus query (2)")
    parser.add_argument("--workers", type=int, default=32, help="concurrent probes (32)")
    parser.add_argument(
        "--holds",
        help="comma-separated logins an operator holds, as their hosts say (mt5farm-account status); replaces Prometheus' mt5_container_held",
    )
    args = parser.parse_args(argv)
    try:
        if args.every is not None and (args.out is None or args.every <= 0):
            raise UsageError("--every needs --out and a positive number of seconds")
        if args.ca is not None and not args.ca.is_file():
            raise UsageError(f"--ca {args.ca}: no such file")
        try:
            accounts = parse_accounts(json.loads(args.accounts.read_text()))
        except (OSError, ValueError) as error:
            raise UsageError(f"--accounts {args.accounts}: {error}") from None
        holds = parse_holds(args.holds)
    except UsageError as error:
        parser.print_usage(sys.stderr)
        print(f"mt5farm-fleet-status: {error}", file=sys.stderr)
        return 2
    context = tls_context(args.ca)
    render = render_json if args.format == "json" else render_text
    if args.every is None:
        probes, vectors, notes = gather(accounts, args.prometheus, context, args.timeout, args.workers)
        data, _ = report(accounts, probes, vectors, time.time(), {}, notes, holds)
        text = render(data)
        if args.out:
            write_atomic(args.out, text)
        else:
            sys.stdout.write(text)
        return 1 if failing(data["accounts"]) else 0
    # The generator: Docker stops it with SIGTERM, which Python as PID 1 would otherwise ignore.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        previous = previous_changes(json.loads(args.out.read_text()))
    except (OSError, ValueError):
        previous = {}
    while True:
        started = time.monotonic()
        probes, vectors, notes = gather(accounts, args.prometheus, context, args.timeout, args.workers)
        data, previous = report(accounts, probes, vectors, time.time(), previous, notes)
        write_atomic(args.out, render(data))
        time.sleep(max(0.0, args.every - (time.monotonic() - started)))


if __name__ == "__main__":
    sys.exit(main())
