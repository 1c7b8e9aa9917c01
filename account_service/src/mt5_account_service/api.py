"""The FastAPI application: routes, auth, idempotent trading, lifespan of the workers.

:func:`create_app` builds one self-contained app; everything it owns (backend gateway,
poller, WebSocket hub, metrics registry, stores) hangs off ``app.state.svc``.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Awaitable, Callable

from fastapi import Depends, FastAPI, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .backends import make_backend
from .config import Settings
from .gateway import BackendError, BackendUnavailable, Gateway, Snapshot
from .idempotency import MAX_KEY_LENGTH, IdempotencyStore, fingerprint
from .metrics import Metrics, RequestMetricsMiddleware
from .models import (ErrorOut, HealthOut, OrderIn, OrderModifyIn, PositionModifyIn,
                     SYMBOL_PATTERN)
from .poller import Poller
from .trading import (TradeFailure, TradeOutcome, cancel_order, close_position, modify_order,
                      modify_position, place_order)
from .ws import Hub, encode

log = logging.getLogger(__name__)

JSON = "application/json"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 404, 409, 422, 429, 502, 503)}


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


def keys_match(given: str | None, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key."""
    if not given:
        return False
    candidate = given.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode())
    return matched


def presented_key(headers: Any) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def _error(status: int, error: str, message: str, retcode: int | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, "retcode": retcode},
                        status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


class SnapshotReads:
    """Pure-ASGI fast path for ``GET /api/account|positions|orders``.

    These three are answered from the last poll's JSON (encoded once per poll), so the
    FastAPI routing/dependency machinery would be most of their cost. This layer answers
    them directly, with the same auth and the same responses as the routes it shadows
    (which stay declared for the OpenAPI schema). It sets ``scope["route"]`` so the
    request metrics label them like any other route.
    """

    SECTIONS = {"/api/account": "account", "/api/positions": "positions",
                "/api/orders": "orders"}

    def __init__(self, app: Any, svc: "Service", routes: dict[str, Any]) -> None:
        self.app, self.svc, self.routes = app, svc, routes
        self._keys = svc.settings.api_keys

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        section = (self.SECTIONS.get(scope["path"])
                   if scope["type"] == "http" and scope["method"] == "GET" else None)
        if section is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.routes.get(scope["path"])
        key = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                key = value.decode("latin-1").strip()
                break
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                key = value[7:].decode("latin-1").strip()
        poller = self.svc.poller
        if not keys_match(key, self._keys):
            status, body = 401, _error_bytes(
                "unauthorized", "missing or wrong API key: send it in the X-API-Key header "
                "(or Authorization: Bearer <key>)")
        elif poller.fresh_snapshot() is None:
            status, body = 503, _error_bytes(
                "backend_unavailable", f"no fresh account data: {poller.health()[1]}")
        else:
            status, body = 200, poller.cached_json(section)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _error_bytes(error: str, message: str) -> bytes:
    return json.dumps({"error": error, "message": message, "retcode": None}).encode()


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

    poller = Poller(gateway, hub, metrics, settings.poll_interval, settings.stale_after,
                    on_snapshot=on_snapshot)
    svc = Service(settings, metrics, hub, gateway, poller,
                  IdempotencyStore(settings.state_dir / "idempotency.sqlite3"))
    svc_holder.append(svc)
    if settings.database_url:
        from .store import Store
        svc.store = Store(settings.state_dir / "pg-spool.sqlite3", settings.login,
                          settings.server, settings.database_url, settings.postgres_password,
                          metrics.db_spool_pending.set)
    if settings.redis_url:
        from .registry import Registry, registration, started_now
        svc.registry = Registry(
            settings.redis_url, settings.redis_password, settings.login,
            registration(settings.endpoint, settings.server, settings.backend, started_now()),
            settings.redis_ttl)
    return svc


