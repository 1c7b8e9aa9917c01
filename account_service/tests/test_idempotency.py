"""Idempotency-Key: a retried order returns the first result, also after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from mt5_account_service.backends.simulator import SimulatedTerminal
from mt5_account_service.idempotency import IdempotencyStore, fingerprint
from mt5svc_testlib import LiveService

ORDER = {"symbol": "EURUSD", "type": "buy", "volume": 0.1}


def post(http: httpx.Client, key: str, body: dict[str, Any] = ORDER) -> httpx.Response:
    return http.post("/api/orders", json=body, headers={"Idempotency-Key": key})


def test_a_retried_order_returns_the_first_result_and_trades_once(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    first = post(http, "order-abc-1")
    second = post(http, "order-abc-1")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(terminal.positions_get()) == 1


def test_distinct_keys_place_distinct_orders(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    assert post(http, "k-1").json()["order"] != post(http, "k-2").json()["order"]
    assert len(terminal.positions_get()) == 2


def test_a_key_reused_for_another_request_is_refused(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    assert post(http, "same-key").status_code == 201
    other = post(http, "same-key", {**ORDER, "volume": 0.2})
    assert other.status_code == 422
    assert "different request" in other.json()["message"]
    assert len(terminal.positions_get()) == 1


def test_a_refused_order_replays_its_refusal(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    bad = {**ORDER, "volume": 0.015}
    assert post(http, "bad-1", bad).status_code == 422
    assert post(http, "bad-1", bad).status_code == 422
    assert terminal.positions_get() == ()


def test_closing_with_a_key_closes_once(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    ticket = http.post("/api/orders", json={**ORDER, "volume": 0.5}).json()["position"]
    for _ in range(3):
        response = http.delete(f"/api/positions/{ticket}", params={"volume": 0.1}, headers={"Idempotency-Key": "close-1"})
        assert response.status_code == 200
    assert terminal.positions_get()[0].volume == 0.4


def test_idempotency_survives_a_restart_of_the_service(start_service: Any, terminal: SimulatedTerminal) -> None:
    first_run = start_service(terminal)
    first_run.wait_healthy()
    with first_run.client() as http:
        first = post(http, "survives-restart")
    assert first.status_code == 201
    first_run.stop()

    second_run = start_service(terminal)  # same STATE_DIR, new process state
    assert second_run.settings.state_dir == first_run.settings.state_dir
    second_run.wait_healthy()
    with second_run.client() as http:
        again = post(http, "survives-restart")
    assert again.status_code == 201 and again.json() == first.json()
    assert len(terminal.positions_get()) == 1


def test_a_key_interrupted_by_a_crash_is_not_guessed(tmp_path: Path) -> None:
    fp = fingerprint("POST", "/api/orders", ORDER)
    crashed = IdempotencyStore(tmp_path / "idem.sqlite3")
    assert crashed.claim("in-flight", fp).state == "new"
    assert crashed.claim("in-flight", fp).state == "in_progress"
    crashed.close()  # the process died before finish()
    restarted = IdempotencyStore(tmp_path / "idem.sqlite3")
    assert restarted.claim("in-flight", fp).state == "interrupted"


def test_interrupted_key_gets_409_telling_what_to_check(service: LiveService, http: httpx.Client) -> None:
    store = service.svc.idempotency
    fp = fingerprint("POST", "/api/orders", {**ORDER, "price": None, "sl": None, "tp": None, "deviation": 20, "comment": "", "magic": 0})
    store._db.execute(
        "INSERT INTO idempotency (key, fingerprint, state, created, boot) VALUES ('older-boot', ?, 'started', 0, 'previous')", (fp,)
    )
    # created=0 is older than the retention, but pruning runs only at start
    response = post(http, "older-boot")
    assert response.status_code == 409
    assert "check GET /api/positions" in response.json()["message"]
