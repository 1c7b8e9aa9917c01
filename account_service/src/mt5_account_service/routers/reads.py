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

from ..deps import ServiceDep, api_key, known_query
from ..errors import READ_ERRORS, SNAPSHOT_ERRORS, ApiError, responses
from ..models import MAX_HISTORY_DAYS, MAX_PAGE, MAX_TICKET, SYMBOL_PATTERN, HistoryDays, IntegerText, QueryTime, TicketNumber
from ..service import Service
from ..trading import symbol_quote

router = APIRouter(dependencies=[Depends(api_key), Depends(known_query)])
Ticket = Annotated[TicketNumber, Path(gt=0, le=MAX_TICKET)]


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


def paged(records: list[dict[str, Any]], key: str, offset: int, limit: int) -> dict[str, Any]:
    """One page of ``records`` (sorted by time, then ticket) as ``{total, offset,
    next_offset, <key>: [...]}``; ``next_offset`` is null on the last page."""
    records = sorted(records, key=lambda r: (r.get("time", r.get("time_setup", 0)), r.get("ticket", 0)))
    following = offset + limit if offset + limit < len(records) else None
    return {"total": len(records), "offset": offset, "next_offset": following, key: records[offset : offset + limit]}


async def history_of(
    svc: Service, name: str, since: datetime | None, to: datetime | None, position: int | None, ticket: int | None
) -> list[dict[str, Any]]:
    """``history_deals_get``/``history_orders_get`` by window, position or order ticket
    (one of them); ApiError 422 when the query mixes or misses them."""
    given = [since is not None or to is not None, position is not None, ticket is not None]
    if sum(given) != 1 or (given[0] and (since is None or to is None)):
        raise ApiError(422, "invalid_input", "ask by from and to (a window), by position, or by ticket: one of the three")
    require_connected(svc)
    if position is not None:
        found = await svc.gateway.call_optional(name, position=position)
    elif ticket is not None:
        found = await svc.gateway.call_optional(name, ticket=ticket)
    else:
        assert since is not None and to is not None
        if to < since:
            raise ApiError(422, "invalid_input", "to: before from")
        found = await svc.gateway.call_optional(name, since, to)
    return list(found or [])


HistoryPosition = Annotated[int | None, IntegerText, Query(gt=0, le=MAX_TICKET, description="a position's identifier")]
HistoryTicket = Annotated[int | None, IntegerText, Query(gt=0, le=MAX_TICKET, description="an order's ticket")]
PageOffset = Annotated[int, IntegerText, Query(ge=0, le=10**9)]
PageLimit = Annotated[int, IntegerText, Query(ge=1, le=MAX_PAGE)]


@router.get("/api/history/deals", responses=READ_ERRORS)
async def history_deals(
    svc: ServiceDep,
    since: Annotated[QueryTime | None, Query(alias="from")] = None,
    to: QueryTime | None = None,
    position: HistoryPosition = None,
    ticket: HistoryTicket = None,
    offset: PageOffset = 0,
    limit: PageLimit = MAX_PAGE,
) -> Any:
    """Deals (``history_deals_get``) done between ``from`` and ``to``, of one ``position``
    (its identifier), or made by one order (``ticket``, MT5's DEAL_ORDER), oldest first:
    ``{total, offset, next_offset, deals: [...]}``, at most 1,000 a page."""
    return paged(await history_of(svc, "history_deals_get", since, to, position, ticket), "deals", offset, limit)


@router.get("/api/history/orders", responses=READ_ERRORS)
async def history_orders(
    svc: ServiceDep,
    since: Annotated[QueryTime | None, Query(alias="from")] = None,
    to: QueryTime | None = None,
    position: HistoryPosition = None,
    ticket: HistoryTicket = None,
    offset: PageOffset = 0,
    limit: PageLimit = MAX_PAGE,
) -> Any:
    """Orders no longer pending (``history_orders_get``: filled, canceled, rejected,
    expired) set up between ``from`` and ``to``, of one ``position``, or by ``ticket``,
    oldest first: ``{total, offset, next_offset, orders: [...]}``, at most 1,000 a page."""
    return paged(await history_of(svc, "history_orders_get", since, to, position, ticket), "orders", offset, limit)


async def one_by_ticket(svc: Service, name: str, ticket: int, error: str, missing: str) -> Any:
    """The record ``name(ticket=ticket)`` finds (``positions_get``, ``orders_get``), or
    ApiError 404 ``error`` saying ``missing``."""
    require_connected(svc)
    found = await svc.gateway.call(name, ticket=ticket)
    if not found:
        raise ApiError(404, error, missing)
    return found[0]


@router.get("/api/positions/{ticket}", responses={**READ_ERRORS, **responses(404)})
async def position(svc: ServiceDep, ticket: Ticket) -> Any:
    """One open position (``positions_get(ticket=...)``), as the terminal has it now."""
    missing = f"no open position {ticket}: a closed one's deals are at GET /api/history/deals?position={ticket}"
    return await one_by_ticket(svc, "positions_get", ticket, "position_not_found", missing)


@router.get("/api/orders/{ticket}", responses={**READ_ERRORS, **responses(404)})
async def order(svc: ServiceDep, ticket: Ticket) -> Any:
    """One pending order (``orders_get(ticket=...)``), as the terminal has it now."""
    missing = f"no pending order {ticket}: a filled or canceled one is at GET /api/history/orders?ticket={ticket}"
    return await one_by_ticket(svc, "orders_get", ticket, "order_not_found", missing)


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
