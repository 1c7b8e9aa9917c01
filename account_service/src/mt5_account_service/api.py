"""The FastAPI application, assembled from its parts.

:func:`create_app` builds one self-contained app for one account; everything it owns
(backend gateway, poller, WebSocket hub, metrics registry, stores) is a
:class:`~mt5_account_service.service.Service` on ``app.state.svc``, which the routes get
through :data:`~mt5_account_service.deps.ServiceDep`.

Where things are:

- ``service.py``: the Service, its construction and its background workers (the lifespan);
- ``routers/``: the routes (health and metrics, reads, trading, WebSocket);
- ``deps.py``: the dependencies (the service, the API key);
- ``errors.py``: the error body, the exception handlers, the documented error responses;
- ``gate.py``, ``metrics.py``: the two pure-ASGI middlewares in front of FastAPI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute

from . import __version__
from .config import Settings
from .errors import EXCEPTION_HANDLERS
from .gate import SECTIONS, Gate
from .metrics import RequestMetricsMiddleware
from .routers import health, market, reads, trading, websocket
from .service import build_service, running


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The service's workers run as long as the app serves."""
    async with running(app.state.svc):
        yield


def fast_path_routes(routes: Sequence[BaseRoute]) -> dict[str, BaseRoute]:
    """The GET routes the gate answers itself (``SECTIONS``), by path: the gate puts them in
    the scope so request metrics label those requests like any other route."""
    found: dict[str, BaseRoute] = {}
    # iter_route_contexts: FastAPI keeps an included router as one entry of app.routes.
    for route in iter_route_contexts(routes):
        if route.path in SECTIONS and "GET" in (route.methods or ()):
            found[route.path] = route.original_route
    return found


def create_app(settings: Settings, backend: Any | None = None) -> FastAPI:
    """The service for one account. ``backend`` overrides MT5_BACKEND (tests pass a
    SimulatedTerminal they control)."""
    svc = build_service(settings, backend)
    app = FastAPI(
        title="MT5 Farm account service",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.svc = svc
    # Routes are matched in this order; keep it (GET before POST /api/orders, as declared).
    for router in (health.router, reads.router, market.router, trading.router, websocket.router):
        app.include_router(router)
    # The last added middleware is the outermost: request metrics see every answer,
    # including the gate's refusals and fast-path reads.
    app.add_middleware(Gate, svc=svc, routes=fast_path_routes(app.routes))
    app.add_middleware(RequestMetricsMiddleware, metrics=svc.metrics)
    return app
