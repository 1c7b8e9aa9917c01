"""WS /ws with a real websockets client: snapshot, diffs, status, and slow clients."""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from typing import Any

import httpx
import pytest
from mt5_account_service.backends import base as c
from mt5_account_service.backends.simulator import ManualClock, SimulatedTerminal
from mt5svc_testlib import API_KEY, LOGIN, LiveService, next_message, next_of_type, wait_until, ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def test_connect_without_key_is_refused(service: LiveService) -> None:
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(service, key=None)
    # refused by the gate before the handshake, with the same JSON error as REST
    assert refused.value.response.status_code == 401
    assert b'"error": "unauthorized"' in refused.value.response.body


def test_snapshot_on_connect_then_only_changes(
    service: LiveService, http: httpx.Client, terminal: SimulatedTerminal, clock: ManualClock
) -> None:
    with ws_connect(service) as ws:
        snapshot = next_message(ws)
        assert snapshot["type"] == "snapshot" and snapshot["connected"] is True
        assert snapshot["account"]["login"] == LOGIN
        assert snapshot["positions"] == [] and snapshot["orders"] == []
        # nothing changes while the (manual) clock stands still: no message at all
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        opened = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1}).json()
        update = next_of_type(ws, "update")
        assert [p["ticket"] for p in update["positions"]["changed"]] == [opened["position"]]
        assert update["positions"]["removed"] == []
        assert "orders" not in update
        assert set(update["account"]) <= {"margin", "margin_free", "margin_level", "profit", "equity"}
        assert "margin" in update["account"] and "login" not in update["account"]
        clock.advance(30)  # prices move: only price-driven fields change
        moved = next_of_type(ws, "update")
        (row,) = moved["positions"]["changed"]
        assert row["price_current"] != snapshot_price(opened)
        assert "balance" not in moved.get("account", {})
        http.delete(f"/api/positions/{opened['position']}")
        closed = next_of_type(ws, "update")
        assert closed["positions"] == {"changed": [], "removed": [opened["position"]]}
        assert "balance" in closed["account"]
        assert closed["seq"] > moved["seq"] > update["seq"] > snapshot["seq"]


def snapshot_price(opened: dict[str, Any]) -> float:
    return float(opened["bid"])


def test_late_joiner_gets_the_current_state(service: LiveService, http: httpx.Client) -> None:
    placed = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy_limit", "volume": 0.1, "price": 1.07}).json()
    with ws_connect(service) as ws:
        snapshot = next_message(ws)
        assert [o["ticket"] for o in snapshot["orders"]] == [placed["order"]]


def test_client_count_is_tracked(service: LiveService, http: httpx.Client) -> None:
    def gauge() -> float:
        line = next(row for row in http.get("/metrics").text.splitlines() if row.startswith("mt5_ws_clients "))
        return float(line.split()[1])

    with ws_connect(service) as a, ws_connect(service) as b:
        next_message(a), next_message(b)
        assert wait_until(lambda: gauge() == 2.0, what="two clients")
    assert wait_until(lambda: gauge() == 0.0, what="no clients")


def test_a_slow_client_is_dropped_without_delaying_the_others(start_service: Any) -> None:
    # Real time and an always-open symbol: prices (and so 300 positions) change every poll,
    # making each update ~100 kB, which a client that never reads cannot absorb for long.
    terminal = SimulatedTerminal(balance=1_000_000)
    live = start_service(terminal, poll_interval=0.05, ws_queue_size=8)
    live.wait_healthy()
    terminal.initialize()
    for _ in range(300):
        terminal.order_send(
            {
                "action": c.TRADE_ACTION_DEAL,
                "symbol": "BTCUSD",
                "volume": 0.01,
                "type": c.ORDER_TYPE_BUY,
                "type_filling": c.ORDER_FILLING_FOK,
            }
        )

    # The slow client is a raw socket that completes the handshake and never reads (a
    # websockets client would keep reading into its own buffers in a background thread).
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", live.port))
    slow.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            f"X-API-Key: {API_KEY}\r\n\r\n"
        ).encode()
    )
    fast = [ws_connect(live, max_size=None).__enter__() for _ in range(3)]
    gaps: list[float] = []
    stop = threading.Event()

    def read_fast(ws: Any) -> None:
        last = time.monotonic()
        while not stop.is_set():
            try:
                ws.recv(timeout=2)
            except TimeoutError:
                gaps.append(2.0)
                continue
            except ConnectionClosed:
                if not stop.is_set():
                    gaps.append(99.0)  # dropped while still reading: a failure
                return
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    readers = [threading.Thread(target=read_fast, args=(ws,)) for ws in fast]
    for reader in readers:
        reader.start()
    try:
        with live.client() as http:

            def slow_dropped() -> bool:
                return "mt5_ws_clients 3.0" in http.get("/metrics").text

            wait_until(slow_dropped, timeout=20, interval=0.2, what="the slow client to be dropped")
        time.sleep(0.5)  # the others keep receiving after the drop
    finally:
        stop.set()
        for ws in fast:
            ws.close()
        for reader in readers:
            reader.join(timeout=10)
    assert len(gaps) > 30
    assert max(gaps) < 1.0, f"a fast client waited {max(gaps):.2f} s between updates"
    # what the slow client finally reads ends with a close frame: 1013 "try again later"
    slow.settimeout(5)
    tail, deadline = b"", time.monotonic() + 10
    close_frame = (1013).to_bytes(2, "big") + b"client too slow"
    while close_frame not in tail and time.monotonic() < deadline:
        chunk = slow.recv(1 << 20)
        if not chunk:
            break
        tail = (tail + chunk)[-256:]
    slow.close()
    assert close_frame in tail
