"""Every route over real HTTP (httpx -> uvicorn), including the error answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mt5_account_service.backends import base as c
from mt5_account_service.backends.simulator import ManualClock, SimulatedTerminal
from mt5svc_testlib import API_KEY, LOGIN, OTHER_KEY, SATURDAY, LiveService


def buy(http: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"symbol": "EURUSD", "type": "buy", "volume": 0.1, **fields}
    return http.post("/api/orders", json=body)


# --- auth ----------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["/api/account", "/api/positions", "/api/orders", "/api/history", "/api/symbols/EURUSD"])
def test_api_routes_refuse_requests_without_a_valid_key(service: LiveService, route: str) -> None:
    with service.client(key=None) as anon, service.client(key="wrong-key-0000000000") as wrong:
        for client in (anon, wrong):
            response = client.get(route)
            assert response.status_code == 401
            assert "X-API-Key" in response.json()["message"]


def test_trading_routes_refuse_requests_without_a_valid_key(service: LiveService, terminal: SimulatedTerminal) -> None:
    with service.client(key=None) as anon:
        assert anon.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1}).status_code == 401
        assert anon.delete("/api/positions/1").status_code == 401
        assert anon.delete("/api/orders/1").status_code == 401
        assert anon.patch("/api/positions/1", json={"sl": 1.0}).status_code == 401
    assert terminal.positions_get() == ()


def test_any_configured_key_and_bearer_form_are_accepted(service: LiveService) -> None:
    with service.client(key=OTHER_KEY) as second:
        assert second.get("/api/account").status_code == 200
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {API_KEY}"}) as bearer:
        assert bearer.get("/api/account").status_code == 200


def test_health_needs_no_key(service: LiveService) -> None:
    with service.client(key=None) as anon:
        health = anon.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok" and body["connected"] is True and body["reason"] is None
        assert 0 <= body["last_poll_age"] < 1


# --- reads ---------------------------------------------------------------------------------
def test_account_returns_the_terminals_account_info(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    account = http.get("/api/account").json()
    assert account["login"] == LOGIN
    assert account["balance"] == terminal.account_info().balance == 10_000
    assert account["currency"] == "USD"


def test_positions_and_orders_list_what_is_open(http: httpx.Client) -> None:
    assert http.get("/api/positions").json() == []
    opened = buy(http).json()
    placed = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy_limit", "volume": 0.2, "price": 1.07}).json()
    positions = http.get("/api/positions").json()
    assert [p["ticket"] for p in positions] == [opened["position"]]
    orders = http.get("/api/orders").json()
    assert [(o["ticket"], o["price_open"], o["type"]) for o in orders] == [(placed["order"], 1.07, c.ORDER_TYPE_BUY_LIMIT)]


def test_history_returns_deals_of_the_last_days(http: httpx.Client, terminal: SimulatedTerminal, clock: ManualClock) -> None:
    import time

    # the history window is anchored on the real clock: move the simulator there
    clock.t = time.time()
    opened = buy(http, symbol="BTCUSD").json()
    deals = http.get("/api/history", params={"days": 1}).json()
    assert opened["deal"] in [d["ticket"] for d in deals]
    assert {"ticket", "order", "time", "type", "entry", "volume", "price", "profit", "symbol"} <= set(deals[-1])


@pytest.mark.parametrize("days", ["0", "-3", "abc", "5000"])
def test_history_rejects_a_bad_days_parameter(http: httpx.Client, days: str) -> None:
    response = http.get("/api/history", params={"days": days})
    assert response.status_code == 422
    assert response.json()["message"].startswith("days:")


def test_symbol_returns_tick_and_contract_spec(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    body = http.get("/api/symbols/EURUSD").json()
    assert body["tick"]["bid"] == terminal.symbol_info_tick("EURUSD").bid
    spec = body["spec"]
    assert (spec["trade_contract_size"], spec["volume_step"], spec["digits"]) == (100_000, 0.01, 5)


def test_unknown_symbol_is_404_with_an_explanation(http: httpx.Client) -> None:
    response = http.get("/api/symbols/NOPE")
    assert response.status_code == 404
    assert "unknown symbol 'NOPE'" in response.json()["message"]
    assert http.get("/api/symbols/bad%20name").status_code == 404  # any name reaches the terminal
    assert http.get("/api/symbols/bad%00name").status_code == 422  # control characters do not


# --- orders: success -------------------------------------------------------------------------
def test_market_order_executes_and_is_visible_at_once(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    response = buy(http, volume=0.3, sl=1.07, tp=1.10, deviation=5, comment="bot-1", magic=99)
    assert response.status_code == 201
    result = response.json()
    assert result["retcode"] == c.TRADE_RETCODE_DONE and result["retcode_text"]
    (pos,) = terminal.positions_get()
    assert (pos.ticket, pos.volume, pos.sl, pos.tp, pos.comment, pos.magic) == (result["position"], 0.3, 1.07, 1.10, "bot-1", 99)
    # read-your-writes: the service refreshed its snapshot before answering
    assert [p["ticket"] for p in http.get("/api/positions").json()] == [pos.ticket]


def test_pending_order_is_placed_then_cancelled(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    placed = http.post("/api/orders", json={"symbol": "EURUSD", "type": "sell_stop", "volume": 0.1, "price": 1.08, "sl": 1.09})
    assert placed.status_code == 201
    ticket = placed.json()["order"]
    assert [o.ticket for o in terminal.orders_get()] == [ticket]
    cancelled = http.delete(f"/api/orders/{ticket}")
    assert cancelled.status_code == 200 and terminal.orders_get() == ()
    again = http.delete(f"/api/orders/{ticket}")
    assert again.status_code == 404 and "no pending order" in again.json()["message"]


def test_position_sltp_is_modified(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    ticket = buy(http).json()["position"]
    response = http.patch(f"/api/positions/{ticket}", json={"sl": 1.075, "tp": 1.095})
    assert response.status_code == 200
    pos = terminal.positions_get()[0]
    assert (pos.sl, pos.tp) == (1.075, 1.095)
    only_tp = http.patch(f"/api/positions/{ticket}", json={"tp": None})
    assert only_tp.status_code == 200
    assert (terminal.positions_get()[0].sl, terminal.positions_get()[0].tp) == (1.075, 0.0)


def test_pending_order_is_modified(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    ticket = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy_limit", "volume": 0.1, "price": 1.07}).json()["order"]
    response = http.patch(f"/api/orders/{ticket}", json={"price": 1.06, "tp": 1.08})
    assert response.status_code == 200
    order = terminal.orders_get()[0]
    assert (order.price_open, order.tp) == (1.06, 1.08)
    wrong = http.patch(f"/api/orders/{ticket}", json={"price": 1.2})
    assert wrong.status_code == 422 and "below the ask" in wrong.json()["message"]


def test_position_is_closed_partially_then_fully(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    ticket = buy(http, volume=0.5).json()["position"]
    partial = http.delete(f"/api/positions/{ticket}", params={"volume": 0.2})
    assert partial.status_code == 200
    assert terminal.positions_get()[0].volume == pytest.approx(0.3)
    full = http.delete(f"/api/positions/{ticket}")
    assert full.status_code == 200 and terminal.positions_get() == ()
    gone = http.delete(f"/api/positions/{ticket}")
    assert gone.status_code == 404 and "no open position" in gone.json()["message"]


def test_close_volume_above_the_position_is_refused(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    ticket = buy(http, volume=0.1).json()["position"]
    response = http.delete(f"/api/positions/{ticket}", params={"volume": 0.5})
    assert response.status_code == 422
    assert "position" in response.json()["message"] and "0.1" in response.json()["message"]
    assert terminal.positions_get()[0].volume == 0.1


def test_an_order_check_answers_the_margin_and_sends_nothing(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    response = http.post("/api/orders/check", json={"symbol": "EURUSD", "type": "buy", "volume": 0.3, "sl": 1.07})
    assert response.status_code == 200
    body = response.json()
    assert (body["retcode"], body["comment"]) == (c.TRADE_RETCODE_CHECK_OK, "Done") and body["retcode_text"]
    assert body["margin"] > 0 and body["margin_free"] == pytest.approx(body["equity"] - body["margin"], abs=0.01)
    assert terminal.positions_get() == () and terminal.orders_get() == ()
    # The same refusals as a placement, still nothing sent.
    too_much = http.post("/api/orders/check", json={"symbol": "EURUSD", "type": "buy", "volume": 50})
    assert too_much.status_code == 422 and too_much.json()["error"] == "insufficient_margin"
    assert "free margin is 10000.00 USD" in too_much.json()["message"]
    unknown = http.post("/api/orders/check", json={"symbol": "EURUSDX", "type": "buy", "volume": 0.1})
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_symbol"
    assert http.post("/api/orders/check", json={"symbol": "EURUSD", "type": "buy"}).status_code == 422
    assert terminal.positions_get() == () and terminal.orders_get() == ()


# --- orders: refusals a person understands ----------------------------------------------------
def test_unknown_symbol_order_is_422(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    response = buy(http, symbol="EURUSDX")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "unknown_symbol" and "'EURUSDX'" in body["message"]
    assert terminal.positions_get() == ()


@pytest.mark.parametrize("volume", [0.015, 0.001, 1000])
def test_volume_off_step_or_limits_is_422(http: httpx.Client, volume: float) -> None:
    response = buy(http, volume=volume)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_volume"
    assert "0.01 to 100 lots in steps of 0.01" in body["message"]


def test_sl_on_the_wrong_side_is_422(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    bid = terminal.symbol_info_tick("EURUSD").bid
    response = buy(http, sl=round(bid + 0.001, 5))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_stops"
    assert "wrong side for a buy" in body["message"] and "below the bid" in body["message"]


def test_pending_without_price_is_422(http: httpx.Client) -> None:
    response = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy_limit", "volume": 0.1})
    assert response.status_code == 422
    assert "needs a price" in response.json()["message"]


def test_insufficient_margin_is_422_with_the_amounts(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    response = buy(http, volume=50)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "insufficient_margin" and body["retcode"] == 10019
    assert "needs 54" in body["message"] and "free margin is 10000.00 USD" in body["message"]
    assert terminal.positions_get() == ()


def test_market_closed_is_409(start_service: Any) -> None:
    weekend = SimulatedTerminal(clock=ManualClock(SATURDAY))
    live = start_service(weekend)
    live.wait_healthy()
    with live.client() as http:
        response = buy(http)
        assert response.status_code == 409
        body = response.json()
        assert body["error"] == "market_closed" and "EURUSD is closed" in body["message"]
        assert buy(http, symbol="BTCUSD").status_code == 201  # crypto trades at weekends


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"symbol": "EURUSD", "type": "hold", "volume": 0.1}, "type"),
        ({"symbol": "EURUSD", "type": "buy", "volume": -1}, "volume"),
        ({"symbol": "EURUSD", "type": "buy"}, "volume: Field required"),
        ({"symbol": "EURUSD", "type": "buy", "volume": 0.1, "comment": "x" * 40}, "comment"),
        ({"symbol": "EURUSD", "type": "buy", "volume": 0.1, "colour": "red"}, "colour"),
    ],
)
def test_malformed_order_bodies_are_422_naming_the_field(http: httpx.Client, body: dict[str, Any], fragment: str) -> None:
    response = http.post("/api/orders", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_input"
    assert fragment in response.json()["message"]


def test_backend_errors_never_become_a_silent_200(service: LiveService, http: httpx.Client, terminal: SimulatedTerminal) -> None:
    terminal.set_terminal_up(False)
    service.svc.poller.connected = True  # as if the loss happened after the last poll
    response = buy(http)
    assert response.status_code == 503
    assert "terminal" in response.json()["message"]
    history = http.get("/api/history")
    assert history.status_code == 503
    assert http.get("/api/symbols/EURUSD").status_code == 503


# --- metrics -------------------------------------------------------------------------------------
def test_metrics_expose_the_contract_names(service: LiveService, http: httpx.Client) -> None:
    buy(http)
    buy(http, volume=0.015)
    http.get("/api/account")
    text = http.get("/metrics").text
    for name in (
        "mt5_api_requests_total",
        "mt5_api_request_duration_seconds_bucket",
        "mt5_ws_clients",
        "mt5_poll_duration_seconds_bucket",
        "mt5_backend_connected",
        "mt5_last_poll_timestamp_seconds",
        "mt5_account_balance",
        "mt5_account_equity",
        "mt5_account_margin_level",
        "mt5_open_positions",
        "mt5_pending_orders",
        "mt5_orders_total",
        "mt5_db_spool_pending",
        "mt5_account_info",
    ):
        assert f"\n{name}" in text, name
    assert 'mt5_api_requests_total{method="POST",route="/api/orders",status="201"} 1.0' in text
    assert 'mt5_api_requests_total{method="POST",route="/api/orders",status="422"} 1.0' in text
    assert 'mt5_orders_total{result="done"} 1.0' in text
    assert 'mt5_orders_total{result="invalid_volume"} 1.0' in text
    assert "mt5_open_positions 1.0" in text
    assert "mt5_backend_connected 1.0" in text
    assert (f'mt5_account_info{{backend="simulator",login="{LOGIN}",server="MT5Farm-Simulator",version="0.1.0"}} 1.0') in text
    assert 'le="0.0075",method="GET",route="/api/account"' in text
