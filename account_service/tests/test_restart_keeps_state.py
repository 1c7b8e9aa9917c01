"""Issue 12, fault 13: the simulator forgot everything on restart.

A restarted demo account started its ticket counters again, so new deals reused old tickets,
the recorder dropped them silently (``ON CONFLICT DO NOTHING``, and before that the spool's
``seen_deals``), and every open position vanished. Now the simulated terminal keeps each
login's account in STATE_DIR, and the recorder never drops a record with a taken key and
other content: it keeps it aside, logs it and counts it. Real uvicorn, real RPyC processes and
a real PostgreSQL; each test failed on the code before the fix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mt5_account_service.backends import base as c
from mt5_account_service.backends.simulator import ManualClock, SimulatedTerminal, state_path
from mt5_account_service.store import Spool, Store
from mt5svc_testlib import LOGIN, WEDNESDAY, LiveService, PostgresServer, RpycSimulator, free_port, wait_until

#: The service's own simulator runs on the wall clock: a wide deviation keeps a slow (niced,
#: loaded) run from being requoted between the service's order_check and order_send.
BTC = {"symbol": "BTCUSD", "type": "buy", "volume": 0.01, "deviation": 100_000}


def deal_request(type_: int, volume: float = 0.1, **extra: Any) -> dict[str, Any]:
    return {
        "action": c.TRADE_ACTION_DEAL,
        "symbol": "EURUSD",
        "volume": volume,
        "type": type_,
        "type_filling": c.ORDER_FILLING_FOK,
        **extra,
    }


def account_of(terminal: SimulatedTerminal) -> dict[str, Any]:
    """Everything a client can read of the account, at the terminal's current instant."""
    return {
        "balance": terminal.account_info().balance,
        "positions": terminal.positions_get(),
        "orders": terminal.orders_get(),
        "deals": terminal.history_deals_get(0, 2**40),
    }


def metric(http: httpx.Client, line_start: str) -> float:
    lines = [row for row in http.get("/metrics").text.splitlines() if row.startswith(line_start)]
    return float(lines[0].split()[-1]) if lines else 0.0


# --- the simulated terminal keeps its account ----------------------------------------------------
def test_a_restarted_terminal_holds_its_account_and_issues_tickets_past_the_old_ones(tmp_path: Path) -> None:
    clock = ManualClock(WEDNESDAY)
    first = SimulatedTerminal(clock=clock, state_dir=tmp_path)
    assert first.initialize(login=LOGIN)
    held = first.order_send(deal_request(c.ORDER_TYPE_BUY, 0.3, sl=1.0, comment="kept"))
    closed = first.order_send(deal_request(c.ORDER_TYPE_SELL))
    clock.advance(60)
    first.order_send(deal_request(c.ORDER_TYPE_BUY, position=closed.order))  # closes it: a profit or loss
    first.order_send(deal_request(c.ORDER_TYPE_SELL, 0.1, position=held.order))  # a partial close
    ask = first.symbol_info_tick("EURUSD").ask
    pending = first.order_send({**deal_request(c.ORDER_TYPE_BUY_LIMIT), "action": c.TRADE_ACTION_PENDING, "price": round(ask - 0.01, 5)})
    assert pending.retcode == c.TRADE_RETCODE_DONE
    before = account_of(first)
    old_deals = [d.ticket for d in before["deals"]]
    old_orders = [held.order, closed.order, pending.order]

    again = SimulatedTerminal(clock=clock, state_dir=tmp_path)  # the process restarted
    assert again.initialize(login=LOGIN)
    assert account_of(again) == before
    assert [(p.ticket, p.identifier, p.volume, p.sl, p.comment) for p in again.positions_get()] == [
        (held.order, held.order, 0.2, 1.0, "kept")
    ]
    new = again.order_send(deal_request(c.ORDER_TYPE_BUY))
    assert new.order > max(old_orders) and new.deal > max(old_deals)
    # an account kept in memory only (unit tests) starts where it always did
    fresh = SimulatedTerminal(clock=clock)
    fresh.initialize(login=LOGIN)
    assert fresh.order_send(deal_request(c.ORDER_TYPE_BUY)).order == 1_000_001


def test_the_account_is_written_atomically_as_versioned_json_keyed_by_login(tmp_path: Path) -> None:
    terminal = SimulatedTerminal(clock=ManualClock(WEDNESDAY), state_dir=tmp_path)
    assert terminal.initialize(login=LOGIN)
    opened = terminal.order_send(deal_request(c.ORDER_TYPE_BUY))
    saved = json.loads(state_path(tmp_path, LOGIN).read_text())
    assert saved["version"] == 1 and saved["login"] == LOGIN
    assert [p["ticket"] for p in saved["positions"]] == [opened.order]
    assert saved["next_order"] == opened.order + 1 and saved["next_deal"] == opened.deal + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"simulator-{LOGIN}.json"]  # no tmp file left behind


