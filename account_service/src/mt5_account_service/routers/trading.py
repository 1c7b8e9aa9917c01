"""Trading: place, modify, close and cancel, each made safe to retry by an ``Idempotency-Key``.

Every route hands :func:`trade` the request as it will be recorded and the call to make;
:func:`trade` claims the key, runs the call under the service's trade lock, records the
answer (idempotency store, Postgres) and refreshes the poll so the next read sees the trade.
Docstrings of the routes are their OpenAPI descriptions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from ..bodies import StrictJSONRoute
from ..deps import ServiceDep, api_key, known_query
from ..errors import TRADE_ERRORS, ApiError, with_retry_after
from ..gateway import BackendError, BackendUnavailable
from ..idempotency import MAX_KEY_LENGTH, fingerprint
from ..models import (
    MAX_DEVIATION,
    MAX_TICKET,
    SYMBOL_PATTERN,
    CheckOut,
    CloseAllOut,
    CloseByIn,
    IntegerText,
    OrderIn,
    OrderModifyIn,
    PositionModifyIn,
    QueryDeviation,
    QueryVolume,
    TradeOut,
    order_record,
)
from ..service import Service
from ..trading import (
    TradeFailure,
    TradeOutcome,
    cancel_order,
    check_order,
    close_all,
    close_by,
    close_position,
    modify_order,
    modify_position,
    place_order,
)
from .reads import Ticket

log = logging.getLogger(__name__)

#: A ticket in a path: MT5 tickets are unsigned 64-bit, Postgres stores them as bigint.
#: ``?volume=`` of a close: omitted closes the whole position.
CloseVolume = Annotated[QueryVolume | None, Query(description="lots to close (partial close); omit to close all")]
#: ``?deviation=`` of a close.
CloseDeviation = Annotated[QueryDeviation, Query(ge=0, le=MAX_DEVIATION, description="points of slippage accepted")]

# Bodies read strictly: a JSON key given twice is a 422, never the last one silently.
router = APIRouter(dependencies=[Depends(api_key), Depends(known_query)], route_class=StrictJSONRoute)


class Answer(NamedTuple):
    """What a trade request is answered with, and whether it reached the terminal."""

    status: int
    body: dict[str, Any]
    label: str  # the orders metric's result label: "done" or the error id
    sent: bool


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` header, or None; ApiError 400 unless it is 1 to
    MAX_KEY_LENGTH printable characters."""
    keys = request.headers.getlist("idempotency-key")
    if len(keys) > 1:  # which one the retry sends is anyone's guess: refused, like a repeated query parameter
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key is given more than once: send it once")
    key = keys[0] if keys else None
    if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH and key.isprintable()):
        raise ApiError(400, "invalid_idempotency_key", f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")
    return key


async def claim(svc: Service, key: str, fp: str) -> JSONResponse | None:
    """Claim ``key`` for the request with fingerprint ``fp``. Returns the stored answer of an
    earlier request with the same key and fingerprint (a replay), or None when this request
    is the key's first; ApiError 422 (key used for another request) or 409 (its request is
    in flight, or was cut off by a restart)."""
    found = await asyncio.to_thread(svc.idempotency.claim, key, fp)
    if found.state == "replay":
        status = found.status or 200
        return JSONResponse(found.body, status_code=status, headers=with_retry_after(status, {"Idempotent-Replayed": "true"}))
    if found.state == "conflict":
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request; use a new key for a new request",
        )
    if found.state == "in_progress":
        raise ApiError(
            409,
            "idempotency_key_in_progress",
            "a request with this Idempotency-Key is still being processed; retry in a moment to get its result",
        )
    if found.state == "interrupted":
        raise ApiError(
            409,
            "idempotency_key_interrupted",
            "the service stopped while a request with this Idempotency-Key "
            "was in flight, so it may or may not have reached the broker: "
            "check GET /api/positions and /api/orders, then send a new "
            "request with a new key if it is still needed",
        )
    return None