async def _record_loop(svc: Service) -> None:
    """Account snapshots every SNAPSHOT_INTERVAL; deals whenever positions/orders change."""
    store, interval = svc.store, svc.settings.snapshot_interval
    next_snapshot = time.monotonic()
    while True:
        try:
            try:
                await asyncio.wait_for(svc.deals_due.wait(),
                                       timeout=max(next_snapshot - time.monotonic(), 0.05))
            except asyncio.TimeoutError:
                pass
            snap = svc.poller.fresh_snapshot()
            if snap is None:
                await asyncio.sleep(min(interval, 1.0))
                continue
            periodic = time.monotonic() >= next_snapshot
            if periodic:
                next_snapshot = time.monotonic() + interval
                await store.record_snapshot(snap.taken_at, snap.account, len(snap.positions),
                                            len(snap.orders))
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
        svc.metrics.info.labels(str(settings.login), settings.server, settings.backend,
                                __version__).set(1)
        svc.metrics.backend_connected.set(0)
        svc.tasks.append(asyncio.create_task(svc.poller.run(), name="poller"))
        if svc.store is not None:
            svc.tasks.append(asyncio.create_task(svc.store.run(), name="pg-flusher"))
            svc.tasks.append(asyncio.create_task(_record_loop(svc), name="recorder"))
        if svc.registry is not None:
            svc.tasks.append(asyncio.create_task(svc.registry.run(), name="redis"))
        # Everything loaded so far lives as long as the process: keep it out of the
        # collector's way, so full collections under load stay short.
        gc.collect()
        gc.freeze()
        log.info("account service started: login=%s backend=%s port=%s", settings.login,
                 settings.backend, settings.service_port)
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

    app = FastAPI(title="MT5 Farm account service", version=__version__, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.svc = svc
    shadowed: dict[str, Any] = {}
    app.add_middleware(SnapshotReads, svc=svc, routes=shadowed)
    app.add_middleware(RequestMetricsMiddleware, metrics=svc.metrics)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_input", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(BackendUnavailable)
    async def _unavailable(_: Request, exc: BackendUnavailable) -> JSONResponse:
        return _error(503, "backend_unavailable", f"the terminal is not reachable: {exc}")

    @app.exception_handler(BackendError)
    async def _backend(_: Request, exc: BackendError) -> JSONResponse:
        return _error(502, "backend_error", f"the terminal returned an error: {exc}")

    def require_key(request: Request) -> None:
        if not keys_match(presented_key(request.headers), settings.api_keys):
            raise ApiError(401, "unauthorized",
                           "missing or wrong API key: send it in the X-API-Key header "
                           "(or Authorization: Bearer <key>)")

    def require_connected() -> None:
        if not svc.poller.connected:
            raise ApiError(503, "backend_unavailable",
                           f"the terminal is not connected: {svc.poller.reason}")

    def section(name: str) -> Response:
        if svc.poller.fresh_snapshot() is None:
            healthy, reason = svc.poller.health()
            raise ApiError(503, "backend_unavailable", f"no fresh account data: {reason}")
        return Response(svc.poller.cached_json(name), media_type=JSON)

    # --- unauthenticated --------------------------------------------------------------------
    @app.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
    async def health() -> JSONResponse:
        healthy, reason = svc.poller.health()
        age = svc.poller.last_poll_age()
        body = {"status": "ok" if healthy else "degraded", "connected": svc.poller.connected,
                "last_poll_age": None if age is None else round(age, 3), "reason": reason}
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(svc.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    # --- reads ---------------------------------------------------------------------------------
    auth = [Depends(require_key)]

    @app.get("/api/account", dependencies=auth, responses=ERRORS)
    async def account() -> Response:
        """account_info() of the last poll (at most POLL_INTERVAL old)."""
        return section("account")

    @app.get("/api/positions", dependencies=auth, responses=ERRORS)
    async def positions() -> Response:
        """positions_get() of the last poll."""
        return section("positions")

    @app.get("/api/orders", dependencies=auth, responses=ERRORS)
    async def orders() -> Response:
        """orders_get() (pending orders) of the last poll."""
        return section("orders")

    @app.get("/api/history", dependencies=auth, responses=ERRORS)
    async def history(days: int = Query(7, ge=1, le=3650,
                                        description="deals of the last N days")) -> Any:
        """history_deals_get() over the last ``days`` days (the window extends one day past
        now, because deal times are in the trade server's time zone)."""
        require_connected()
        now = datetime.now(tz=timezone.utc)
        return await svc.gateway.call("history_deals_get", now - timedelta(days=days),
                                      now + timedelta(days=1))

    @app.get("/api/symbols/{symbol}", dependencies=auth, responses=ERRORS)
    async def symbol(symbol: str = Path(pattern=SYMBOL_PATTERN)) -> Any:
        """The current tick and the contract specification of a symbol."""
        require_connected()
        info = await svc.gateway.call_optional("symbol_info", symbol)
        if info is None:
            raise ApiError(404, "unknown_symbol",
                           f"unknown symbol '{symbol}': the terminal has no such symbol "
                           f"(check the spelling and your broker's suffix)")
        tick = await svc.gateway.call_optional("symbol_info_tick", symbol)
        return {"symbol": symbol, "tick": tick, "spec": info}

    # --- trading ---------------------------------------------------------------------------
    async def trade(request: Request, operation: str, body: Any,
                    action: Callable[[], Awaitable[TradeOutcome]]) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH and key.isprintable()):
            raise ApiError(400, "invalid_idempotency_key",
                           f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")
        if key is not None:
            fp = fingerprint(request.method, request.url.path, body)
            claim = await asyncio.to_thread(svc.idempotency.claim, key, fp)
            if claim.state == "replay":
                return JSONResponse(claim.body, status_code=claim.status or 200,
                                    headers={"Idempotent-Replayed": "true"})
            if claim.state == "conflict":
                raise ApiError(422, "idempotency_key_reused",
                               "this Idempotency-Key was already used for a different request; "
                               "use a new key for a new request")
            if claim.state == "in_progress":
                raise ApiError(409, "idempotency_key_in_progress",
                               "a request with this Idempotency-Key is still being processed; "
                               "retry in a moment to get its result")
            if claim.state == "interrupted":
                raise ApiError(409, "idempotency_key_interrupted",
                               "the service stopped while a request with this Idempotency-Key "
                               "was in flight, so it may or may not have reached the broker: "
                               "check GET /api/positions and /api/orders, then send a new "
                               "request with a new key if it is still needed")
        sent = False
        async with svc.trade_lock:
            try:
                if not svc.poller.connected:
                    raise TradeFailure(503, "backend_unavailable",
                                       f"the terminal is not connected: {svc.poller.reason}")
                sent = True
                outcome = await action()
                status, result, retcode = outcome.status, outcome.body, outcome.retcode
                label = "done"
            except TradeFailure as failure:
                status, result, retcode = failure.status, failure.body(), failure.retcode
                label = failure.error
            except BackendUnavailable as exc:
                status, retcode, label = 503, None, "backend_unavailable"
                result = {"error": label, "retcode": None, "message":
                          f"the connection to the terminal failed during the request ({exc}); "
                          f"it may or may not have been executed: check GET /api/positions "
                          f"and /api/orders before sending it again with a new key"}
            except BackendError as exc:
                status, retcode, label = 502, None, "backend_error"
                result = {"error": label, "retcode": None,
                          "message": f"the terminal returned an error: {exc}"}
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
        return JSONResponse(result, status_code=status)

    @app.post("/api/orders", dependencies=auth, status_code=201,
              responses={**ERRORS, 201: {"description": "order executed or placed"}})
    async def post_order(order: OrderIn, request: Request) -> JSONResponse:
        """Place a market order (buy/sell) or a pending order (limits/stops).
        Send an ``Idempotency-Key`` header to make retries safe."""
        currency = str((svc.poller.snapshot.account if svc.poller.snapshot else {})
                       .get("currency", ""))
        return await trade(request, "open", order.model_dump(mode="json"),
                           lambda: place_order(svc.gateway, order, currency))

    @app.patch("/api/positions/{ticket}", dependencies=auth, responses=ERRORS)
    async def patch_position(change: PositionModifyIn, request: Request,
                             ticket: int = Path(gt=0)) -> JSONResponse:
        """Modify the SL/TP of an open position (null or 0 removes a level)."""
        body = {"ticket": ticket, **change.model_dump(exclude_unset=True)}
        return await trade(request, "modify_position", body,
                           lambda: modify_position(svc.gateway, ticket, change))

    @app.patch("/api/orders/{ticket}", dependencies=auth, responses=ERRORS)
    async def patch_order(change: OrderModifyIn, request: Request,
                          ticket: int = Path(gt=0)) -> JSONResponse:
        """Modify the price and/or SL/TP of a pending order."""
        body = {"ticket": ticket, **change.model_dump(exclude_unset=True)}
        return await trade(request, "modify_order", body,
                           lambda: modify_order(svc.gateway, ticket, change))

    @app.delete("/api/positions/{ticket}", dependencies=auth, responses=ERRORS)
    async def delete_position(request: Request, ticket: int = Path(gt=0),
                              volume: float | None = Query(None, gt=0, allow_inf_nan=False,
                                                           description="partial close; "
                                                           "omit to close all"),
                              deviation: int = Query(20, ge=0, le=100_000)) -> JSONResponse:
        """Close an open position, fully or partially (``?volume=``)."""
        body = {"ticket": ticket, "volume": volume, "deviation": deviation}
        return await trade(request, "close", body,
                           lambda: close_position(svc.gateway, ticket, volume, deviation))

    @app.delete("/api/orders/{ticket}", dependencies=auth, responses=ERRORS)
    async def delete_order(request: Request, ticket: int = Path(gt=0)) -> JSONResponse:
        """Cancel a pending order."""
        return await trade(request, "cancel", {"ticket": ticket},
                           lambda: cancel_order(svc.gateway, ticket))

    shadowed.update({r.path: r for r in app.routes
                     if getattr(r, "path", None) in SnapshotReads.SECTIONS})

    # --- WebSocket -----------------------------------------------------------------------------
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        """A ``snapshot`` message on connect, then ``update`` messages with only what
        changed, and ``status`` messages when the terminal connection drops or returns."""
        if not keys_match(presented_key(websocket.headers), settings.api_keys):
            await websocket.close(code=1008, reason="missing or wrong API key")
            return
        await websocket.accept()
        client = svc.hub.add(websocket, encode(svc.poller.snapshot_message()))
        await svc.hub.serve(client)

    return app
