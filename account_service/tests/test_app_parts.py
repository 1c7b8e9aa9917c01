"""The parts create_app is assembled from: the route table, the dependencies (service, API
key), the error helpers and handlers, the ticket watch of the service. No server, no lifespan:
the service's workers do not run here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, WebSocketException
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from mt5_account_service.api import create_app, fast_path_routes
from mt5_account_service.backends.simulator import SimulatedTerminal
from mt5_account_service.deps import api_key, get_service
from mt5_account_service.errors import (
    EXCEPTION_HANDLERS,
    ApiError,
    allowed_methods,
    error_response,
    responses,
    validation_message,
    with_retry_after,
)
from mt5_account_service.gateway import Snapshot
from mt5_account_service.routers import reads
from mt5_account_service.service import Service, TicketWatch, build_service
from mt5svc_testlib import API_KEY, OTHER_KEY, make_settings
from starlette.requests import HTTPConnection

#: The routes as served, in matching order: (path, methods, endpoint name).
ROUTES = [
    ("/openapi.json", ["GET", "HEAD"], "openapi"),
    ("/docs", ["GET", "HEAD"], "swagger_ui_html"),
    ("/docs/oauth2-redirect", ["GET", "HEAD"], "swagger_ui_redirect"),
    ("/health", ["GET"], "health"),
    ("/metrics", ["GET"], "metrics"),
    ("/api/account", ["GET"], "account"),
    ("/api/positions", ["GET"], "positions"),
    ("/api/orders", ["GET"], "orders"),
    ("/api/history", ["GET"], "history"),
    ("/api/history/deals", ["GET"], "history_deals"),
    ("/api/history/orders", ["GET"], "history_orders"),
    ("/api/positions/{ticket}", ["GET"], "position"),
    ("/api/orders/{ticket}", ["GET"], "order"),
    ("/api/symbols/{symbol:path}", ["GET"], "symbol"),
    ("/api/symbols", ["GET"], "symbols"),
    ("/api/symbols/{symbol:path}/select", ["POST"], "select_symbol"),
    ("/api/rates/{symbol:path}", ["GET"], "rates"),
    ("/api/ticks/{symbol:path}", ["GET"], "ticks"),
    ("/api/orders", ["POST"], "post_order"),
    ("/api/orders/check", ["POST"], "post_order_check"),
    ("/api/positions/{ticket}", ["PATCH"], "patch_position"),
    ("/api/orders/{ticket}", ["PATCH"], "patch_order"),
    ("/api/positions/{ticket}", ["DELETE"], "delete_position"),
    ("/api/positions/{ticket}/close_by", ["POST"], "post_close_by"),
    ("/api/positions", ["DELETE"], "delete_positions"),
    ("/api/orders/{ticket}", ["DELETE"], "delete_order"),
    ("/ws", [], "ws"),
]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    app = create_app(make_settings(tmp_path), SimulatedTerminal())
    yield app
    app.state.svc.idempotency.close()


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    svc = build_service(make_settings(tmp_path), SimulatedTerminal())
    yield svc
    svc.idempotency.close()


def http_scope(path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None, kind: str = "http") -> dict[str, Any]:
    return {"type": kind, "path": path, "method": method, "headers": headers or [], "query_string": b"", "root_path": ""}


def test_routes_are_served_in_the_declared_order(app: FastAPI) -> None:
    served = [(r.path, sorted(r.methods or []), r.name) for r in iter_route_contexts(app.routes)]
    assert served == ROUTES


def test_the_gate_gets_the_get_routes_of_its_fast_path(app: FastAPI) -> None:
    found = fast_path_routes(app.routes)
    assert {path: (getattr(r, "path", None), getattr(r, "methods", None)) for path, r in found.items()} == {
        "/api/account": ("/api/account", {"GET"}),
        "/api/positions": ("/api/positions", {"GET"}),
        "/api/orders": ("/api/orders", {"GET"}),
    }


def test_allowed_methods_names_every_route_at_the_path(app: FastAPI) -> None:
    assert allowed_methods(app.routes, http_scope("/api/orders", "PUT")) == "GET, POST"
    assert allowed_methods(app.routes, http_scope("/api/positions/7", "PUT")) == "DELETE, GET, PATCH"
    assert allowed_methods(app.routes, http_scope("/openapi.json", "POST")) == "GET, HEAD"
    assert allowed_methods(app.routes, http_scope("/nowhere", "GET")) == ""


def test_the_service_dependency_is_the_apps_service(app: FastAPI) -> None:
    conn = HTTPConnection({**http_scope("/api/history"), "app": app})
    assert get_service(conn) is app.state.svc


def test_api_key_dependency_accepts_any_configured_key(svc: Service) -> None:
    assert api_key(HTTPConnection(http_scope("/api/account", headers=[(b"x-api-key", API_KEY.encode())])), svc) == API_KEY
    bearer = [(b"authorization", b"bearer " + OTHER_KEY.encode())]
    assert api_key(HTTPConnection(http_scope("/api/account", headers=bearer)), svc) == OTHER_KEY


def test_api_key_dependency_refuses_a_missing_or_wrong_key(svc: Service) -> None:
    for headers in ([], [(b"x-api-key", b"not-the-key-at-all")]):
        with pytest.raises(ApiError) as refused:
            api_key(HTTPConnection(http_scope("/api/account", headers=headers)), svc)
        assert (refused.value.status, refused.value.error) == (401, "unauthorized")
        assert refused.value.headers == {"WWW-Authenticate": 'Bearer realm="mt5-account"'}
    with pytest.raises(WebSocketException) as closed:
        api_key(HTTPConnection(http_scope("/ws", kind="websocket")), svc)
    assert closed.value.code == 1008


def test_a_router_served_without_the_gate_still_needs_the_key(svc: Service) -> None:
    """The gate is the first check; the routers' own dependency is the second."""
    app = FastAPI(exception_handlers=EXCEPTION_HANDLERS)
    app.state.svc = svc
    app.include_router(reads.router)

    async def get(headers: dict[str, str]) -> httpx.Response:
        # No lifespan runs: the poller never connects.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
            return await client.get("/api/history", headers=headers)

    refused = asyncio.run(get({}))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="mt5-account"'
    assert refused.json()["error"] == "unauthorized"
    allowed = asyncio.run(get({"X-API-Key": API_KEY}))
    assert (allowed.status_code, allowed.json()["error"]) == (503, "backend_unavailable")


