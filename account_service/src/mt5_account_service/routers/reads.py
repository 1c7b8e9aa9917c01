"""Reads: the last poll's account, positions and pending orders; the deal history and a
symbol's tick and specification, asked from the terminal.

The gate answers ``GET /api/account|positions|orders`` itself from the last poll's JSON; the
routes here still declare them (for the schema, and as the answer when the gate is not in
front). Docstrings of the routes are their OpenAPI descriptions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from ..deps import ServiceDep, api_key
from ..errors import READ_ERRORS, SNAPSHOT_ERRORS, ApiError, responses
from ..models import MAX_HISTORY_DAYS, SYMBOL_PATTERN, HistoryDays
from ..service import Service
from ..trading import symbol_quote

router = APIRouter(dependencies=[Depends(api_key)])


def require_connected(svc: Service) -> None:
    """Raise ApiError 503 unless the terminal is connected."""
    if not svc.poller.connected:
        raise ApiError(503, "backend_unavailable", f"the terminal is not connected: {svc.poller.reason}")


def section(svc: Service, name: str) -> Response:
    """The last poll's ``name`` section as JSON; ApiError 503 when there is no fresh poll."""
    if svc.poller.fresh_snapshot() is None:
        _, reason = svc.poller.health()
        raise ApiError(503, "backend_unavailable", f"no fresh account data: {reason}")
    return Response(svc.poller.cached_json(name), media_type="application/json")


@router.get("/api/account", responses=SNAPSHOT_ERRORS)
async def account(svc: ServiceDep) -> Response:
    """account_info() of the last poll (at most POLL_INTERVAL old)."""
    return section(svc, "account")


@router.get("/api/positions", responses=SNAPSHOT_ERRORS)
async def positions(svc: ServiceDep) -> Response:
    """positions_get() of the last poll."""
    return section(svc, "positions")


@router.get("/api/orders", responses=SNAPSHOT_ERRORS)
async def orders(svc: ServiceDep) -> Response:
    """orders_get() (pending orders) of the last poll."""
    return section(svc, "orders")


@router.get("/api/history", responses=READ_ERRORS)
async def history(
    svc: ServiceDep,
    days: Annotated[HistoryDays, Query(ge=1, le=MAX_HISTORY_DAYS, description="deals of the last N days")] = 7,
) -> Any:
    """history_deals_get() over the last ``days`` days (the window extends one day past
    now, because deal times are in the trade server's time zone)."""
    require_connected(svc)
    now = datetime.now(tz=UTC)
    return await svc.gateway.call("history_deals_get", now - timedelta(days=days), now + timedelta(days=1))


@router.get("/api/symbols/{symbol:path}", responses={**READ_ERRORS, **responses(404)})
async def symbol(svc: ServiceDep, symbol: Annotated[str, Path(pattern=SYMBOL_PATTERN)]) -> Any:
    """The current tick and the contract specification of a symbol, named as the broker
    names it (spaces, brackets, ``&`` and ``/`` percent-encoded in the path). A symbol outside
    Market Watch is selected and its first tick awaited (up to 2 s); ``tick`` is null when
    none came."""
    require_connected(svc)
    quote = await symbol_quote(svc.gateway, symbol)
    if quote is None:
        raise ApiError(
            404,
            "unknown_symbol",
            f"unknown symbol '{symbol}': the terminal has no such symbol (check the spelling and your broker's suffix)",
        )
    info, tick = quote
    return {"symbol": symbol, "tick": tick, "spec": info}
