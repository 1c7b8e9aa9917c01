"""The rest of the trade surface (issue 15): stop-limit orders, expiration, close-by, close
all of a symbol or magic, SL/TP in points; through a real uvicorn, against the simulator,
which models each as MT5 does (and refuses what MT5 refuses)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from mt5_account_service.backends import base as c
from mt5_account_service.backends.simulator import DEFAULT_SYMBOLS, ManualClock, SimulatedTerminal, SymbolSpec
from mt5svc_testlib import WEDNESDAY, wait_until

NOW = datetime.fromtimestamp(WEDNESDAY, tz=UTC)


def rising(spec: SymbolSpec, t: float) -> float:
    """A price path that rises one pip (10 points) a second from the symbol's base."""
    return spec.base + (t - WEDNESDAY) * 10 * spec.point


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


def order_of(http: httpx.Client, ticket: int) -> dict[str, Any]:
    return http.get(f"/api/orders/{ticket}").json()


def test_sl_and_tp_in_points_become_prices_from_the_opening_price(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    opened = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1, "sl_points": 150, "tp_points": 300})
    assert opened.status_code == 201, opened.text
    position = http.get(f"/api/positions/{opened.json()['position']}").json()
    ask = opened.json()["ask"]
    assert (position["sl"], position["tp"]) == (round(ask - 0.0015, 5), round(ask + 0.0030, 5))
    sell = {"symbol": "EURUSD", "type": "sell_limit", "volume": 0.1, "price": 1.1, "sl_points": 200, "tp_points": 100}
    placed = http.post("/api/orders", json=sell).json()
    assert (order_of(http, placed["order"])["sl"], order_of(http, placed["order"])["tp"]) == (1.102, 1.099)
    # on a coarser grid the level is rounded to it (DE40 moves in 0.5: 7 points, 0.7, is 0.5)
    de40 = http.post("/api/orders", json={"symbol": "DE40", "type": "buy", "volume": 1, "sl_points": 3007}).json()
    sl = http.get(f"/api/positions/{de40['position']}").json()["sl"]
    assert sl % 0.5 == 0 and abs(sl - (de40["ask"] - 300.7)) <= 0.25
    both = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1, "sl": 1.0, "sl_points": 100})
    assert both.status_code == 422 and "sl or sl_points, not both" in both.json()["message"]


def test_a_stop_limit_places_its_limit_when_the_stop_is_reached(
    http: httpx.Client, terminal: SimulatedTerminal, clock: ManualClock
) -> None:
    terminal.set_price_path(rising)
    ask = terminal.symbol_info_tick("EURUSD").ask
    stop, limit = round(ask + 0.0020, 5), round(ask + 0.0010, 5)
    placed = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy_stop_limit", "volume": 0.1, "price": stop, "stoplimit": limit})
    assert placed.status_code == 201, placed.text
    pending = order_of(http, placed.json()["order"])
    assert (pending["type"], pending["price_open"], pending["price_stoplimit"]) == (c.ORDER_TYPE_BUY_STOP_LIMIT, stop, limit)
    clock.advance(25)  # the ask passes the stop price
    wanted = [(c.ORDER_TYPE_BUY_LIMIT, limit)]
    wait_until(lambda: [(o["type"], o["price_open"]) for o in http.get("/api/orders").json()] == wanted, what="the limit order")
    done = http.get("/api/history/orders", params={"ticket": placed.json()["order"]}).json()["orders"]
    assert done[0]["state"] == c.ORDER_STATE_FILLED
    far = round(stop + 0.01, 5)
    for bad, says in (({"stoplimit": round(far + 0.0010, 5)}, "stoplimit must be below its price"), ({}, "needs a stoplimit")):
        answer = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy_stop_limit", "volume": 0.1, "price": far, **bad})
        assert answer.status_code == 422 and says in answer.json()["message"], answer.text
    limit_with_stoplimit = http.post(
        "/api/orders", json={"symbol": "EURUSD", "type": "buy_limit", "volume": 0.1, "price": 1.0, "stoplimit": 0.9}
    )
    assert limit_with_stoplimit.status_code == 422