def test_every_429_carries_retry_after() -> None:
    assert with_retry_after(409, {"A": "b"}) == {"A": "b"}
    assert with_retry_after(429) == {"Retry-After": "1"}
    assert with_retry_after(429, {"A": "b"}) == {"A": "b", "Retry-After": "1"}
    response = error_response(429, "too_many_requests", "slow down", retcode=10024)
    assert response.headers["retry-after"] == "1"
    assert response.body == b'{"error":"too_many_requests","message":"slow down","retcode":10024}'


def test_documented_responses_use_the_error_model() -> None:
    documented = responses(401, 429)
    assert documented[401] == {"model": documented[401]["model"], "description": "missing or wrong API key"}
    assert documented[401]["model"].__name__ == "ErrorOut"
    assert documented[429]["headers"]["Retry-After"]["schema"] == {"type": "integer"}


def test_validation_message_names_each_field_and_says_json_number() -> None:
    exc = RequestValidationError(
        [
            {"loc": ("body", "volume"), "msg": "Input should be a valid number", "type": "float_type"},
            {"loc": ("query", "days"), "msg": "Value error, 'x' is not a whole number", "type": "value_error"},
            {"loc": ("body",), "msg": "Field required", "type": "missing"},
        ]
    )
    assert validation_message(exc) == (
        "volume: Input should be a valid number (a JSON number: not a string, not true/false); "
        "days: 'x' is not a whole number; the body is missing: send one JSON object with Content-Type: application/json"
    )
    assert validation_message(RequestValidationError([])) == "invalid request"


def snapshot(positions: list[int], orders: list[int]) -> Snapshot:
    return Snapshot(0.0, {}, {}, {t: {} for t in positions}, {t: {} for t in orders})


def test_ticket_watch_sets_due_when_positions_or_orders_change() -> None:
    due = asyncio.Event()
    watch = TicketWatch(due)

    def fired(snap: Snapshot) -> bool:
        watch(snap, None)
        was = due.is_set()
        due.clear()
        return was

    assert fired(snapshot([], []))  # the first snapshot: read the deals once
    assert not fired(snapshot([], []))
    assert fired(snapshot([5], []))
    assert not fired(snapshot([5], []))
    assert fired(snapshot([], [5]))  # the same ticket as an order is a change
    assert fired(snapshot([], []))


def test_build_service_leaves_the_optional_stores_out(svc: Service) -> None:
    assert (svc.store, svc.registry, svc.tasks) == (None, None, [])
