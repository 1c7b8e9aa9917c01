"""Losing the terminal: /health 503 with a reason, clients told, reconnect with backoff."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from mt5_account_service.backends.simulator import SimulatedTerminal
from mt5_account_service.poller import BACKOFF_MAX, BACKOFF_START, next_backoff
from mt5svc_testlib import LiveService, wait_until, ws_connect


def test_backoff_doubles_up_to_a_cap() -> None:
    delays = [BACKOFF_START]
    for _ in range(10):
        delays.append(next_backoff(delays[-1]))
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == BACKOFF_MAX == delays[-1]


def test_terminal_loss_turns_health_503_and_tells_clients_then_recovers(
    service: LiveService, http: httpx.Client, terminal: SimulatedTerminal
) -> None:
    with ws_connect(service) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
        terminal.set_terminal_up(False)
        status = json.loads(ws.recv(timeout=5))
        assert status == {"type": "status", "connected": False, "reason": status["reason"]}
        assert "IPC" in status["reason"]
        health = http.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "degraded" and health.json()["connected"] is False
        assert http.get("/api/account").status_code == 503
        order = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy", "volume": 0.1})
        assert order.status_code == 503 and "not connected" in order.json()["message"]
        terminal.set_terminal_up(True)
        back = json.loads(ws.recv(timeout=10))
        assert back == {"type": "status", "connected": True, "reason": None}
    assert http.get("/health").status_code == 200
    assert http.get("/api/account").status_code == 200


def test_health_is_503_when_polls_go_stale(service: LiveService, http: httpx.Client) -> None:
    service.svc.poller.stop()

    def stale() -> httpx.Response | None:
        # As if the loop had been stuck for a minute; set again until no poll that was already
        # under way when stop() came can overwrite it.
        service.svc.poller.last_success_mono = time.monotonic() - 60
        health = http.get("/health")
        return health if health.status_code == 503 else None

    health = wait_until(stale, timeout=5, what="/health 503 for a stale poll")
    assert "last successful poll" in health.json()["reason"]
    assert health.json()["last_poll_age"] >= 60


def test_service_starts_and_waits_while_the_terminal_is_down(start_service: Any) -> None:
    down = SimulatedTerminal()
    down.set_terminal_up(False)
    live = start_service(down)
    with live.client() as http:
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["connected"] is False
        down.set_terminal_up(True)
        wait_until(lambda: http.get("/health").status_code == 200, timeout=10, what="reconnect after the terminal came up")
