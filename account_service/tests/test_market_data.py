"""Market data and history reads (issue 15): the simulator's price history as MT5 shapes it,
and the routes over it, their paging and their refusals, through a real uvicorn; the
mt5linux path for bars and ticks, and a symbol that tries to be code there."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from mt5_account_service.backends import base as c
from mt5_account_service.backends.mt5linux import Mt5LinuxBackend, call_code
from mt5_account_service.backends.simulator import ManualClock, SimulatedTerminal, TerminalOptions
from mt5svc_testlib import LOGIN, SATURDAY, WEDNESDAY, RpycSimulator

NOON = datetime.fromtimestamp(WEDNESDAY, tz=UTC)


# --- the simulator's history -----------------------------------------------------------------
def test_ticks_are_the_live_quotes_of_each_second(terminal: SimulatedTerminal, clock: ManualClock) -> None:
    terminal.initialize(login=LOGIN)
    ticks = terminal.copy_ticks_from("EURUSD", WEDNESDAY - 30, 1000, c.COPY_TICKS_ALL)
    assert ticks.dtype.names == ("time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real")
    assert int(ticks["time"][-1]) == int(WEDNESDAY)  # none later than now
    live = terminal.symbol_info_tick("EURUSD")
    assert (float(ticks["bid"][-1]), float(ticks["ask"][-1])) == (live.bid, live.ask)
    assert all(int(f) & (c.TICK_FLAG_BID | c.TICK_FLAG_ASK) for f in ticks["flags"])
    assert len(terminal.copy_ticks_from("EURUSD", WEDNESDAY - 30, 1000, c.COPY_TICKS_TRADE)) == 0  # quoted, never traded
    # the history of a past instant never changes as time goes on
    clock.advance(600)
    again = terminal.copy_ticks_from("EURUSD", WEDNESDAY - 30, len(ticks), c.COPY_TICKS_ALL)
    assert again.tolist() == ticks.tolist()


def test_bars_are_built_from_the_bids_and_aligned_on_the_server_clock(clock: ManualClock) -> None:
    sim = SimulatedTerminal(clock=clock, options=TerminalOptions(server_time_offset=7200))
    sim.initialize(login=LOGIN)
    m1 = sim.copy_rates_from_pos("EURUSD", c.TIMEFRAME_M1, 0, 3)
    assert m1.dtype.names == ("time", "open", "high", "low", "close", "tick_volume", "spread", "real_volume")
    assert int(m1["time"][-1]) == int(WEDNESDAY) + 7200  # the current bar, in server time
    assert list(m1["time"][1:] - m1["time"][:-1]) == [60, 60]
    for bar in m1:
        assert bar["low"] <= min(bar["open"], bar["close"]) <= max(bar["open"], bar["close"]) <= bar["high"]
    # an M1 bar is its ticks' bids
    first = int(m1["time"][0])
    ticks = sim.copy_ticks_range("EURUSD", first, first + 59, c.COPY_TICKS_ALL)
    assert (float(m1["high"][0]), float(m1["low"][0])) == (float(ticks["bid"].max()), float(ticks["bid"].min()))
    # D1 at the server's midnight; the current bar closes at the live bid
    d1 = sim.copy_rates_from_pos("EURUSD", c.TIMEFRAME_D1, 0, 2)
    assert [int(t) % 86400 for t in d1["time"]] == [0, 0]
    assert float(d1["close"][-1]) == sim.symbol_info_tick("EURUSD").bid
    h1 = sim.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 1, 1)
    m1_of_it = sim.copy_rates_range("EURUSD", c.TIMEFRAME_M1, int(h1["time"][0]), int(h1["time"][0]) + 3599)
    assert (
        len(m1_of_it) == 60 and float(h1["open"][0]) == float(m1_of_it["open"][0]) and float(h1["close"][0]) == float(m1_of_it["close"][-1])
    )


def test_no_bars_or_ticks_while_the_market_is_closed() -> None:
    sim = SimulatedTerminal(clock=ManualClock(SATURDAY))
    sim.initialize(login=LOGIN)
    h1 = sim.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 0, 2)
    friday_close = datetime(2026, 1, 9, 21, tzinfo=UTC).timestamp()
    assert int(h1["time"][-1]) == friday_close - 3600  # the last bar is Friday 20:00; none on Saturday
    assert len(sim.copy_ticks_range("EURUSD", friday_close, SATURDAY, c.COPY_TICKS_ALL)) == 0
    assert len(sim.copy_rates_from_pos("BTCUSD", c.TIMEFRAME_H1, 0, 2)) == 2  # crypto trades all week


def test_history_calls_fail_as_mt5s_do(terminal: SimulatedTerminal) -> None:
    terminal.initialize(login=LOGIN)
    assert terminal.copy_rates_from_pos("NOPE", c.TIMEFRAME_M1, 0, 10) is None
    assert terminal.last_error() == (c.RES_E_FAIL, "Terminal: Call failed")
    for bad in (
        lambda: terminal.copy_rates_from_pos("EURUSD", 7, 0, 10),  # no such timeframe
        lambda: terminal.copy_rates_from_pos("EURUSD", c.TIMEFRAME_M1, 0, 0),
        lambda: terminal.copy_rates_from_pos("EURUSD", c.TIMEFRAME_M1, -1, 10),
        lambda: terminal.copy_ticks_from("EURUSD", WEDNESDAY, 10, 5),
    ):
        assert bad() is None and terminal.last_error()[0] == c.RES_E_INVALID_PARAMS
    hidden = SimulatedTerminal(clock=ManualClock(WEDNESDAY), options=TerminalOptions(hidden_symbols=frozenset({"GBPUSD"})))
    hidden.initialize(login=LOGIN)
    assert hidden.copy_rates_from_pos("GBPUSD", c.TIMEFRAME_M1, 0, 10) is None  # outside Market Watch
    assert hidden.symbol_select("GBPUSD", True)
    assert len(hidden.copy_rates_from_pos("GBPUSD", c.TIMEFRAME_M1, 0, 10)) == 10


def test_max_bars_ends_the_history() -> None:
    sim = SimulatedTerminal(clock=ManualClock(WEDNESDAY), options=TerminalOptions(max_bars=500))
    sim.initialize(login=LOGIN)
    assert len(sim.copy_rates_from_pos("BTCUSD", c.TIMEFRAME_M1, 0, 1000)) == 500
    assert len(sim.copy_rates_from_pos("BTCUSD", c.TIMEFRAME_M1, 400, 1000)) == 100


# --- the routes ------------------------------------------------------------------------------
def test_symbols_list_filters_and_pages(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    every = http.get("/api/symbols").json()
    names = [s["name"] for s in every["symbols"]]
    assert every["total"] == every["matched"] == len(names) == 8 and every["next_offset"] is None
    assert "S&P500" in names and "Volatility 75 (1s) Index" in names
    assert {"name", "digits", "visible", "bid", "ask"} <= set(every["symbols"][0])
    usd = http.get("/api/symbols", params={"group": "*USD*,!EUR*"}).json()
    assert [s["name"] for s in usd["symbols"]] == [n for n in names if "USD" in n and not n.startswith("EUR")]
    first = http.get("/api/symbols", params={"limit": 2}).json()
    second = http.get("/api/symbols", params={"limit": 2, "offset": first["next_offset"]}).json()
    assert len(first["symbols"]) == 2 and first["next_offset"] == 2 and second["symbols"][0]["name"] == every["symbols"][2]["name"]
    hidden = http.post("/api/symbols/GBPUSD/select", params={"enable": "false"})
    assert hidden.status_code == 200 and hidden.json() == {"symbol": "GBPUSD", "visible": False}
    assert "GBPUSD" not in [s["name"] for s in http.get("/api/symbols", params={"visible": "true"}).json()["symbols"]]
    # history of a symbol outside Market Watch: the service selects it first
    assert http.get("/api/rates/GBPUSD", params={"timeframe": "M1", "count": 5}).json()["count"] == 5
    assert http.post("/api/symbols/NOPE/select").status_code == 404
    ticket = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.01}).json()["position"]
    kept = http.post("/api/symbols/EURUSD/select", params={"enable": "false"})
    assert kept.status_code == 409 and kept.json()["error"] == "symbol_in_use"
    assert http.get(f"/api/positions/{ticket}").json()["ticket"] == ticket


def test_rates_three_ways_and_their_pages(http: httpx.Client) -> None:
    newest = http.get("/api/rates/EURUSD", params={"timeframe": "M1", "count": 10}).json()
    assert newest["count"] == 10 and newest["rates"][-1]["time"] == int(WEDNESDAY)  # UTC, the current bar
    older = http.get("/api/rates/EURUSD", params=newest["next"]).json()
    assert older["rates"][-1]["time"] == newest["rates"][0]["time"] - 60
    upto = http.get("/api/rates/EURUSD", params={"timeframe": "H1", "to": "2026-01-07T09:30:00Z", "count": 3}).json()
    assert [b["time"] for b in upto["rates"]] == [int(datetime(2026, 1, 7, h, tzinfo=UTC).timestamp()) for h in (7, 8, 9)]
    assert upto["next"] == {"timeframe": "H1", "to": "2026-01-07T06:59:59Z", "count": 3}
    # 10,000 minutes at most per answer (a zone-less time is UTC); the next page goes on from there
    ranged = http.get("/api/rates/EURUSD", params={"timeframe": "M1", "from": "2025-12-28T00:00:00", "to": "2026-01-07T12:00:00Z"})
    body = ranged.json()
    assert body["next"] == {"timeframe": "M1", "from": "2026-01-03T22:40:00Z", "to": "2026-01-07T12:00:00Z"}
    assert body["rates"][0]["time"] == int(datetime(2025, 12, 28, 21, tzinfo=UTC).timestamp())  # Sunday's open
    rest = http.get("/api/rates/EURUSD", params=body["next"]).json()
    assert rest["rates"][0]["time"] > body["rates"][-1]["time"] and rest["next"] is None
    assert rest["rates"][-1]["time"] == int(WEDNESDAY)


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"timeframe": "M7"}, 422, "timeframe"),
        ({"timeframe": "M1", "count": "0"}, 422, "count"),
        ({"timeframe": "M1", "count": "10001"}, 422, "count"),
        ({"timeframe": "M1", "count": "1e3"}, 422, "count"),
        ({"timeframe": "M1", "from": "2026-01-07T00:00:00Z"}, 422, "from"),
        ({"timeframe": "M1", "from": "2026-01-07", "to": "2026-01-06"}, 422, "before"),
        ({"timeframe": "M1", "to": "1900-01-01"}, 422, "out of range"),
        ({"timeframe": "M1", "to": "yesterday"}, 422, "to"),
        ({"timeframe": "M1", "to": "2026-01-07", "start_pos": "3"}, 422, "start_pos"),
    ],
)
def test_rates_refuse_what_they_cannot_answer(http: httpx.Client, params: dict[str, str], status: int, says: str) -> None:
    answer = http.get("/api/rates/EURUSD", params=params)
    assert answer.status_code == status and answer.json()["error"] == "invalid_input" and says in answer.json()["message"]


def test_unknown_symbol_is_404_for_bars_and_ticks(http: httpx.Client) -> None:
    for path, params in (("/api/rates/NOPE", {"timeframe": "M1"}), ("/api/ticks/NOPE", {"from": "2026-01-07T11:00:00Z"})):
        answer = http.get(path, params=params)
        assert answer.status_code == 404 and answer.json()["error"] == "unknown_symbol"


def test_ticks_page_on_whole_seconds_without_gaps_or_repeats(http: httpx.Client) -> None:
    since = "2026-01-07T11:58:00Z"
    whole = http.get("/api/ticks/EURUSD", params={"from": since, "to": "2026-01-07T12:00:00Z"}).json()
    assert whole["next"] is None and whole["ticks"][-1]["time"] == int(WEDNESDAY)
    got: list[dict[str, Any]] = []
    params: dict[str, Any] | None = {"from": since, "to": "2026-01-07T12:00:00Z", "count": 7}
    while params is not None:
        page = http.get("/api/ticks/EURUSD", params=params).json()
        assert page["count"] <= 7
        got += page["ticks"]
        params = page["next"]
    assert got == whole["ticks"]
    assert http.get("/api/ticks/EURUSD", params={"from": since, "flags": "trade"}).json()["ticks"] == []
    assert http.get("/api/ticks/EURUSD").status_code == 422  # from is required


def test_history_of_orders_and_deals_by_window_position_and_ticket(http: httpx.Client, clock: ManualClock) -> None:
    opened = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1}).json()
    position = opened["position"]
    clock.advance(60)
    closed = http.delete(f"/api/positions/{position}")
    assert closed.status_code == 200, closed.text
    by_position = http.get("/api/history/deals", params={"position": position}).json()
    assert [d["entry"] for d in by_position["deals"]] == [c.DEAL_ENTRY_IN, c.DEAL_ENTRY_OUT]
    orders = http.get("/api/history/orders", params={"position": position}).json()["orders"]
    assert [o["ticket"] for o in orders] == [opened["order"], closed.json()["order"]]
    assert http.get("/api/history/orders", params={"ticket": opened["order"]}).json()["orders"][0]["position_id"] == position
    assert http.get("/api/history/deals", params={"ticket": opened["order"]}).json()["deals"][0]["ticket"] == opened["deal"]
    window = http.get("/api/history/deals", params={"from": "2026-01-07T00:00:00Z", "to": "2026-01-08T00:00:00Z", "limit": 1}).json()
    # the starting balance, the buy, the sale; oldest first
    assert window["total"] == 3 and window["next_offset"] == 1 and window["deals"][0]["type"] == c.DEAL_TYPE_BALANCE
    assert http.get("/api/history/deals").status_code == 422
    assert http.get("/api/history/deals", params={"position": position, "ticket": 1}).status_code == 422
    gone = http.get(f"/api/positions/{position}")
    assert gone.status_code == 404 and gone.json()["error"] == "position_not_found" and f"position={position}" in gone.json()["message"]
    assert http.get("/api/orders/123").json()["error"] == "order_not_found"


# --- the mt5linux path -----------------------------------------------------------------------
def test_bars_and_ticks_cross_the_bridge_as_records(rpyc_simulator: RpycSimulator) -> None:
    backend = Mt5LinuxBackend("127.0.0.1", rpyc_simulator.port)
    assert backend.initialize(login=LOGIN)
    bars = backend.copy_rates_from_pos("BTCUSD", c.TIMEFRAME_M1, 0, 5)
    assert len(bars) == 5 and type(bars[0]) is dict and type(bars[0]["time"]) is int
    since = datetime.fromtimestamp(bars[0]["time"], tz=UTC)
    assert len(backend.copy_rates_range("BTCUSD", c.TIMEFRAME_M1, since, datetime.now(UTC))) >= 5
    assert backend.copy_ticks_from("BTCUSD", since, 3, c.COPY_TICKS_ALL)[0]["time"] >= bars[0]["time"]
    backend.close()


def test_a_symbol_is_data_never_code_in_the_bridge(rpyc_simulator: RpycSimulator, tmp_path: Path) -> None:
    # mt5linux's own copy_rates_from_pos pastes the symbol into the code it sends; this one
    # would create a file in the bridge if it ran there.
    marker = tmp_path / "ran"
    evil = f'EURUSD",1,0,1),open({str(marker)!r},"w"),("'
    backend = Mt5LinuxBackend("127.0.0.1", rpyc_simulator.port)
    assert backend.initialize(login=LOGIN)
    assert backend.copy_rates_from_pos(evil, c.TIMEFRAME_M1, 0, 1) is None
    assert not marker.exists()
    with pytest.raises(TypeError):
        call_code("copy_ticks_from", ("EURUSD", datetime(2026, 1, 7), 10, -1), {})  # no zone: refused
    with pytest.raises(TypeError):
        call_code("order_check", ({"price": float("nan")},), {})
    backend.close()


# --- what a probe of the new routes found (each failed before its fix) -----------------------
def test_paging_by_position_reaches_as_deep_as_the_other_ways(start_service: Any, clock: ManualClock) -> None:
    terminal = SimulatedTerminal(clock=clock, options=TerminalOptions(max_bars=30_000))
    live = start_service(terminal)
    live.wait_healthy()
    with live.client() as http:
        by_position: list[int] = []
        params: dict[str, Any] | None = {"timeframe": "M1", "count": 10_000}
        while params is not None:
            page = http.get("/api/rates/EURUSD", params=params).json()
            by_position = [b["time"] for b in page["rates"]] + by_position
            params = page["next"]
        assert len(by_position) == len(set(by_position)) and by_position == sorted(by_position)
        oldest = datetime.fromtimestamp(by_position[0], tz=UTC).isoformat()
        ranged = http.get("/api/rates/EURUSD", params={"timeframe": "M1", "from": oldest, "to": NOON.isoformat()}).json()
        everything: list[int] = []
        params = {"timeframe": "M1", "from": "1970-01-02T00:00:00Z", "to": NOON.isoformat()}
        pages = 0
        while params is not None:
            page = http.get("/api/rates/EURUSD", params=params).json()
            everything += [b["time"] for b in page["rates"]]
            params, pages = page["next"], pages + 1
        # a wide range jumps over the empty decades at once; all three ways agree on the depth
        assert pages <= 5 and everything == by_position
        assert ranged["rates"][0]["time"] == by_position[0]


def test_query_values_are_read_as_written_or_refused(http: httpx.Client) -> None:
    for params, says in (
        ({"visible": "1"}, "write true or false"),
        ({"visible": "yes"}, "write true or false"),
    ):
        answer = http.get("/api/symbols", params=params)
        assert answer.status_code == 422 and says in answer.json()["message"], answer.text
    millis = http.get("/api/ticks/EURUSD", params={"from": "1767787200000"})
    assert millis.status_code == 422 and "not milliseconds" in millis.json()["message"]
    garbage = http.get("/api/ticks/EURUSD", params={"from": "nan"})
    assert garbage.status_code == 422 and "ISO 8601" in garbage.json()["message"]
    hidden = http.get("/api/symbols/EUR\u202eUSD")
    assert hidden.status_code == 422 and "invisible formatting" in hidden.json()["message"]
    assert http.get("/api/history/deals", params={"position": 1, "Limit": 5}).status_code == 422