async def execute(svc: Service, action: Callable[[], Awaitable[TradeOutcome]]) -> Answer:
    """Run ``action`` under the trade lock when the terminal is connected and allows trading;
    every failure becomes an answer (503 when the connection dropped while the order was
    with the terminal: it may have executed)."""
    async with svc.trade_lock:
        try:
            if not svc.poller.connected:
                raise TradeFailure(503, "backend_unavailable", f"the terminal is not connected: {svc.poller.reason}")
            blocked = svc.poller.trading_block()
            if blocked:
                raise TradeFailure(409, "trading_disabled", f"trading is not allowed: {blocked}; reads keep working")
            outcome = await action()
            return Answer(outcome.status, outcome.body, "done", True)
        except TradeFailure as failure:
            return Answer(failure.status, failure.body(), failure.error, failure.sent)
        except BackendUnavailable as exc:
            message = (
                f"the connection to the terminal failed during the request ({exc}); "
                f"it may or may not have been executed: check GET /api/positions "
                f"and /api/orders before sending it again with a new key"
            )
            return Answer(503, {"error": "backend_unavailable", "retcode": None, "message": message}, "backend_unavailable", True)
        except BackendError as exc:
            body = {"error": "backend_error", "retcode": None, "message": f"the terminal returned an error: {exc}"}
            return Answer(502, body, "backend_error", True)


#: Refusals of the moment: nothing was executed and the answer says to retry (a requote, no
#: quotes, the market closed, trading switched off, the trade server's "too many requests").
#: Stored under the key they would be replayed to that retry for 7 days.
TRANSIENT_REFUSALS = frozenset({409, 429})


def keeps_key(answer: Answer) -> bool:
    """Whether ``answer`` is stored under its Idempotency-Key (and replayed to a retry).

    Kept: what executed (2xx), a final refusal of this request (422, 404: the same request is
    refused again), and a 5xx once the order was with the terminal (it may have executed).
    Released, so the retry is a new attempt: a refusal of the moment (TRANSIENT_REFUSALS),
    and a 5xx before anything was sent (a 5xx stored would be replayed for ever).
    """
    if answer.status in TRANSIENT_REFUSALS:
        return False
    return answer.sent or answer.status < 500


async def trade(
    svc: Service, request: Request, operation: str, body: dict[str, Any], action: Callable[[], Awaitable[TradeOutcome]]
) -> JSONResponse:
    """Answer one trade request: ``body`` is the request as fingerprinted and recorded
    (``operation`` names it in Postgres), ``action`` the call to the terminal."""
    key = idempotency_key(request)
    if key is not None:
        replay = await claim(svc, key, fingerprint(request.method, request.url.path, body))
        if replay is not None:
            return replay
    answer = await execute(svc, action)
    svc.metrics.orders.labels(answer.label).inc()
    if key is not None:
        if keeps_key(answer):
            await asyncio.to_thread(svc.idempotency.finish, key, answer.status, answer.body)
        else:
            await asyncio.to_thread(svc.idempotency.release, key)
    if svc.store is not None:  # every request and its answer, sent or refused
        await svc.store.record_order(operation, body, answer.status, answer.body, key)
    if answer.status < 300:
        svc.deals_due.set()
        try:
            await svc.poller.poll_once()  # read-your-writes for REST and WebSocket
        except Exception as exc:  # noqa: BLE001 - the trade itself succeeded
            log.warning("refresh after trade failed: %s", exc)
    return JSONResponse(answer.body, status_code=answer.status, headers=with_retry_after(answer.status))


@router.post(
    "/api/orders",
    status_code=201,
    response_model=TradeOut,
    responses={**TRADE_ERRORS, 201: {"description": "order executed or placed"}},
)
async def post_order(svc: ServiceDep, order: OrderIn, request: Request) -> JSONResponse:
    """Place a market order (buy/sell) or a pending order (limits/stops).
    Send an ``Idempotency-Key`` header to make retries safe."""
    currency = str((svc.poller.snapshot.account if svc.poller.snapshot else {}).get("currency", ""))
    return await trade(svc, request, "open", order_record(order), lambda: place_order(svc.gateway, order, currency))


