"""Issue 12, "Real brokers": MetaTrader 5 as it is, not as our kinder simulator was.

Each test sets the simulated terminal to the harder case a real broker or terminal build has
(TerminalOptions, set_trading, or a stub named as such) and checks the service's answer over
real HTTP/WebSocket. Each one failed on the service as it was before the fix.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from mt5_account_service import login_guard, server_time
from mt5_account_service.backends import base as c
from mt5_account_service.backends.simulator import ManualClock, SimulatedTerminal, TerminalOptions
from mt5svc_testlib import LOGIN, LiveService, wait_until, ws_connect

NETTING = TerminalOptions(margin_mode=c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING)


def started(start_service: Callable[..., LiveService], terminal: Any, **overrides: Any) -> tuple[LiveService, httpx.Client]:
    live = start_service(terminal, **overrides)
    live.wait_healthy()
    return live, live.client()


def refused(response: httpx.Response, status: int, error: str, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])
    return body


# --- fault 1: symbol names as brokers write them -----------------------------------------------
@pytest.mark.parametrize("symbol", ["Volatility 75 (1s) Index", "S&P500"])
def test_symbols_named_freely_are_read_and_traded(http: httpx.Client, symbol: str) -> None:
    body = http.get(f"/api/symbols/{quote(symbol, safe='')}").json()
    assert body["symbol"] == symbol and body["spec"]["name"] == symbol and body["tick"]["bid"] > 0
    response = http.post("/api/orders", json={"symbol": symbol, "type": "buy", "volume": 0.1})
    assert response.status_code == 201, response.text
    assert http.get("/api/positions").json()[0]["symbol"] == symbol


def test_a_symbol_name_reaches_the_terminal_which_says_whether_it_exists(http: httpx.Client) -> None:
    refused(http.get("/api/symbols/BTC%2FUSD"), 404, "unknown_symbol", "'BTC/USD'")
    refused(http.post("/api/orders", json={"symbol": "DAX 40 (cash)", "type": "buy", "volume": 0.1}), 422, "unknown_symbol")
    # Control characters are no broker's: refused before the terminal.
    # Control characters are no broker's, nor 65 characters: refused before the terminal, in words.
    for bad in (http.get("/api/symbols/EUR%01USD"), http.post("/api/orders", json={"symbol": "X" * 65, "type": "buy", "volume": 0.1})):
        body = refused(bad, 422, "invalid_input", "1 to 64 characters, no control or invisible formatting characters")
        assert "\\x" not in body["message"] and "^" not in body["message"]  # no regular expression


# --- fault 2: comments the terminal refuses ----------------------------------------------------
def test_the_simulated_terminal_refuses_comments_as_terminal_builds_do(terminal: SimulatedTerminal) -> None:
    assert terminal.initialize(login=LOGIN)
    request = {"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1, "type": c.ORDER_TYPE_BUY, "type_filling": 0}
    for comment in ("x" * 29, "grid(1)", "tp=1.1", "a,b", "[x]", "naïve"):
        assert terminal.order_check({**request, "comment": comment}) is None
        assert terminal.last_error() == (c.RES_E_INVALID_PARAMS, 'Invalid "comment" argument')
    assert terminal.order_check({**request, "comment": "x" * 28}).retcode == 0


@pytest.mark.parametrize(
    ("comment", "rule"),
    [("x" * 29, "longer than 27"), ("grid(1)", "'(' ')'"), ("tp=1.1", "'='"), ("ok but é", "'é'")],
)
def test_a_comment_the_terminal_would_refuse_is_422_naming_the_rule_and_the_retry_replays_it(
    http: httpx.Client, comment: str, rule: str
) -> None:
    order = {"symbol": "EURUSD", "type": "buy", "volume": 0.1, "comment": comment}
    headers = {"Idempotency-Key": f"comment-{comment.encode().hex()[:40]}"}
    first = refused(http.post("/api/orders", json=order, headers=headers), 422, "invalid_input", "comment", rule)
    again = http.post("/api/orders", json=order, headers=headers)
    assert again.status_code == 422 and again.json() == first
    assert http.get("/api/positions").json() == []


class InvalidArgumentTerminalStub(SimulatedTerminal):
    """STUB for a terminal build stricter than any rule the service knows: its order_check
    refuses every request with last_error (-2, 'Invalid "comment" argument')."""

    def order_check(self, request: dict[str, Any]) -> Any:
        with self._lock:
            return self._fail(c.RES_E_INVALID_PARAMS, 'Invalid "comment" argument', None)


def test_an_argument_the_terminal_refuses_is_the_callers_422_never_a_stored_5xx(
    start_service: Callable[..., LiveService], clock: ManualClock
) -> None:
    _, http = started(start_service, InvalidArgumentTerminalStub(clock=clock))
    headers = {"Idempotency-Key": "stub-refuses"}
    order = {"symbol": "EURUSD", "type": "buy", "volume": 0.1, "comment": "fine"}
    first = refused(http.post("/api/orders", json=order, headers=headers), 422, "invalid_argument", 'Invalid "comment" argument')
    assert first["retcode"] is None
    replay = http.post("/api/orders", json=order, headers=headers)
    assert replay.status_code == 422 and replay.headers["Idempotent-Replayed"] == "true"


def test_a_refusal_of_the_moment_frees_the_idempotency_key_for_the_retry(service: LiveService, http: httpx.Client) -> None:
    # 409 trading_disabled (AutoTrading off) says what to fix; once fixed, the same key's
    # retry is sent, not answered with the stored 409 for 7 days.
    headers = {"Idempotency-Key": "when-trading-is-back"}
    order = {"symbol": "EURUSD", "type": "buy", "volume": 0.1}
    service.backend.set_trading(trade_allowed=False)
    wait_until(lambda: http.get("/health").json()["trade_allowed"] is False, what="trade_allowed false")
    refused(http.post("/api/orders", json=order, headers=headers), 409, "trading_disabled")
    service.backend.set_trading(trade_allowed=True)
    wait_until(lambda: http.get("/health").json()["trade_allowed"], what="trade_allowed true")
    retry = http.post("/api/orders", json=order, headers=headers)
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers, retry.text
    replay = http.post("/api/orders", json=order, headers=headers)  # now it executed: replayed
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert len(http.get("/api/positions").json()) == 1


def test_a_json_key_given_twice_is_refused_never_resolved(http: httpx.Client) -> None:
    # json.loads keeps the last: {"volume": 0.01, "volume": 1} was an order for 1 lot.
    doubled = b'{"symbol": "EURUSD", "type": "buy", "volume": 0.01, "volume": 1}'
    json_headers = {"Content-Type": "application/json"}
    refused(http.post("/api/orders", content=doubled, headers=json_headers), 422, "invalid_input", '"volume" is given twice')
    assert http.get("/api/positions").json() == []
    ticket = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1, "sl": 1.0}).json()["position"]
    patch = http.patch(f"/api/positions/{ticket}", content=b'{"sl": 1.0, "sl": 0}', headers=json_headers)
    refused(patch, 422, "invalid_input", '"sl" is given twice')
    assert http.get("/api/positions").json()[0]["sl"] == 1.0
    two_keys = http.post(
        "/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1}, headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    )
    refused(two_keys, 400, "invalid_idempotency_key", "more than once")


@pytest.mark.parametrize(
    ("content", "headers", "says"),
    [
        (b"symbol=EURUSD", {"Content-Type": "application/x-www-form-urlencoded"}, "not a JSON object"),
        (b"", {"Content-Type": "application/json"}, "the body is missing"),
        (b'{"symbol": "EURUSD"} trailing', {"Content-Type": "application/json"}, "not valid JSON"),
        (b'{"volume": ' + b"9" * 5000 + b"}", {"Content-Type": "application/json"}, "not valid JSON"),
    ],
    ids=["form", "empty", "trailing", "5000-digit-number"],
)
def test_a_body_that_is_not_one_json_object_is_told_how_to_send_one(
    http: httpx.Client, content: bytes, headers: dict[str, str], says: str
) -> None:
    refused(http.post("/api/orders", content=content, headers=headers), 422, "invalid_input", says, "Content-Type: application/json")


# --- fault 3: netting accounts -------------------------------------------------------------------
def test_on_a_netting_account_the_answer_names_the_position_the_deal_joined_and_it_can_be_modified(
    start_service: Callable[..., LiveService], clock: ManualClock
) -> None:
    _, http = started(start_service, SimulatedTerminal(clock=clock, options=NETTING))
    assert http.get("/api/account").json()["margin_mode"] == c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING
    first = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1}).json()
    second = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.2}).json()
    assert second["order"] != first["order"]
    assert second["position"] == first["position"] == first["order"]  # one position: the first order's
    rows = http.get("/api/positions").json()
    assert [(r["ticket"], r["volume"]) for r in rows] == [(first["position"], pytest.approx(0.3))]
    modified = http.patch(f"/api/positions/{second['position']}", json={"sl": 1.0})
    assert modified.status_code == 200, modified.text
    closing = http.post("/api/orders", json={"symbol": "EURUSD", "type": "sell", "volume": 0.3}).json()
    assert closing["position"] is None and http.get("/api/positions").json() == []


def test_a_netting_reversal_is_one_position_with_a_new_ticket_on_the_websocket(
    service_factory_netting: tuple[LiveService, httpx.Client],
) -> None:
    live, http = service_factory_netting
    opened = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1}).json()
    with ws_connect(live) as ws:
        assert json.loads(ws.recv())["type"] == "snapshot"
        reversed_ = http.post("/api/orders", json={"symbol": "EURUSD", "type": "sell", "volume": 0.3}).json()
        assert reversed_["position"] == reversed_["order"] != opened["position"]
        update = json.loads(ws.recv())
        while "positions" not in update:
            update = json.loads(ws.recv())
    positions = update["positions"]
    assert positions["removed"] == []
    assert positions["reticketed"] == [{"from": opened["position"], "to": reversed_["position"]}]
    (row,) = positions["changed"]
    assert row["ticket"] == reversed_["position"] and row["identifier"] == opened["position"]
    assert row["type"] == c.POSITION_TYPE_SELL and row["volume"] == pytest.approx(0.2)
    # The caller's old ticket is answered with the new one.
    stale = http.patch(f"/api/positions/{opened['position']}", json={"sl": 0})
    refused(stale, 404, "position_not_found", f"has the ticket {reversed_['position']} now")


@pytest.fixture
def service_factory_netting(start_service: Callable[..., LiveService], clock: ManualClock) -> tuple[LiveService, httpx.Client]:
    return started(start_service, SimulatedTerminal(clock=clock, options=NETTING))


# --- fault 4: the tick grid ----------------------------------------------------------------------
def test_prices_off_the_tick_grid_are_refused_with_the_nearest_valid_ones(http: httpx.Client) -> None:
    spec = http.get("/api/symbols/DE40").json()["spec"]
    assert (spec["digits"], spec["point"], spec["trade_tick_size"]) == (1, 0.1, 0.5)
    bid = http.get("/api/symbols/DE40").json()["tick"]["bid"]
    base = round(bid - 100.0)  # a whole number: on the 0.5 grid
    order = {"symbol": "DE40", "type": "buy_limit", "volume": 1.0}
    refused(
        http.post("/api/orders", json={**order, "price": base + 0.3}), 422, "invalid_price", "tick size is 0.5", f"{base}.0", f"{base}.5"
    )
    refused(http.post("/api/orders", json={**order, "price": base, "sl": base - 50.2}), 422, "invalid_stops", "sl")
    placed = http.post("/api/orders", json={**order, "price": base + 0.5, "sl": base - 50.0})
    assert placed.status_code == 201, placed.text
    ticket = placed.json()["order"]
    refused(http.patch(f"/api/orders/{ticket}", json={"tp": base + 200.1}), 422, "invalid_stops", "tp")
    position = http.post("/api/orders", json={"symbol": "DE40", "type": "buy", "volume": 1.0}).json()["position"]
    refused(http.patch(f"/api/positions/{position}", json={"sl": base - 10.7}), 422, "invalid_stops", "tick size")
    assert http.patch(f"/api/positions/{position}", json={"sl": base - 10.5}).status_code == 200


def test_the_simulated_server_refuses_off_grid_prices_with_10015_and_10016(terminal: SimulatedTerminal) -> None:
    assert terminal.initialize(login=LOGIN)
    bid = terminal.symbol_info_tick("DE40").bid
    assert (bid * 2) == int(bid * 2)  # quotes are on the grid
    base = float(round(bid - 100.0))
    request = {"action": c.TRADE_ACTION_PENDING, "symbol": "DE40", "volume": 1.0, "type": c.ORDER_TYPE_BUY_LIMIT}
    assert terminal.order_check({**request, "price": base + 0.3}).retcode == c.TRADE_RETCODE_INVALID_PRICE
    assert terminal.order_check({**request, "price": base, "tp": base + 300.1}).retcode == c.TRADE_RETCODE_INVALID_STOPS
    assert terminal.order_check({**request, "price": base + 0.5}).retcode == 0


# --- fault 5: trading switched off while healthy ----------------------------------------------
def metric(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        ({"trade_allowed": False}, "AutoTrading"),
        ({"tradeapi_disabled": True}, "Python API"),
        ({"trade_expert": False}, "does not allow automated trading"),
    ],
)
def test_trading_switched_off_shows_in_health_and_metrics_and_orders_get_409_saying_why(
    service: LiveService, terminal: SimulatedTerminal, http: httpx.Client, flags: dict[str, bool], why: str
) -> None:
    assert http.get("/health").json()["trade_allowed"] is True and metric(http, "mt5_trade_allowed") == 1
    terminal.set_trading(**flags)
    health = wait_until(lambda: (h := http.get("/health")).json()["trade_allowed"] is False and h, what="trade_allowed false")
    assert health.status_code == 200 and why in health.json()["trade_reason"]
    assert metric(http, "mt5_trade_allowed") == 0
    refused(http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1}), 409, "trading_disabled", why)
    assert http.get("/api/account").status_code == 200  # reads keep working


def test_an_order_refused_with_10027_before_the_poll_saw_it_is_409_not_a_broker_502(
    start_service: Callable[..., LiveService], clock: ManualClock
) -> None:
    terminal = SimulatedTerminal(clock=clock)
    _, http = started(start_service, terminal, poll_interval=60.0)
    terminal.set_trading(trade_allowed=False)  # between two polls: the service has not seen it
    body = refused(
        http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1}), 409, "trading_disabled", "AutoTrading"
    )
    assert body["retcode"] == 10027


def test_an_investor_login_reads_but_cannot_trade(start_service: Callable[..., LiveService], clock: ManualClock, tmp_path: Path) -> None:
    terminal = SimulatedTerminal(clock=clock, options=TerminalOptions(password="master-pw", investor_password="investor-pw"))
    (tmp_path / "secrets").mkdir(exist_ok=True)
    (tmp_path / "secrets" / "password").write_text("investor-pw\n")
    _, http = started(start_service, terminal)
    health = http.get("/health").json()
    assert health["trade_allowed"] is False and "investor" in health["trade_reason"]
    refused(http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1}), 409, "trading_disabled", "investor")


# --- fault 6: a refused password is not tried for ever -------------------------------------------
class LoginCountingTerminal(SimulatedTerminal):
    """The simulator, counting initialize() calls: each one is a login attempt at the broker."""

    attempts = 0

    def initialize(self, *args: Any, **kwargs: Any) -> bool:
        self.attempts += 1
        return super().initialize(*args, **kwargs)


def test_a_refused_login_stops_after_three_attempts_survives_a_restart_and_resumes_on_a_new_secret(
    start_service: Callable[..., LiveService], clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(login_guard, "AUTH_RECHECK", 0.2)
    secret = tmp_path / "secrets" / "password"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("wrong-pw\n")
    terminal = LoginCountingTerminal(clock=clock, options=TerminalOptions(password="right-pw"))
    live = start_service(terminal)
    http = live.client()
    health = wait_until(lambda: http.get("/health").json()["auth_failed"] and http.get("/health"), timeout=15, what="auth_failed")
    assert health.status_code == 503 and health.json()["reason"].startswith("auth_failed:")
    assert metric(http, "mt5_auth_failed") == 1
    assert terminal.attempts == login_guard.AUTH_ATTEMPTS
    time.sleep(3.0)  # backoff alone would have tried twice more by now
    assert terminal.attempts == login_guard.AUTH_ATTEMPTS
    live.stop()

    again = start_service(terminal)  # same STATE_DIR, same refused secret: no new attempt
    http = again.client()
    wait_until(lambda: http.get("/health").json()["auth_failed"], what="auth_failed after the restart")
    time.sleep(1.0)
    assert terminal.attempts == login_guard.AUTH_ATTEMPTS
    assert metric(http, "mt5_auth_failed") == 1  # the alert holds across the restart

    secret.write_text("right-pw\n")  # the operator rotates the secret
    again.wait_healthy(timeout=10)
    assert http.get("/health").json()["auth_failed"] is False and metric(http, "mt5_auth_failed") == 0
    assert terminal.attempts == login_guard.AUTH_ATTEMPTS + 1


# --- fault 11: the trade server's clock -----------------------------------------------------------
def test_times_are_served_in_utc_and_the_server_offset_is_learned_shown_and_kept(
    start_service: Callable[..., LiveService], tmp_path: Path
) -> None:
    terminal = SimulatedTerminal(options=TerminalOptions(server_time_offset=7200))  # a UTC+2 server, real clock
    live, http = started(start_service, terminal)
    health = wait_until(
        lambda: (h := http.get("/health").json())["server_time_offset_source"] == "measured" and h, what="a measured offset"
    )
    assert health["server_time_offset"] == 7200
    assert metric(http, "mt5_server_time_offset_seconds") == 7200
    before = time.time()
    response = http.post("/api/orders", json={"symbol": "BTCUSD", "type": "buy", "volume": 0.01})
    assert response.status_code == 201, response.text
    after = time.time()
    (deal,) = [d for d in http.get("/api/history", params={"days": 1}).json() if d["order"] == response.json()["order"]]
    assert before - 1 <= deal["time"] <= after + 1 and before - 1 <= deal["time_msc"] / 1000 <= after + 1
    (position,) = http.get("/api/positions").json()
    assert before - 1 <= position["time"] <= after + 1
    assert abs(http.get("/api/symbols/BTCUSD").json()["tick"]["time"] - after) < 5
    live.stop()

    # A restart while no quote is fresh (the simulator's clock a day behind): the saved offset.
    stale = SimulatedTerminal(clock=ManualClock(time.time() - 86400), options=TerminalOptions(server_time_offset=7200))
    _, http = started(start_service, stale)
    health = http.get("/health").json()
    assert (health["server_time_offset"], health["server_time_offset_source"]) == (7200, "saved")


def test_the_server_offset_is_only_learned_from_a_fresh_quote() -> None:
    now = 1_800_000_000.0
    assert server_time.estimate(now + 7200 - 3, now) == 7200  # a quote 3 s old on UTC+2
    assert server_time.estimate(now + 20700, now) == 20700  # UTC+5:45
    assert server_time.estimate(now + 7200 - 3 * 3600 + 500, now) is None  # a closed market's quote
    assert server_time.estimate(0, now) is None
    clock = server_time.ServerClock(Path("/nonexistent"))
    quote = int((now + 7200 - 3 * 3600) * 1000)  # Friday's close, 3 h old, on a Sunday
    clock.learn(quote, now)
    clock.learn(quote, now + 5)
    assert (clock.offset, clock.source) == (None, "unknown")  # it never moved: no reading
    clock.learn(int((now + 7200 + 6) * 1000), now + 6)
    assert (clock.offset, clock.source) == (7200, "measured")
    assert server_time.to_utc({"time": 7300, "time_msc": 7_300_500, "time_expiration": 0, "price": 1.5}, 7200) == {
        "time": 100,
        "time_msc": 100_500,
        "time_expiration": 0,
        "price": 1.5,
    }


def test_the_simulated_terminal_reports_server_time_and_a_closed_market_s_last_quote() -> None:
    friday_close = datetime(2026, 12, 4, 20, 59, 59, tzinfo=UTC).timestamp()
    saturday = friday_close + 15 * 3600
    terminal = SimulatedTerminal(clock=ManualClock(saturday), options=TerminalOptions(server_time_offset=7200))
    assert terminal.initialize(login=LOGIN)
    assert terminal.symbol_info_tick("EURUSD").time == int(friday_close) + 7200
    assert terminal.symbol_info_tick("BTCUSD").time == int(saturday) + 7200
    request = {"action": c.TRADE_ACTION_DEAL, "symbol": "BTCUSD", "volume": 0.01, "type": c.ORDER_TYPE_BUY, "type_filling": 0}
    assert terminal.order_send(request).retcode == c.TRADE_RETCODE_DONE
    server_now = saturday + 7200  # the history window is on the server's clock, as the deal's time
    assert [d.time for d in terminal.history_deals_get(server_now - 60, server_now + 60) if d.symbol] == [int(server_now)]
    assert [d for d in terminal.history_deals_get(saturday - 60, saturday + 60) if d.symbol] == []
    names = {s.name for s in terminal.symbols_get("*USD*,!BTC*")}
    assert "EURUSD" in names and "BTCUSD" not in names and terminal.symbols_total() == len(terminal.symbols_get())


# --- fault 12: symbols outside Market Watch ------------------------------------------------------
def test_a_symbol_outside_market_watch_is_selected_and_its_first_tick_awaited(
    start_service: Callable[..., LiveService], clock: ManualClock
) -> None:
    options = TerminalOptions(hidden_symbols=frozenset({"XAUUSD", "GBPUSD"}), select_tick_delay=0.3)
    _, http = started(start_service, SimulatedTerminal(clock=clock, options=options))
    body = http.get("/api/symbols/XAUUSD").json()
    assert body["tick"]["bid"] > 0 and body["tick"]["time"] > 0
    assert body["spec"]["visible"] is True and body["spec"]["select"] is True  # the spec after the select
    response = http.post("/api/orders", json={"symbol": "GBPUSD", "type": "buy", "volume": 0.1})
    assert response.status_code == 201, response.text


def test_the_simulated_terminal_has_no_quotes_for_a_symbol_outside_market_watch(clock: ManualClock) -> None:
    terminal = SimulatedTerminal(clock=clock, options=TerminalOptions(hidden_symbols=frozenset({"XAUUSD"}), select_tick_delay=0.2))
    assert terminal.initialize(login=LOGIN)
    assert terminal.symbol_info("XAUUSD").visible is False and terminal.symbol_info_tick("XAUUSD").bid == 0
    request = {"action": c.TRADE_ACTION_DEAL, "symbol": "XAUUSD", "volume": 0.1, "type": c.ORDER_TYPE_BUY, "type_filling": 0}
    assert terminal.symbol_select("XAUUSD", True)
    assert terminal.order_send(request).retcode == c.TRADE_RETCODE_PRICE_OFF  # the tick is not there yet
    time.sleep(0.25)
    assert terminal.order_send(request).retcode == c.TRADE_RETCODE_DONE
