"""Streaming quotes on WS /ws (issue 15) with a real websockets client: subscribe, ticks at
most once per symbol per interval, the newest one winning, bounds and refusals."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from mt5_account_service import quotes
from mt5_account_service.backends.simulator import ManualClock, SimulatedTerminal
from mt5svc_testlib import LiveService, ws_connect
from mt5svc_testlib import next_message as receive
from mt5svc_testlib import next_of_type as receive_type


def ticks_within(ws: Any, seconds: float) -> list[dict[str, Any]]:
    found, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = receive(ws, left)
        except TimeoutError:
            break
        if message["type"] == "tick":
            found.append(message)
    return found


def test_subscribe_then_ticks_as_they_change(service: LiveService, terminal: SimulatedTerminal, clock: ManualClock) -> None:
    with ws_connect(service) as ws:
        assert receive(ws)["type"] == "snapshot"
        ws.send(json.dumps({"action": "subscribe", "symbols": ["EURUSD", "S&P500"], "interval_ms": 200}))
        assert receive_type(ws, "subscribed") == {"type": "subscribed", "symbols": ["EURUSD", "S&P500"], "interval_ms": 200}
        first = {m["symbol"]: m for m in ticks_within(ws, 0.5)}
        live = terminal.symbol_info_tick("EURUSD")
        assert set(first) == {"EURUSD", "S&P500"}
        assert (first["EURUSD"]["bid"], first["EURUSD"]["ask"], first["EURUSD"]["time"]) == (live.bid, live.ask, live.time)
        # the (manual) clock stands still: nothing new
        assert ticks_within(ws, 0.4) == []
        clock.advance(5)
        moved = receive_type(ws, "tick")
        assert moved["time"] == live.time + 5
        ws.send(json.dumps({"action": "unsubscribe", "symbols": ["S&P500"]}))
        assert receive_type(ws, "subscribed")["symbols"] == ["EURUSD"]
        clock.advance(5)
        assert {m["symbol"] for m in ticks_within(ws, 0.6)} == {"EURUSD"}


def test_at_most_one_tick_per_symbol_per_interval_the_newest_winning(service: LiveService, clock: ManualClock) -> None:
    with ws_connect(service) as ws:
        receive(ws)
        ws.send(json.dumps({"action": "subscribe", "symbols": ["EURUSD"], "interval_ms": 500}))
        receive_type(ws, "subscribed")
        receive_type(ws, "tick")
        start = time.monotonic()
        while time.monotonic() - start < 1.2:  # the price moves every 20 ms
            clock.advance(1)
            time.sleep(0.02)
        got = ticks_within(ws, 0.8)
        assert 2 <= len(got) <= 4  # 2 s of ticks at one per 500 ms (the first at once)
        times = [m["time_msc"] for m in got]
        assert times == sorted(times)
        assert got[-1]["time_msc"] == int(clock.t) * 1000  # the newest tick came last


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "invalid_message"),
        ("[1, 2]", "invalid_message"),
        (json.dumps({"action": "buy", "symbols": ["EURUSD"]}), "invalid_message"),
        (json.dumps({"action": "subscribe"}), "invalid_message"),
        (json.dumps({"action": "subscribe", "symbols": "EURUSD"}), "invalid_message"),
        (json.dumps({"action": "subscribe", "symbols": ["EURUSD"], "interval_ms": 5}), "invalid_message"),
        (json.dumps({"action": "subscribe", "symbols": ["EURUSD"], "interval_ms": True}), "invalid_message"),
        (json.dumps({"action": "subscribe", "symbols": ["EURUSD"], "extra": 1}), "invalid_message"),
        (json.dumps({"action": "subscribe", "symbols": ["EURUSD", "NOPE"]}), "unknown_symbol"),
        ("x" * 5000, "invalid_message"),
    ],
)
def test_a_bad_request_is_an_error_message_and_changes_nothing(service: LiveService, message: str, error: str) -> None:
    with ws_connect(service) as ws:
        receive(ws)
        ws.send(message)
        answer = receive_type(ws, "error")
        assert answer["error"] == error and answer["message"]
        ws.send(json.dumps({"action": "unsubscribe"}))
        assert receive_type(ws, "subscribed")["symbols"] == []  # the bad one added nothing


def test_subscriptions_are_bounded_per_client_and_per_account(service: LiveService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quotes, "MAX_SYMBOLS_PER_CLIENT", 3)
    monkeypatch.setattr(quotes, "MAX_SYMBOLS_PER_ACCOUNT", 3)
    with ws_connect(service) as one, ws_connect(service) as two:
        receive(one), receive(two)
        one.send(json.dumps({"action": "subscribe", "symbols": ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"]}))
        assert receive_type(one, "error")["error"] == "too_many_symbols"
        one.send(json.dumps({"action": "subscribe", "symbols": ["EURUSD", "GBPUSD"]}))
        assert receive_type(one, "subscribed")["symbols"] == ["EURUSD", "GBPUSD"]
        two.send(json.dumps({"action": "subscribe", "symbols": ["EURUSD", "USDJPY"]}))  # one new: 3 in all
        assert receive_type(two, "subscribed")["symbols"] == ["EURUSD", "USDJPY"]
        two.send(json.dumps({"action": "subscribe", "symbols": ["XAUUSD"]}))
        refused = receive_type(two, "error")
        assert refused["error"] == "too_many_symbols" and "all its clients" in refused["message"]
    # the clients left: their symbols are free again
    with ws_connect(service) as three:
        receive(three)
        three.send(json.dumps({"action": "subscribe", "symbols": ["XAUUSD", "BTCUSD"]}))
        assert receive_type(three, "subscribed")["symbols"] == ["BTCUSD", "XAUUSD"]


def test_a_hidden_symbol_is_selected_for_its_subscriber(start_service: Any, clock: ManualClock) -> None:
    from mt5_account_service.backends.simulator import TerminalOptions

    terminal = SimulatedTerminal(clock=clock, options=TerminalOptions(hidden_symbols=frozenset({"XAUUSD"})))
    live = start_service(terminal)
    live.wait_healthy()
    with ws_connect(live) as ws:
        receive(ws)
        ws.send(json.dumps({"action": "subscribe", "symbols": ["XAUUSD"]}))
        receive_type(ws, "subscribed")
        assert receive_type(ws, "tick")["symbol"] == "XAUUSD"


def test_a_hostile_message_is_answered_and_the_socket_stays(service: LiveService) -> None:
    with ws_connect(service) as ws:
        receive(ws)
        for text, says in (
            ("[" * 1000, "nested too deeply"),
            ('{"action": "subscribe", "symbols": ["EURUSD"], "symbols": ["GBPUSD"]}', "given twice"),
            ('{"action": "unsubscribe", "interval_ms": 500}', "only with subscribe"),
        ):
            ws.send(text)
            answer = receive_type(ws, "error")
            assert answer["error"] == "invalid_message" and says in answer["message"], answer
        ws.send(json.dumps({"action": "unsubscribe"}))
        assert receive_type(ws, "subscribed")["symbols"] == []