def test_pending_orders_expire_as_told_and_keep_it_when_modified(http: httpx.Client, clock: ManualClock) -> None:
    base = {"symbol": "EURUSD", "type": "buy_limit", "volume": 0.1, "price": 1.0}
    timed = http.post("/api/orders", json={**base, "time_in_force": "specified", "expiration": iso(WEDNESDAY + 120)}).json()
    day = http.post("/api/orders", json={**base, "time_in_force": "day"}).json()
    assert order_of(http, timed["order"])["time_expiration"] == int(WEDNESDAY) + 120
    assert order_of(http, timed["order"])["type_time"] == c.ORDER_TIME_SPECIFIED
    # a modification keeps the order's time in force and expiry (MT5 wants them restated)
    assert http.patch(f"/api/orders/{timed['order']}", json={"price": 1.001}).status_code == 200
    assert order_of(http, timed["order"])["time_expiration"] == int(WEDNESDAY) + 120
    clock.advance(121)
    wait_until(lambda: [o["ticket"] for o in http.get("/api/orders").json()] == [day["order"]], what="the timed order to expire")
    (expired,) = http.get("/api/history/orders", params={"ticket": timed["order"]}).json()["orders"]
    assert expired["state"] == c.ORDER_STATE_EXPIRED
    clock.advance(12 * 3600)  # past midnight: the day order is gone too
    wait_until(lambda: http.get("/api/orders").json() == [], what="the day order to expire")
    for body, says in (
        ({**base, "time_in_force": "specified", "expiration": iso(WEDNESDAY)}, "not in the future"),
        ({**base, "time_in_force": "specified"}, "needs an expiration"),
        ({**base, "expiration": iso(WEDNESDAY + 3600)}, "needs time_in_force"),
        ({**base, "type": "buy", "time_in_force": "day"}, "for pending orders"),
    ):
        answer = http.post("/api/orders", json=body)
        assert answer.status_code == 422 and says in answer.json()["message"], answer.text


def test_a_time_in_force_the_symbol_does_not_take_is_refused(start_service: Any, clock: ManualClock) -> None:
    gtc_only = tuple(replace(s, expiration_mode=c.SYMBOL_EXPIRATION_GTC) for s in DEFAULT_SYMBOLS)
    terminal = SimulatedTerminal(clock=clock, symbols=gtc_only)
    live = start_service(terminal)
    live.wait_healthy()
    with live.client() as http:
        answer = http.post(
            "/api/orders", json={"symbol": "EURUSD", "type": "buy_limit", "volume": 0.1, "price": 1.0, "time_in_force": "day"}
        )
    assert answer.status_code == 422 and answer.json()["error"] == "invalid_expiration"
    # and the terminal itself refuses it as MT5 does (10022), should a request get past us
    request = {"action": c.TRADE_ACTION_PENDING, "symbol": "EURUSD", "volume": 0.1, "type": c.ORDER_TYPE_BUY_LIMIT, "price": 1.0}
    assert terminal.order_send({**request, "type_time": c.ORDER_TIME_DAY}).retcode == c.TRADE_RETCODE_INVALID_EXPIRATION


def test_close_by_closes_the_smaller_volume_at_the_opposite_open_price(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    buy = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.2}).json()
    sell = http.post("/api/orders", json={"symbol": "EURUSD", "type": "sell", "volume": 0.1}).json()
    balance = terminal.account_info().balance
    closed = http.post(f"/api/positions/{buy['position']}/close_by", json={"position_by": sell["position"]})
    assert closed.status_code == 200, closed.text
    assert [(p["ticket"], p["volume"]) for p in http.get("/api/positions").json()] == [(buy["position"], 0.1)]
    deals = http.get("/api/history/deals", params={"ticket": closed.json()["order"]}).json()["deals"]
    assert [d["entry"] for d in deals] == [c.DEAL_ENTRY_OUT_BY, c.DEAL_ENTRY_OUT_BY]
    # both deals at the opposite position's open price: the pair realises the difference of the open prices, no spread
    assert round(terminal.account_info().balance - balance, 2) == round((sell["price"] - buy["price"]) * 0.1 * 100_000, 2)
    gbp = http.post("/api/orders", json={"symbol": "GBPUSD", "type": "sell", "volume": 0.1}).json()
    wrong = http.post(f"/api/positions/{buy['position']}/close_by", json={"position_by": gbp["position"]})
    assert wrong.status_code == 422 and "same symbol" in wrong.json()["message"]
    missing = http.post(f"/api/positions/{buy['position']}/close_by", json={"position_by": 123})
    assert missing.status_code == 404


def test_close_all_of_a_symbol_or_a_magic_with_a_result_each(http: httpx.Client) -> None:
    tickets = [
        http.post("/api/orders", json={"symbol": symbol, "type": "buy", "volume": 0.1, "magic": magic}).json()["position"]
        for symbol, magic in (("EURUSD", 7), ("EURUSD", 8), ("GBPUSD", 7))
    ]
    assert http.delete("/api/positions").status_code == 422
    eurusd = http.delete("/api/positions", params={"symbol": "EURUSD"}, headers={"Idempotency-Key": "close-eurusd-1"})
    assert eurusd.status_code == 200, eurusd.text
    body = eurusd.json()
    assert (body["closed"], body["failed"]) == (2, 0) and sorted(r["ticket"] for r in body["results"]) == sorted(tickets[:2])
    assert all(r["status"] == 200 and r["retcode"] == c.TRADE_RETCODE_DONE for r in body["results"])
    again = http.delete("/api/positions", params={"symbol": "EURUSD"}, headers={"Idempotency-Key": "close-eurusd-1"})
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == body
    by_magic = http.delete("/api/positions", params={"magic": 7}).json()
    assert [r["ticket"] for r in by_magic["results"]] == [tickets[2]]
    assert http.get("/api/positions").json() == []
    assert http.delete("/api/positions", params={"magic": 7}).json() == {"closed": 0, "failed": 0, "results": []}