def test_an_unreadable_state_is_moved_aside_and_its_tickets_are_never_issued_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(WEDNESDAY)
    terminal = SimulatedTerminal(clock=clock, state_dir=tmp_path)
    terminal.initialize(login=LOGIN)
    opened = terminal.order_send(deal_request(c.ORDER_TYPE_BUY))
    path = state_path(tmp_path, LOGIN)
    text = path.read_text()
    # a torn file: its tickets are pushed far up so only the legible ones can tell the restart
    torn = text.replace(f'"ticket":{opened.order}', '"ticket":9000000000000000', 1)[: len(text) // 2 + 30]
    path.write_text(torn)

    with caplog.at_level(logging.ERROR, logger="mt5_account_service.backends.simulator"):
        again = SimulatedTerminal(clock=clock, state_dir=tmp_path)
        assert again.initialize(login=LOGIN)
    assert "is unreadable" in caplog.text and "moved to" in caplog.text
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{path.name}.unreadable-")]
    assert len(aside) == 1 and aside[0].read_text() == torn
    assert again.positions_get() == ()  # a fresh account, said so in the log ...
    new = again.order_send(deal_request(c.ORDER_TYPE_BUY))
    assert new.order > 9_000_000_000_000_000 and new.deal > opened.deal  # ... whose tickets are past every old one


def test_the_state_of_another_login_is_not_loaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(WEDNESDAY)
    first = SimulatedTerminal(clock=clock, state_dir=tmp_path)
    first.initialize(login=LOGIN)
    opened = first.order_send(deal_request(c.ORDER_TYPE_BUY))
    other = SimulatedTerminal(clock=clock, state_dir=tmp_path)
    assert other.initialize(login=LOGIN + 1)
    assert other.positions_get() == () and other.account_info().login == LOGIN + 1
    # switching logins in one terminal: each login has its own account
    assert other.login(LOGIN)
    assert [p.ticket for p in other.positions_get()] == [opened.order]
    # a file of one login under another's name is not that login's account
    state_path(tmp_path, LOGIN + 2).write_bytes(state_path(tmp_path, LOGIN).read_bytes())
    with caplog.at_level(logging.ERROR):
        assert other.login(LOGIN + 2)
    assert f"it is the state of login {LOGIN}, not of {LOGIN + 2}" in caplog.text
    assert other.positions_get() == ()
    assert other.order_send(deal_request(c.ORDER_TYPE_BUY)).order > opened.order


# --- the service, restarted on the same STATE_DIR ----------------------------------------------------
def test_a_restarted_service_keeps_its_open_positions_and_issues_tickets_past_the_old_ones(
    start_service: Callable[..., LiveService], tmp_path: Path
) -> None:
    # backend=simulator built by the service itself (MT5_BACKEND=simulator), as in the demo image
    live = start_service(None, backend="simulator")
    live.wait_healthy()
    with live.client() as http:
        opened = [http.post("/api/orders", json={**BTC, "comment": f"n{i}"}).json() for i in range(3)]
        assert http.delete(f"/api/positions/{opened[0]['position']}").status_code == 200
        bid = http.get("/api/symbols/BTCUSD").json()["tick"]["bid"]
        limit = http.post("/api/orders", json={**BTC, "type": "buy_limit", "price": round(bid * 0.9, 2)})
        assert limit.status_code == 201, limit.text
        wait_until(lambda: len(http.get("/api/orders").json()) == 1, what="the pending order in the snapshot")
        positions, orders = http.get("/api/positions").json(), http.get("/api/orders").json()
        deals = http.get("/api/history", params={"days": 1}).json()
        balance = http.get("/api/account").json()["balance"]
    live.stop()
    assert {p["ticket"] for p in positions} == {o["position"] for o in opened[1:]}

    again = start_service(None, backend="simulator")  # same STATE_DIR, new process state
    again.wait_healthy()
    with again.client() as http:
        assert [(p["ticket"], p["volume"], p["comment"]) for p in http.get("/api/positions").json()] == [
            (p["ticket"], p["volume"], p["comment"]) for p in positions
        ]
        assert [o["ticket"] for o in http.get("/api/orders").json()] == [o["ticket"] for o in orders]
        assert http.get("/api/account").json()["balance"] == balance
        new = http.post("/api/orders", json=BTC).json()
        history = http.get("/api/history", params={"days": 1}).json()
    old_deals = {d["ticket"] for d in deals}
    assert old_deals < {d["ticket"] for d in history}  # the old deals are still there
    assert new["order"] > max(o["ticket"] for o in orders) and new["deal"] > max(old_deals)


def test_a_killed_rpyc_simulator_comes_back_with_its_account(start_service: Callable[..., LiveService], tmp_path: Path) -> None:
    """The simulator image's bridge (``simulator-rpyc``, STATE_DIR from its environment),
    killed with SIGKILL: what it wrote after each trade is what it reads at the login."""
    bridge = RpycSimulator(free_port(), state_dir=tmp_path / "bridge-state")
    bridge.start()
    try:
        live = start_service(None, backend="mt5linux", mt5linux_port=bridge.port)
        live.wait_healthy()
        with live.client() as http:
            opened = http.post("/api/orders", json={**BTC, "comment": "survives"}).json()
            bridge.kill()
            wait_until(lambda: http.get("/health").status_code == 503, timeout=5, what="health 503 without the bridge")
            bridge.start()
            wait_until(lambda: http.get("/health").status_code == 200, timeout=15, what="the service to reconnect")
            positions = http.get("/api/positions").json()
            assert [(p["ticket"], p["comment"]) for p in positions] == [(opened["position"], "survives")]
            again = http.post("/api/orders", json=BTC).json()
            assert again["order"] > opened["order"] and again["deal"] > opened["deal"]
    finally:
        bridge.kill()


# --- the recorder never drops a different record silently -----------------------------------------
@pytest.fixture
def pg(postgres_server: PostgresServer) -> PostgresServer:
    postgres_server.reset()
    return postgres_server


def test_a_conflicting_deal_is_kept_aside_logged_and_counted_and_the_same_one_is_silent(
    pg: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deal = {"ticket": 5_000_002, "order": 1_000_001, "time": 1_700_000_000, "type": 0, "price": 1.085, "volume": 0.1, "symbol": "EURUSD"}
    deal["time_msc"] = deal["time"] * 1000
    reused = {**deal, "order": 1_000_007, "time": 1_700_000_600, "price": 1.087}
    # the same deal once the service has learned the server is UTC+2: other times, same deal
    shifted = {**deal, "time": deal["time"] - 7200, "time_msc": deal["time_msc"] - 7_200_000}
    conflicts: list[str] = []

    async def run() -> list[int]:
        store = Store(tmp_path / "spool.sqlite3", LOGIN, "S", pg.dsn, pg.password, lambda n: None, on_conflict=conflicts.append)
        added = [await store.record_deals([deal])]
        await store.flush()
        added.append(await store.record_deals([deal]))  # read again: nothing to spool
        added.append(await store.record_deals([shifted]))
        for same in (deal, shifted):  # a replayed batch; one from before the offset was learned
            store.spool.append("deal", [{"login": LOGIN, "deal": same, "ticket": same["ticket"]}])
        await store.flush()
        assert conflicts == []
        added.append(await store.record_deals([reused]))  # the same ticket, another deal
        await store.flush()
        store.spool.append("deal", [{"login": LOGIN, "deal": reused, "ticket": reused["ticket"]}])  # replayed after a crash
        await store.flush()
        await store.close()
        return added

    with caplog.at_level(logging.WARNING, logger="mt5_account_service.store"):
        added = asyncio.run(run())
    assert added == [1, 0, 0, 1]
    assert conflicts == ["mt5_deals"]  # counted once, the replay is not a second conflict
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"mt5_deals: a record with key login={LOGIN}, ticket=5000002 differs" in warnings[0]
    assert "order_ticket: 1000001 -> 1000007" in warnings[0] and "price: 1.085 -> 1.087" in warnings[0] and "raw" in warnings[0]
    # the first row is kept, the other one is not lost
    assert pg.query("SELECT order_ticket, price FROM mt5_deals") == [(1_000_001, 1.085)]
    rows = pg.query(
        "SELECT table_name, login, record_key, differs, kept->>'price', incoming->>'price', incoming->'raw' FROM mt5_record_conflicts"
    )
    assert rows == [("mt5_deals", LOGIN, {"login": LOGIN, "ticket": 5_000_002}, ["order_ticket", "price", "raw"], "1.085", "1.087", reused)]


def test_a_record_id_taken_by_another_record_is_kept_aside_too(pg: PostgresServer, tmp_path: Path) -> None:
    conflicts: list[str] = []
    order = {"record_id": "6f1c5a3e-8a4b-4e0e-9a55-3d0c2b1f0a11", "login": LOGIN, "server": "S", "requested_at": 1.0}
    order |= {"operation": "open", "request": {"n": 1}, "http_status": 201, "retcode": 10009, "result": {"retcode": 10009}}

    async def run() -> None:
        store = Store(tmp_path / "spool.sqlite3", LOGIN, "S", pg.dsn, pg.password, lambda n: None, on_conflict=conflicts.append)
        store.spool.append("order", [order, order, {**order, "http_status": 502}])
        await store.flush()
        await store.close()

    asyncio.run(run())
    assert conflicts == ["mt5_order_requests"]
    assert pg.query("SELECT http_status FROM mt5_order_requests") == [(201,)]
    assert pg.query("SELECT differs, incoming->>'http_status' FROM mt5_record_conflicts") == [(["http_status"], "502")]


def test_a_spool_from_before_the_digest_sends_each_deal_once_more_and_postgres_tells_them_apart(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE seen_deals (ticket INTEGER PRIMARY KEY)")
    old.execute("INSERT INTO seen_deals (ticket) VALUES (7)")
    old.commit()
    old.close()
    spool = Spool(path)
    deal = {"login": LOGIN, "ticket": 7, "deal": {"ticket": 7, "price": 1.0}}
    assert spool.append_new_deals([deal]) == 1  # digest unknown: Postgres compares it
    assert spool.append_new_deals([deal]) == 0
    assert spool.append_new_deals([{**deal, "deal": {"ticket": 7, "price": 2.0}}]) == 1
    spool.close()


def test_a_terminal_that_reuses_tickets_loses_no_deal_and_the_service_says_so(
    start_service: Callable[..., LiveService], pg: PostgresServer, tmp_path: Path
) -> None:
    """The fault as a demo account had it, against the recorder: a terminal that forgets
    (the simulator kept in memory, as before the fix) is restarted and hands out its old
    tickets again. Every deal it made is in Postgres: the first ones in mt5_deals, the reused
    tickets' new deals in mt5_record_conflicts, counted in mt5_db_conflicts_total. (The second
    "Initial deposit" differs from the first in its time only, and times are no part of a
    deal's identity: it is the same deal.)"""
    settings = {"database_url": pg.dsn, "postgres_password": pg.password, "snapshot_interval": 3600}
    made: list[dict[str, Any]] = []
    for run in range(2):
        live = start_service(SimulatedTerminal(), **settings)  # in memory: tickets from 1000001 again
        live.wait_healthy()
        with live.client() as http:
            for i in range(3):
                assert http.post("/api/orders", json={**BTC, "comment": f"run{run}-{i}"}).status_code == 201
            made += [d for d in http.get("/api/history", params={"days": 1}).json() if d["type"] != c.DEAL_TYPE_BALANCE]
            if run == 1:
                wait_until(lambda: metric(http, 'mt5_db_conflicts_total{table="mt5_deals"}') == 3, timeout=15, what="3 conflicts")
                assert metric(http, 'mt5_db_conflicts_total{table="mt5_order_requests"}') == 0
        live.stop()
    kept = pg.query("SELECT raw->>'comment' FROM mt5_deals WHERE type <> 2 ORDER BY ticket")
    aside = pg.query("SELECT incoming->'raw'->>'comment' FROM mt5_record_conflicts WHERE table_name = 'mt5_deals' ORDER BY id")
    assert sorted(row[0] for row in kept + aside) == sorted(d["comment"] for d in made) and len(made) == 6


def test_a_restarted_demo_account_records_every_deal_once(start_service: Callable[..., LiveService], pg: PostgresServer) -> None:
    """The fault as filed: a demo account (MT5_BACKEND=simulator, STATE_DIR) restarted between
    trades. Every deal reaches mt5_deals under its own ticket, and nothing conflicts."""
    settings = {"backend": "simulator", "database_url": pg.dsn, "postgres_password": pg.password, "snapshot_interval": 3600}
    tickets: set[int] = set()
    for _ in range(2):
        live = start_service(None, **settings)
        live.wait_healthy()
        with live.client() as http:
            opened = [http.post("/api/orders", json=BTC).json() for _ in range(2)]
            http.delete(f"/api/positions/{opened[0]['position']}")
            tickets |= {d["ticket"] for d in http.get("/api/history", params={"days": 1}).json()}
            wait_until(
                lambda want=frozenset(tickets): {row[0] for row in pg.query("SELECT ticket FROM mt5_deals")} == want,
                timeout=15,
                what="every deal in postgres",
            )
            assert metric(http, 'mt5_db_conflicts_total{table="mt5_deals"}') == 0
        live.stop()
    assert len(tickets) == 1 + 2 * 3  # the deposit, then 3 deals per run, none reused
