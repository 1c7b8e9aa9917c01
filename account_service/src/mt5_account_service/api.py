"""The FastAPI application: routes, auth, idempotent trading, lifespan of the workers.

:func:`create_app` builds one self-contained app; everything it owns (backend gateway,
poller, WebSocket hub, metrics registry, stores) hangs off ``app.state.svc``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from . import __version__
from .backends import make_backend
from .config import Settings
from .gate import SECTIONS, Gate
from .gateway import BackendError, BackendUnavailable, Gateway, Snapshot
from .idempotency import MAX_KEY_LENGTH, IdempotencyStore, fingerprint
from .metrics import Metrics, RequestMetricsMiddleware
from .models import (
    MAX_DEVIATION,
    MAX_TICKET,
    SYMBOL_PATTERN,
    ErrorOut,
    HealthOut,
    OrderIn,
    OrderModifyIn,
    PositionModifyIn,
    QueryVolume,
    TradeOut,
    query_int,
)
from .poller import Poller
from .trading import TradeFailure, TradeOutcome, cancel_order, close_position, modify_order, modify_position, place_order
from .ws import Hub, encode

log = logging.getLogger(__name__)

JSON = "application/json"
#: Seconds a client should wait after a 429 (the trade server's "too many requests").
RETRY_AFTER_SECONDS = 1
#: How often the stores are pruned (idempotency keys past their TTL, old snapshots).
MAINTENANCE_INTERVAL = 3600.0

_ERROR_TEXT = {
    400: "bad request (e.g. an API key in the URL)",
    401: "missing or wrong API key",
    404: "not found",
    409: "conflict (market closed, price changed, Idempotency-Key in use, ...)",
    413: "request body larger than MAX_BODY_BYTES",
    422: "invalid input, or refused before or by the trade server",
    429: "too many requests: retry after Retry-After seconds",
    502: "the terminal or trade server answered with an error",
    503: "the terminal is not connected, or its data is not fresh",
    504: "the trade server did not answer in time",
}
_RETRY_AFTER_HEADER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer (all ErrorOut)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        out[code] = {"model": ErrorOut, "description": _ERROR_TEXT[code]}
        if code == 429:
            out[code]["headers"] = _RETRY_AFTER_HEADER
    return out


#: A ticket in a path: MT5 tickets are unsigned 64-bit, Postgres stores them as bigint.
Ticket = Annotated[query_int(0, MAX_TICKET, exclusive_low=True), Path(gt=0, le=MAX_TICKET)]
#: Every route answers 400 (key in URL) and 413 (body cap) from the gate.
SNAPSHOT_ERRORS = responses(400, 401, 413, 503)
READ_ERRORS = responses(400, 401, 413, 422, 503)
TRADE_ERRORS = responses(400, 401, 404, 409, 413, 422, 429, 502, 503, 504)
HTTP_ERROR_IDS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


@dataclass
class Service:
    """Everything one app instance owns."""

    settings: Settings
    metrics: Metrics
    hub: Hub
    gateway: Gateway
    poller: Poller
    idempotency: IdempotencyStore
    store: Any = None
    registry: Any = None
    trade_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    deals_due: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def _error(status: int, error: str, message: str, retcode: int | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": error, "message": message, "retcode": retcode}, status_code=status, headers=with_retry_after(status, headers)
    )


def with_retry_after(status: int, headers: dict[str, str] | None = None) -> dict[str, str] | None:
    """Every 429 tells the client when to come back (RFC 6585, RFC 9110 Retry-After)."""
    if status != 429:
        return headers
    return {**(headers or {}), "Retry-After": str(RETRY_AFTER_SECONDS)}


#: Strict number fields refuse booleans and strings: say so, "valid number" alone puzzles.
_STRICT_TYPES = {
    "float_type": " (a JSON number: not a string, not true/false)",
    "int_type": " (a whole JSON number: not a string, not true/false)",
}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") in _STRICT_TYPES:
            msg += _STRICT_TYPES[str(err["type"])]
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def _build_service(settings: Settings, backend: Any | None) -> Service:
    metrics = Metrics()
    hub = Hub(settings.ws_queue_size, metrics.ws_clients.set)
    gateway = Gateway(backend if backend is not None else make_backend(settings), settings)
    known: dict[str, frozenset[int]] = {}
    svc_holder: list[Service] = []

    def on_snapshot(snap: Snapshot, changes: dict[str, Any] | None) -> None:
        tickets = frozenset(snap.positions) | frozenset(-t for t in snap.orders)
        if known.get("tickets") != tickets:
            known["tickets"] = tickets
            svc_holder[0].deals_due.set()

    poller = Poller(gateway, hub, metrics, settings.poll_interval, settings.stale_after, on_snapshot=on_snapshot)
    svc = Service(settings, metrics, hub, gateway, poller, IdempotencyStore(settings.state_dir / "idempotency.sqlite3"))
    svc_holder.append(svc)
    if settings.database_url:
        from .store import Store

        svc.store = Store(
            settings.state_dir / "pg-spool.sqlite3",
            settings.login,
            settings.server,
            settings.database_url,
            settings.postgres_password,
            metrics.db_spool_pending.set,
        )
    if settings.redis_url:
        from .registry import Registry, registration, started_now

        svc.registry = Registry(
            settings.redis_url,
            settings.redis_password,
            settings.login,
            registration(settings.endpoint, settings.server, settings.backend, started_now()),
            settings.redis_ttl,
        )
    return svc


def allowed_methods(routes: list[Any], scope: dict[str, Any]) -> str:
    """Every method some route serves at this path (GET /api/orders and POST /api/orders
    are two routes)."""
    methods: set[str] = set()
    for route in routes:
        if getattr(route, "methods", None) and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _maintenance_loop(svc: Service) -> None:
    """Every MAINTENANCE_INTERVAL: drop idempotency keys past their TTL and this account's
    snapshots past SNAPSHOT_RETENTION_DAYS, so neither grows without bound. The first run
    is one interval after start (the idempotency store prunes itself when it opens)."""
    while True:
        await asyncio.sleep(MAINTENANCE_INTERVAL)
        try:
            removed = await asyncio.to_thread(svc.idempotency.prune)
            if removed:
                log.info("pruned %d expired idempotency keys", removed)
        except Exception as exc:  # noqa: BLE001 - try again next time
            log.warning("pruning idempotency keys failed: %s", exc)
        if svc.store is not None:
            await svc.store.prune_snapshots(svc.settings.snapshot_retention_days)


async def _record_loop(svc: Service) -> None:
    """Account snapshots every SNAPSHOT_INTERVAL; deals whenever positions/orders change."""
    store, interval = svc.store, svc.settings.snapshot_interval
    next_snapshot = time.monotonic()
    while True:
        try:
            try:
                await asyncio.wait_for(svc.deals_due.wait(), timeout=max(next_snapshot - time.monotonic(), 0.05))
            except TimeoutError:
                pass
            snap = svc.poller.fresh_snapshot()
            if snap is None:
                await asyncio.sleep(min(interval, 1.0))
                continue
            periodic = time.monotonic() >= next_snapshot
            if periodic:
                next_snapshot = time.monotonic() + interval
                await store.record_snapshot(snap.taken_at, snap.account, len(snap.positions), len(snap.orders))
            if periodic or svc.deals_due.is_set():
                svc.deals_due.clear()
                now = time.time()
                lo, hi = store.deals_window(now)
                deals = await svc.gateway.call("history_deals_get", lo, hi)
                await store.record_deals(deals)
                await asyncio.to_thread(store.mark_deals_scanned, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep recording after any hiccup
            log.warning("recording snapshot/deals failed: %s", exc)
            await asyncio.sleep(1.0)


def create_app(settings: Settings, backend: Any | None = None) -> FastAPI:
    """The service for one account. ``backend`` overrides MT5_BACKEND (tests pass a
    SimulatedTerminal they control)."""
    svc = _build_service(settings, backend)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc.metrics.info.labels(str(settings.login), settings.server, settings.backend, __version__).set(1)
        svc.metrics.backend_connected.set(0)
        svc.tasks.append(asyncio.create_task(svc.poller.run(), name="poller"))
        svc.tasks.append(asyncio.create_task(_maintenance_loop(svc), name="maintenance"))
        if svc.store is not None:
            svc.tasks.append(asyncio.create_task(svc.store.run(), name="pg-flusher"))
            svc.tasks.append(asyncio.create_task(_record_loop(svc), name="recorder"))
        if svc.registry is not None:
            svc.tasks.append(asyncio.create_task(svc.registry.run(), name="redis"))
        # Everything loaded so far lives as long as the process: keep it out of the
        # collector's way, so full collections under load stay short.
        gc.collect()
        gc.freeze()
        log.info("account service started: login=%s backend=%s port=%s", settings.login, settings.backend, settings.service_port)
        try:
            yield
        finally:
            svc.poller.stop()
            svc.hub.close_all()
            for task in svc.tasks:
                task.cancel()
            await asyncio.gather(*svc.tasks, return_exceptions=True)
            if svc.registry is not None:
                await svc.registry.close()
            if svc.store is not None:
                await svc.store.close()
            await svc.gateway.close()
            svc.idempotency.close()
            log.info("account service stopped")

    app = FastAPI(title="MT5 Farm account service", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.svc = svc
    shadowed: dict[str, Any] = {}
    app.add_middleware(Gate, svc=svc, routes=shadowed)
    app.add_middleware(RequestMetricsMiddleware, metrics=svc.metrics)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_input", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # exc.headers carries e.g. Allow on a 405 (RFC 9110 requires it) and Connection:
        # close on a 413; dropping them would break clients.
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette's Allow names only the first matching route
            headers["Allow"] = allowed_methods(app.routes, request.scope)
        return _error(exc.status_code, HTTP_ERROR_IDS.get(exc.status_code, "http_error"), str(exc.detail), headers=headers)

    @app.exception_handler(BackendUnavailable)
    async def _unavailable(_: Request, exc: BackendUnavailable) -> JSONResponse:
        return _error(503, "backend_unavailable", f"the terminal is not reachable: {exc}")

    @app.exception_handler(BackendError)
    async def _backend(_: Request, exc: BackendError) -> JSONResponse:
        return _error(502, "backend_error", f"the terminal returned an error: {exc}")

    def require_connected() -> None:
        if not svc.poller.connected:
            raise ApiError(503, "backend_unavailable", f"the terminal is not connected: {svc.poller.reason}")

    def section(name: str) -> Response:
        if svc.poller.fresh_snapshot() is None:
            healthy, reason = svc.poller.health()
            raise ApiError(503, "backend_unavailable", f"no fresh account data: {reason}")
        return Response(svc.poller.cached_json(name), media_type=JSON)

    # --- unauthenticated --------------------------------------------------------------------
    @app.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}, **responses(400, 413)})
    async def health() -> JSONResponse:
        healthy, reason = svc.poller.health()
        age = svc.poller.last_poll_age()
        body = {
            "status": "ok" if healthy else "degraded",
            "connected": svc.poller.connected,
            "last_poll_age": None if age is None else round(age, 3),
            "reason": reason,
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """The gate lets only the API key or the metrics token through (balance is here)."""
        return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # --- reads (the gate has checked the API key of every /api/* request) ----------------------

    @app.get("/api/account", responses=SNAPSHOT_ERRORS)
    async def account() -> Response:
        """account_info() of the last poll (at most POLL_INTERVAL old)."""
        return section("account")

    @app.get("/api/positions", responses=SNAPSHOT_ERRORS)
    async def positions() -> Response:
        """positions_get() of the last poll."""
        return section("positions")

    @app.get("/api/orders", responses=SNAPSHOT_ERRORS)
    async def orders() -> Response:
        """orders_get() (pending orders) of the last poll."""
        return section("orders")

    @app.get("/api/history", responses=READ_ERRORS)
    async def history(days: Annotated[query_int(1, 3650), Query(ge=1, le=3650, description="deals of the last N days")] = 7) -> Any:
        """history_deals_get() over the last ``days`` days (the window extends one day past
        now, because deal times are in the trade server's time zone)."""
        require_connected()
        now = datetime.now(tz=UTC)
        return await svc.gateway.call("history_deals_get", now - timedelta(days=days), now + timedelta(days=1))

    @app.get("/api/symbols/{symbol}", responses={**READ_ERRORS, **responses(404)})
    async def symbol(symbol: str = Path(pattern=SYMBOL_PATTERN)) -> Any:
        """The current tick and the contract specification of a symbol."""
        require_connected()
        info = await svc.gateway.call_optional("symbol_info", symbol)
        if info is None:
            raise ApiError(
                404,
                "unknown_symbol",
                f"unknown symbol '{symbol}': the terminal has no such symbol (check the spelling and your broker's suffix)",
            )
        tick = await svc.gateway.call_optional("symbol_info_tick", symbol)
        return {"symbol": symbol, "tick": tick, "spec": info}

    # --- trading ---------------------------------------------------------------------------
    async def trade(request: Request, operation: str, body: Any, action: Callable[[], Awaitable[TradeOutcome]]) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH and key.isprintable()):
            raise ApiError(400, "invalid_idempotency_key", f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")
        if key is not None:
            fp = fingerprint(request.method, request.url.path, body)
            claim = await asyncio.to_thread(svc.idempotency.claim, key, fp)
            if claim.state == "replay":
                status = claim.status or 200
                return JSONResponse(claim.body, status_code=status, headers=with_retry_after(status, {"Idempotent-Replayed": "true"}))
            if claim.state == "conflict":
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used for a different request; use a new key for a new request",
                )
            if claim.state == "in_progress":
                raise ApiError(
                    409,
                    "idempotency_key_in_progress",
                    "a request with this Idempotency-Key is still being processed; retry in a moment to get its result",
                )
            if claim.state == "interrupted":
                raise ApiError(
                    409,
                    "idempotency_key_interrupted",
                    "the service stopped while a request with this Idempotency-Key "
                    "was in flight, so it may or may not have reached the broker: "
                    "check GET /api/positions and /api/orders, then send a new "
                    "request with a new key if it is still needed",
                )
        sent = False
        async with svc.trade_lock:
            try:
                if not svc.poller.connected:
                    raise TradeFailure(503, "backend_unavailable", f"the terminal is not connected: {svc.poller.reason}")
                sent = True
                outcome = await action()
                status, result, retcode = outcome.status, outcome.body, outcome.retcode
                label = "done"
            except TradeFailure as failure:
                status, result, retcode = failure.status, failure.body(), failure.retcode
                label = failure.error
            except BackendUnavailable as exc:
                status, retcode, label = 503, None, "backend_unavailable"
                result = {
                    "error": label,
                    "retcode": None,
                    "message": f"the connection to the terminal failed during the request ({exc}); "
                    f"it may or may not have been executed: check GET /api/positions "
                    f"and /api/orders before sending it again with a new key",
                }
            except BackendError as exc:
                status, retcode, label = 502, None, "backend_error"
                result = {"error": label, "retcode": None, "message": f"the terminal returned an error: {exc}"}
        svc.metrics.orders.labels(label).inc()
        if key is not None:
            if sent or status < 500:
                await asyncio.to_thread(svc.idempotency.finish, key, status, result)
            else:
                await asyncio.to_thread(svc.idempotency.release, key)
        if svc.store is not None:  # every request and its answer, sent or refused
            await svc.store.record_order(operation, body, status, result, key)
        if status < 300:
            svc.deals_due.set()
            try:
                await svc.poller.poll_once()  # read-your-writes for REST and WebSocket
            except Exception as exc:  # noqa: BLE001 - the trade itself succeeded
                log.warning("refresh after trade failed: %s", exc)
        return JSONResponse(result, status_code=status, headers=with_retry_after(status))

    @app.post(
        "/api/orders",
        status_code=201,
        response_model=TradeOut,
        responses={**TRADE_ERRORS, 201: {"description": "order executed or placed"}},
    )
    async def post_order(order: OrderIn, request: Request) -> JSONResponse:
        """Place a market order (buy/sell) or a pending order (limits/stops).
        Send an ``Idempotency-Key`` header to make retries safe."""
        currency = str((svc.poller.snapshot.account if svc.poller.snapshot else {}).get("currency", ""))
        return await trade(request, "open", order.model_dump(mode="json"), lambda: place_order(svc.gateway, order, currency))

    @app.patch("/api/positions/{ticket}", response_model=TradeOut, responses=TRADE_ERRORS)
    async def patch_position(change: PositionModifyIn, request: Request, ticket: Ticket) -> JSONResponse:
        """Modify the SL/TP of an open position (null or 0 removes a level)."""
        body = {"ticket": ticket, **change.model_dump(exclude_unset=True)}
        return await trade(request, "modify_position", body, lambda: modify_position(svc.gateway, ticket, change))

    @app.patch("/api/orders/{ticket}", response_model=TradeOut, responses=TRADE_ERRORS)
    async def patch_order(change: OrderModifyIn, request: Request, ticket: Ticket) -> JSONResponse:
        """Modify the price and/or SL/TP of a pending order."""
        body = {"ticket": ticket, **change.model_dump(exclude_unset=True)}
        return await trade(request, "modify_order", body, lambda: modify_order(svc.gateway, ticket, change))

    @app.delete("/api/positions/{ticket}", response_model=TradeOut, responses=TRADE_ERRORS)
    async def delete_position(
        request: Request,
        ticket: Ticket,
        volume: Annotated[QueryVolume | None, Query(description="lots to close (partial close); omit to close all")] = None,
        deviation: Annotated[query_int(0, MAX_DEVIATION), Query(ge=0, le=MAX_DEVIATION, description="points of slippage accepted")] = 20,
    ) -> JSONResponse:
        """Close an open position, fully or partially (``?volume=``)."""
        body = {"ticket": ticket, "volume": volume, "deviation": deviation}
        return await trade(request, "close", body, lambda: close_position(svc.gateway, ticket, volume, deviation))

    @app.delete("/api/orders/{ticket}", response_model=TradeOut, responses=TRADE_ERRORS)
    async def delete_order(request: Request, ticket: Ticket) -> JSONResponse:
        """Cancel a pending order."""
        return await trade(request, "cancel", {"ticket": ticket}, lambda: cancel_order(svc.gateway, ticket))

    shadowed.update({r.path: r for r in app.routes if getattr(r, "path", None) in SECTIONS})

    # --- WebSocket -----------------------------------------------------------------------------
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        """A ``snapshot`` message on connect, then ``update`` messages with only what
        changed, and ``status`` messages when the terminal connection drops or returns.
        The gate has checked the API key before the handshake."""
        await websocket.accept()
        client = svc.hub.add(websocket, encode(svc.poller.snapshot_message()))
        await svc.hub.serve(client)

    return app
