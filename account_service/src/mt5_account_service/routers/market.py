"""Market data: the terminal's symbols, Market Watch, bars and ticks (issue 15).

Each read asks the terminal (``symbols_get``, ``copy_rates_*``, ``copy_ticks_from``) and
answers with MT5's records as JSON, every time in UTC seconds (the trade server's offset
taken off: server_time.py). One answer is bounded (MAX_RATES bars, MAX_TICKS ticks,
MAX_PAGE symbols); ``next`` gives the query of the following page, null on the last.
Docstrings of the routes are their OpenAPI descriptions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from ..backends.base import RES_E_FAIL, RES_E_NOT_FOUND
from ..deps import ServiceDep, api_key, known_query
from ..errors import READ_ERRORS, ApiError, responses
from ..gateway import BackendError, BackendUnavailable
from ..jsonfast import dumps
from ..models import (
    GROUP_PATTERN,
    MAX_PAGE,
    MAX_RATES,
    MAX_START_POS,
    MAX_TICKS,
    SYMBOL_PATTERN,
    IntegerText,
    QueryBool,
    QueryTime,
    TickFlags,
    Timeframe,
    integer_schema,
)
from ..service import Service
from .reads import require_connected

router = APIRouter(dependencies=[Depends(api_key), Depends(known_query)])

SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN)]
Offset = Annotated[int, IntegerText, integer_schema(0, 10**9), Query(ge=0, le=10**9, description="records to skip")]
#: The fields of a symbol in the list (the whole specification: GET /api/symbols/{symbol}).
SYMBOL_FIELDS = (
    "name",
    "description",
    "path",
    "visible",
    "select",
    "digits",
    "point",
    "spread",
    "trade_mode",
    "currency_base",
    "currency_profit",
    "currency_margin",
    "trade_contract_size",
    "volume_min",
    "volume_max",
    "volume_step",
    "bid",
    "ask",
)


def json_response(body: dict[str, Any]) -> Response:
    """``body`` as JSON, encoded once (FastAPI's encoder would walk every bar again)."""
    return Response(dumps(body), media_type="application/json")


def iso(seconds: float) -> str:
    """UTC epoch seconds as the ISO 8601 text a query takes back."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def unknown_symbol(symbol: str) -> ApiError:
    return ApiError(
        404,
        "unknown_symbol",
        f"unknown symbol '{symbol}': the terminal has no such symbol (check the spelling and your broker's suffix; GET /api/symbols lists them)",
    )


async def copy_from_terminal(svc: Service, name: str, symbol: str, *args: Any) -> list[dict[str, Any]]:
    """``name(symbol, *args)`` of the terminal, as a list of records. A symbol outside Market
    Watch is selected and asked once more (the terminal serves history of selected symbols
    only); ApiError 404 for a symbol the terminal does not know."""
    require_connected(svc)
    try:
        return list(await svc.gateway.call(name, symbol, *args))
    except BackendUnavailable:
        raise
    except BackendError as exc:
        if exc.code not in (RES_E_FAIL, RES_E_NOT_FOUND):
            raise
    if await svc.gateway.call_optional("symbol_info", symbol) is None:
        raise unknown_symbol(symbol)
    await svc.gateway.call_optional("symbol_select", symbol, True)
    return list(await svc.gateway.call(name, symbol, *args))


@router.get("/api/symbols", responses=READ_ERRORS)
async def symbols(
    svc: ServiceDep,
    group: Annotated[str | None, Query(pattern=GROUP_PATTERN, description="MT5's group filter, e.g. *USD*,!EUR*")] = None,
    visible: Annotated[QueryBool | None, Query(description="true: Market Watch only; false: only those outside it")] = None,
    offset: Offset = 0,
    limit: Annotated[int, IntegerText, integer_schema(1, MAX_PAGE), Query(ge=1, le=MAX_PAGE)] = 100,
) -> Response:
    """The terminal's symbols (``symbols_get``), a page at a time, in the terminal's order:
    ``{total, matched, offset, next_offset, symbols: [{name, description, path, visible,
    digits, spread, trade_mode, currencies, volumes, bid, ask}]}``. ``total`` is
    ``symbols_total()``; ``matched`` counts those the filters keep; ``next_offset`` is null on
    the last page. The whole specification of one: ``GET /api/symbols/{symbol}``."""
    require_connected(svc)
    total = await svc.gateway.call("symbols_total")
    found = await svc.gateway.call("symbols_get", group) if group is not None else await svc.gateway.call("symbols_get")
    kept = [s for s in found if visible is None or bool(s.get("visible")) == visible]
    page = kept[offset : offset + limit]
    return json_response(
        {
            "total": total,
            "matched": len(kept),
            "offset": offset,
            "next_offset": offset + limit if offset + limit < len(kept) else None,
            "symbols": [{k: s.get(k) for k in SYMBOL_FIELDS} for s in page],
        }
    )


@router.post("/api/symbols/{symbol:path}/select", responses={**READ_ERRORS, **responses(404, 409)})
async def select_symbol(
    svc: ServiceDep,
    symbol: SymbolPath,
    enable: Annotated[QueryBool, Query(description="true: add to Market Watch; false: remove from it")] = True,
) -> Response:
    """Add the symbol to Market Watch (``symbol_select``), or remove it with
    ``enable=false``: ``{symbol, visible}``. 409 when the terminal keeps it (an open
    position or order, a chart on it)."""
    require_connected(svc)
    if await svc.gateway.call_optional("symbol_info", symbol) is None:
        raise unknown_symbol(symbol)
    backend = svc.gateway.backend
    selected, error = await svc.gateway.run(lambda: (backend.symbol_select(symbol, enable), backend.last_error()))
    if not selected:
        if not enable:
            raise ApiError(
                409,
                "symbol_in_use",
                f"the terminal keeps {symbol} in Market Watch: it has an open position or order, or a chart on it",
            )
        raise ApiError(502, "backend_error", f"the terminal did not select {symbol}: {error}")
    return json_response({"symbol": symbol, "visible": enable})


@router.get("/api/rates/{symbol:path}", responses={**READ_ERRORS, **responses(404)})
async def rates(
    svc: ServiceDep,
    symbol: SymbolPath,
    timeframe: Timeframe,
    count: Annotated[
        int | None, IntegerText, integer_schema(1, MAX_RATES), Query(ge=1, le=MAX_RATES, description="bars (default 100)")
    ] = None,
    start_pos: Annotated[
        int, IntegerText, integer_schema(0, MAX_START_POS), Query(ge=0, le=MAX_START_POS, description="bars back from the current one")
    ] = 0,
    since: Annotated[QueryTime | None, Query(alias="from")] = None,
    to: QueryTime | None = None,
) -> Response:
    """Bars (MT5's rates: ``time`` (open, UTC seconds), ``open``, ``high``, ``low``,
    ``close``, ``tick_volume``, ``spread``, ``real_volume``), oldest first. Ask one way:

    - ``count`` (default 100) and ``start_pos``: the newest bars, ``start_pos`` bars back
      from the current one, still forming (``copy_rates_from_pos``);
    - ``to`` and ``count``: the bars opened at or before ``to`` (``copy_rates_from``);
    - ``from`` and ``to``: the bars opened between them (``copy_rates_range``).

    At most 10,000 bars; ``next`` is the query of the next page (older bars for the first
    two ways, newer for the third), null when there is none. The terminal serves what its
    history holds ("Max. bars in chart")."""
    if since is not None and (to is None or count is not None or start_pos):
        raise ApiError(422, "invalid_input", "from: ask with from and to (no count or start_pos), or with count (and to or start_pos)")
    if to is not None and start_pos:
        raise ApiError(422, "invalid_input", "start_pos: counts back from the current bar; with to, ask with to and count")
    query: dict[str, Any] = {"timeframe": timeframe.value}
    more: dict[str, Any] | None
    if since is not None and to is not None:
        if to < since:
            raise ApiError(422, "invalid_input", "to: before from")
        end = min(to, since + timedelta(seconds=MAX_RATES * timeframe.seconds - 1))
        bars = await copy_from_terminal(svc, "copy_rates_range", symbol, timeframe.mt5, since, end)
        if not bars and end < to:
            # A window without bars (before the history, or no market): the rest at once, so
            # a wide range never pages through empty windows (the terminal gives at most its
            # "Max. bars in chart").
            rest = await copy_from_terminal(svc, "copy_rates_range", symbol, timeframe.mt5, end + timedelta(seconds=1), to)
            bars = rest[:MAX_RATES]
            end = datetime.fromtimestamp(bars[-1]["time"], tz=UTC) if len(rest) > MAX_RATES else to
        more = {"from": iso(end.timestamp() + 1), "to": iso(to.timestamp())} if end < to else None
    elif to is not None:
        wanted = count or 100
        bars = await copy_from_terminal(svc, "copy_rates_from", symbol, timeframe.mt5, to, wanted)
        more = {"to": iso(bars[0]["time"] - 1), "count": wanted} if len(bars) >= wanted else None
    else:
        wanted = count or 100
        bars = await copy_from_terminal(svc, "copy_rates_from_pos", symbol, timeframe.mt5, start_pos, wanted)
        more = {"start_pos": start_pos + wanted, "count": wanted} if len(bars) >= wanted else None
    return json_response(
        {"symbol": symbol, "timeframe": timeframe.value, "count": len(bars), "rates": bars, "next": {**query, **more} if more else None}
    )


@router.get("/api/ticks/{symbol:path}", responses={**READ_ERRORS, **responses(404)})
async def ticks(
    svc: ServiceDep,
    symbol: SymbolPath,
    since: Annotated[QueryTime, Query(alias="from")],
    to: QueryTime | None = None,
    count: Annotated[
        int | None, IntegerText, integer_schema(1, MAX_TICKS), Query(ge=1, le=MAX_TICKS, description="ticks (default 10000)")
    ] = None,
    flags: TickFlags = TickFlags.all,
) -> Response:
    """Ticks at or after ``from`` (and up to ``to``), oldest first (``copy_ticks_from``):
    ``time`` (UTC seconds), ``bid``, ``ask``, ``last``, ``volume``, ``time_msc`` (UTC
    milliseconds), ``flags`` (MT5's TICK_FLAG_* bits), ``volume_real``. ``flags``: ``all``,
    ``info`` (bid/ask changes), ``trade`` (last/volume changes).

    At most ``count`` (10,000 at most) per answer, and a page ends on a whole second: ``next``
    (the query of the next page, null on the last) starts at the second the page left off,
    so no tick is given twice or skipped."""
    if to is not None and to < since:
        raise ApiError(422, "invalid_input", "to: before from")
    limit = count or MAX_TICKS
    found = await copy_from_terminal(svc, "copy_ticks_from", symbol, since, limit + 1, flags.mt5)
    if to is not None:
        end_msc = to.timestamp() * 1000
        found = [t for t in found if t["time_msc"] <= end_msc]
    page, more = page_on_seconds(found, limit)
    query: dict[str, Any] = {"flags": flags.value} | ({"to": iso(to.timestamp())} if to is not None else {})
    query |= {"count": count} if count is not None else {}
    body = {"symbol": symbol, "count": len(page), "ticks": page, "next": {"from": iso(more), **query} if more is not None else None}
    return json_response(body)


def page_on_seconds(found: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """The first ``limit`` of ``found`` (ticks, oldest first) ending on a whole second, and
    the second the next page starts at (None when ``found`` has no more). When one second
    holds more than ``limit`` ticks, the page is its first ``limit`` and the next starts a
    second later (the rest of that second is not served)."""
    if len(found) <= limit:
        return found, None
    page, following = found[:limit], int(found[limit]["time"])
    last = int(page[-1]["time"])
    if following != last:
        return page, following
    whole = [t for t in page if int(t["time"]) < last]
    return (whole, last) if whole else (page, last + 1)