@pytest.mark.parametrize("kind", ["buy_stop_limit", "sell_stop_limit"])
def test_the_simulator_refuses_a_stoplimit_on_the_wrong_side(terminal: SimulatedTerminal, kind: str) -> None:
    terminal.initialize(login=1)
    tick = terminal.symbol_info_tick("EURUSD")
    is_buy = kind.startswith("buy")
    price = round(tick.ask + 0.002, 5) if is_buy else round(tick.bid - 0.002, 5)
    wrong = round(price + 0.001, 5) if is_buy else round(price - 0.001, 5)
    mt5_type = c.ORDER_TYPE_BUY_STOP_LIMIT if is_buy else c.ORDER_TYPE_SELL_STOP_LIMIT
    request = {"action": c.TRADE_ACTION_PENDING, "symbol": "EURUSD", "volume": 0.1, "type": mt5_type, "price": price, "stoplimit": wrong}
    assert terminal.order_send(request).retcode == c.TRADE_RETCODE_INVALID_PRICE


# --- what a probe of the new routes found (each failed before its fix) -----------------------
def test_points_that_put_a_level_below_zero_are_refused(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    for body in (
        {"symbol": "EURUSD", "type": "buy", "volume": 0.01, "sl_points": 100_000_000},
        {"symbol": "EURUSD", "type": "sell_limit", "volume": 0.01, "price": 1.2, "tp_points": 50_000_000},
    ):
        answer = http.post("/api/orders", json=body)
        assert answer.status_code == 422 and answer.json()["error"] == "invalid_stops" and "no price" in answer.json()["message"]
        assert http.post("/api/orders/check", json=body).status_code == 422
    assert terminal.positions_get() == () and terminal.orders_get() == ()


def test_specified_day_takes_today(http: httpx.Client) -> None:
    today = NOW.date().isoformat()
    body = {"symbol": "EURUSD", "type": "buy_limit", "volume": 0.01, "price": 1.0, "time_in_force": "specified_day", "expiration": today}
    placed = http.post("/api/orders", json=body)
    assert placed.status_code == 201, placed.text
    assert order_of(http, placed.json()["order"])["time_expiration"] == int(WEDNESDAY) // 86400 * 86400 + 86400


def test_close_all_refuses_what_it_would_not_do(http: httpx.Client) -> None:
    ticket = http.post("/api/orders", json={"symbol": "USDJPY", "type": "buy", "volume": 0.02}).json()["position"]
    partial = http.delete("/api/positions", params={"symbol": "USDJPY", "volume": 0.01})  # no partial close-all
    assert partial.status_code == 422 and "volume: not a query parameter" in partial.json()["message"]
    typo = http.delete("/api/positions", params={"symbol": "USDJPY.m"})
    assert typo.status_code == 404 and typo.json()["error"] == "unknown_symbol"
    assert [p["ticket"] for p in http.get("/api/positions").json()] == [ticket]
    misspelt = http.delete(f"/api/positions/{ticket}", params={"volume": 0.01, "Deviation": 5})
    assert misspelt.status_code == 422 and "Deviation" in misspelt.json()["message"]


def test_the_close_by_order_names_both_positions(http: httpx.Client) -> None:
    buy = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1}).json()
    sell = http.post("/api/orders", json={"symbol": "EURUSD", "type": "sell", "volume": 0.1}).json()
    closed = http.post(f"/api/positions/{buy['position']}/close_by", json={"position_by": sell["position"]}).json()
    (order,) = http.get("/api/history/orders", params={"ticket": closed["order"]}).json()["orders"]
    assert (order["type"], order["position_id"], order["position_by_id"]) == (c.ORDER_TYPE_CLOSE_BY, buy["position"], sell["position"])
    deals = http.get("/api/history/deals", params={"ticket": closed["order"]}).json()["deals"]
    assert all(str(d["profit"]) != "-0.0" for d in deals)


def test_a_deeply_nested_body_is_422_not_a_crash(http: httpx.Client) -> None:
    answer = http.post("/api/orders", content=b"[" * 100_000 + b"]" * 100_000, headers={"Content-Type": "application/json"})
    assert answer.status_code in (413, 422), answer.text
    nested = http.post(
        "/api/orders", content=b'{"symbol":' + b"[" * 5000 + b"]" * 5000 + b"}", headers={"Content-Type": "application/json"}
    )
    assert nested.status_code == 422 and nested.json()["error"] == "invalid_input"