@router.post("/api/orders/check", response_model=CheckOut, responses=TRADE_ERRORS)
async def post_order_check(svc: ServiceDep, order: OrderIn) -> JSONResponse:
    """Check an order as the terminal would (``order_check``) without sending it: the margin it
    needs and the account after it, or the refusal a placement would get. Nothing is traded,
    recorded or kept under an Idempotency-Key."""
    currency = str((svc.poller.snapshot.account if svc.poller.snapshot else {}).get("currency", ""))
    answer = await execute(svc, lambda: check_order(svc.gateway, order, currency))
    return JSONResponse(answer.body, status_code=answer.status, headers=with_retry_after(answer.status))


@router.patch("/api/positions/{ticket}", response_model=TradeOut, responses=TRADE_ERRORS)
async def patch_position(svc: ServiceDep, change: PositionModifyIn, request: Request, ticket: Ticket) -> JSONResponse:
    """Modify the SL/TP of an open position (null or 0 removes a level)."""
    body = {"ticket": ticket, **change.model_dump(exclude_unset=True)}
    return await trade(svc, request, "modify_position", body, lambda: modify_position(svc.gateway, ticket, change))


@router.patch("/api/orders/{ticket}", response_model=TradeOut, responses=TRADE_ERRORS)
async def patch_order(svc: ServiceDep, change: OrderModifyIn, request: Request, ticket: Ticket) -> JSONResponse:
    """Modify the price and/or SL/TP of a pending order."""
    body = {"ticket": ticket, **change.model_dump(exclude_unset=True)}
    return await trade(svc, request, "modify_order", body, lambda: modify_order(svc.gateway, ticket, change))


@router.delete("/api/positions/{ticket}", response_model=TradeOut, responses=TRADE_ERRORS)
async def delete_position(
    svc: ServiceDep, request: Request, ticket: Ticket, volume: CloseVolume = None, deviation: CloseDeviation = 20
) -> JSONResponse:
    """Close an open position, fully or partially (``?volume=``)."""
    body = {"ticket": ticket, "volume": volume, "deviation": deviation}
    return await trade(svc, request, "close", body, lambda: close_position(svc.gateway, ticket, volume, deviation))


@router.post("/api/positions/{ticket}/close_by", response_model=TradeOut, responses=TRADE_ERRORS)
async def post_close_by(svc: ServiceDep, change: CloseByIn, request: Request, ticket: Ticket) -> JSONResponse:
    """Close a position by an opposite one of the same symbol (``TRADE_ACTION_CLOSE_BY``, a
    hedging account): the smaller volume of the two closes, both at the opposite position's
    open price (no spread paid); the larger one stays open with the rest."""
    body = {"ticket": ticket, **change.model_dump()}
    return await trade(svc, request, "close_by", body, lambda: close_by(svc.gateway, ticket, change))


@router.delete("/api/positions", response_model=CloseAllOut, responses={**TRADE_ERRORS, 409: {"model": CloseAllOut}})
async def delete_positions(
    svc: ServiceDep,
    request: Request,
    symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN, description="close the positions of this symbol")] = None,
    magic: Annotated[int | None, IntegerText, Query(ge=0, le=MAX_TICKET, description="close the positions of this magic number")] = None,
    deviation: CloseDeviation = 20,
) -> JSONResponse:
    """Close every open position of a ``symbol`` and/or a ``magic`` number (one of them is
    required), one after another: ``{closed, failed, results: [{ticket, status, ...the trade
    result or the error}]}``. 200 when all closed; 409 ``not_all_closed`` with the same
    results otherwise (the Idempotency-Key is then released: a retry closes what is left)."""
    if symbol is None and magic is None:
        raise ApiError(422, "invalid_input", "name the positions to close: symbol and/or magic")
    body = {"symbol": symbol, "magic": magic, "deviation": deviation}
    return await trade(svc, request, "close_all", body, lambda: close_all(svc.gateway, symbol, magic, deviation))


@router.delete("/api/orders/{ticket}", response_model=TradeOut, responses=TRADE_ERRORS)
async def delete_order(svc: ServiceDep, request: Request, ticket: Ticket) -> JSONResponse:
    """Cancel a pending order."""
    return await trade(svc, request, "cancel", {"ticket": ticket}, lambda: cancel_order(svc.gateway, ticket))
