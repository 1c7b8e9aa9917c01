"""Trade requests: check them against the symbol, ask the terminal, explain refusals.

Pure checks (:func:`volume_problem`, :func:`stops_problem`, :func:`pending_price_problem`)
give a sentence a person understands, or ``None``. The async flows build MT5 request dicts,
run ``order_check`` then ``order_send`` through the gateway, and turn every non-success
retcode into a :class:`TradeFailure` carrying the HTTP status to answer with.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .backends import base as c
from .gateway import BackendError, BackendInvalidArgument, BackendUnavailable, Gateway
from .models import MAX_PRICE, CloseByIn, OrderIn, OrderModifyIn, OrderType, PositionModifyIn, TimeInForce, trade_out


class TradeFailure(Exception):
    """A refusal answered with ``status``; ``sent`` says whether the request reached
    ``order_send`` (only then may it have executed)."""

    def __init__(self, status: int, error: str, message: str, retcode: int | None = None, sent: bool = False):
        super().__init__(message)
        self.status, self.error, self.message, self.retcode, self.sent = status, error, message, retcode, sent

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, "retcode": self.retcode}


@dataclass(frozen=True)
class TradeOutcome:
    status: int
    body: dict[str, Any]
    retcode: int


#: retcode -> (HTTP status, error id, what to tell the caller)
_RETCODE_ERRORS: dict[int, tuple[int, str, str]] = {
    c.TRADE_RETCODE_MARKET_CLOSED: (409, "market_closed", "the market for {symbol} is closed; try again when it opens"),
    c.TRADE_RETCODE_TRADE_DISABLED: (409, "trade_disabled", "trading {symbol} is disabled on this account or server"),
    c.TRADE_RETCODE_NO_MONEY: (422, "insufficient_margin", "not enough free margin for this order"),
    c.TRADE_RETCODE_INVALID_VOLUME: (422, "invalid_volume", "the trade server refused the volume"),
    c.TRADE_RETCODE_INVALID_PRICE: (422, "invalid_price", "the trade server refused the price"),
    c.TRADE_RETCODE_INVALID_STOPS: (
        422,
        "invalid_stops",
        "the trade server refused the SL/TP levels (too close to the price or on the wrong side)",
    ),
    c.TRADE_RETCODE_INVALID_FILL: (422, "invalid_filling", "the symbol does not allow this filling mode"),
    c.TRADE_RETCODE_INVALID_CLOSE_VOLUME: (422, "invalid_close_volume", "the close volume exceeds the position's volume"),
    c.TRADE_RETCODE_POSITION_CLOSED: (404, "position_not_found", "the position does not exist or is already closed"),
    c.TRADE_RETCODE_REQUOTE: (409, "price_changed", "the price moved beyond the allowed deviation; retry"),
    c.TRADE_RETCODE_PRICE_CHANGED: (409, "price_changed", "the price changed; retry"),
    c.TRADE_RETCODE_PRICE_OFF: (409, "no_quotes", "there are no quotes for {symbol} right now"),
    c.TRADE_RETCODE_NO_CHANGES: (409, "no_changes", "the request changes nothing"),
    c.TRADE_RETCODE_TOO_MANY_REQUESTS: (429, "too_many_requests", "the trade server says: too many requests; slow down"),
    c.TRADE_RETCODE_CONNECTION: (503, "no_connection", "the terminal has no connection to the trade server"),
    c.TRADE_RETCODE_TIMEOUT: (504, "timeout", "the trade server did not answer in time"),
    c.TRADE_RETCODE_REJECT: (409, "rejected", "the trade server rejected the request"),
    c.TRADE_RETCODE_SERVER_DISABLES_AT: (
        409,
        "trading_disabled",
        "the trade server does not allow automated trading on this account (ask the broker)",
    ),
    c.TRADE_RETCODE_CLIENT_DISABLES_AT: (
        409,
        "trading_disabled",
        "the terminal does not allow automated trading: switch on AutoTrading (Algo Trading) in the terminal",
    ),
    c.TRADE_RETCODE_INVALID: (422, "invalid_request", "the trade server refused the request"),
    c.TRADE_RETCODE_INVALID_EXPIRATION: (422, "invalid_expiration", "the trade server refused the order's expiration"),
    c.TRADE_RETCODE_INVALID_ORDER: (422, "invalid_order_type", "the trade server does not take this order type for {symbol}"),
}


def failure_for(retcode: int, symbol: str = "", comment: str = "", sent: bool = False) -> TradeFailure:
    status, error, text = _RETCODE_ERRORS.get(retcode, (502, "trade_server_error", "the trade server refused the request"))
    message = text.format(symbol=symbol or "the symbol")
    detail = f"{c.retcode_text(retcode)}, retcode {retcode}"
    if comment and comment.lower() not in detail.lower():
        detail += f", '{comment}'"
    return TradeFailure(status, error, f"{message} ({detail})", retcode, sent)


def trading_block(terminal: dict[str, Any], account: dict[str, Any]) -> str | None:
    """Why the terminal would refuse every order (retcode 10027/10026), from the last poll's
    ``terminal_info`` and ``account_info``; None when trading is allowed. Reads keep working
    in all these states, so /health alone does not show them (issue 12, fault 5)."""
    if terminal.get("tradeapi_disabled"):
        return "the terminal disables trading through the Python API (Tools > Options > Expert Advisors)"
    if not terminal.get("trade_allowed", True):
        return "AutoTrading (Algo Trading) is switched off in the terminal"
    if not account.get("trade_allowed", True):
        return "the account does not allow trading (logged in with the investor, read-only, password?)"
    if not account.get("trade_expert", True):
        return "the trade server does not allow automated trading on this account"
    return None


# --- pure checks ------------------------------------------------------------------------------
def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def volume_problem(volume: float, info: dict[str, Any]) -> str | None:
    vmin, vmax, step = (float(info["volume_min"]), float(info["volume_max"]), float(info["volume_step"]))
    steps = (volume - vmin) / step if step > 0 else 0.0
    on_grid = abs(steps - round(steps)) < 1e-6
    if vmin - 1e-9 <= volume <= vmax + 1e-9 and on_grid:
        return None
    return f"volume {volume:g} is not valid for {info['name']}: use {vmin:g} to {vmax:g} lots in steps of {step:g}"


def stops_problem(
    is_buy: bool, sl: float | None, tp: float | None, bid: float, ask: float, info: dict[str, Any], reference: str = ""
) -> str | None:
    """SL/TP must sit on the correct side of the price the position closes at (bid for a
    buy, ask for a sell), at least ``trade_stops_level`` points away."""
    digits, point = int(info["digits"]), float(info["point"])
    gap = int(info.get("trade_stops_level") or 0) * point
    close_at, close_name = (bid, "bid") if is_buy else (ask, "ask")
    if reference:
        close_name = reference
    side = "buy" if is_buy else "sell"
    away = f" by at least {int(info.get('trade_stops_level') or 0)} points" if gap else ""
    if sl:
        ok = sl <= close_at - gap + 1e-12 if is_buy else sl >= close_at + gap - 1e-12
        if not ok:
            where = "below" if is_buy else "above"
            return (
                f"sl {_fmt(sl, digits)} is on the wrong side for a {side}: it must be "
                f"{where} the {close_name} {_fmt(close_at, digits)}{away}"
            )
    if tp:
        ok = tp >= close_at + gap - 1e-12 if is_buy else tp <= close_at - gap + 1e-12
        if not ok:
            where = "above" if is_buy else "below"
            return (
                f"tp {_fmt(tp, digits)} is on the wrong side for a {side}: it must be "
                f"{where} the {close_name} {_fmt(close_at, digits)}{away}"
            )
    return None


def pending_price_problem(order_type: OrderType, price: float, bid: float, ask: float, info: dict[str, Any]) -> str | None:
    digits, point = int(info["digits"]), float(info["point"])
    gap = int(info.get("trade_stops_level") or 0) * point
    rules = {
        OrderType.buy_limit: (price <= ask - gap + 1e-12, "below the ask", ask),
        OrderType.buy_stop: (price >= ask + gap - 1e-12, "above the ask", ask),
        OrderType.sell_limit: (price >= bid + gap - 1e-12, "above the bid", bid),
        OrderType.sell_stop: (price <= bid - gap + 1e-12, "below the bid", bid),
        OrderType.buy_stop_limit: (price >= ask + gap - 1e-12, "above the ask", ask),
        OrderType.sell_stop_limit: (price <= bid - gap + 1e-12, "below the bid", bid),
    }
    ok, where, ref = rules[order_type]
    if ok:
        return None
    away = f" by at least {int(info['trade_stops_level'])} points" if gap else ""
    return f"a {order_type.value} price must be {where} {_fmt(ref, digits)}{away}; got {_fmt(price, digits)}"


def stoplimit_problem(order_type: OrderType, price: float, stoplimit: float, info: dict[str, Any]) -> str | None:
    """A stop-limit's limit price: at or below its stop price for a buy (the buy limit placed
    then waits for a pullback), at or above for a sell, ``trade_stops_level`` points away."""
    digits, point = int(info["digits"]), float(info["point"])
    gap = int(info.get("trade_stops_level") or 0) * point
    is_buy = order_type.is_buy
    if (stoplimit <= price - gap + 1e-12) if is_buy else (stoplimit >= price + gap - 1e-12):
        return None
    where = "below" if is_buy else "above"
    away = f" by at least {int(info['trade_stops_level'])} points" if gap else ""
    return f"a {order_type.value} stoplimit must be {where} its price {_fmt(price, digits)}{away}; got {_fmt(stoplimit, digits)}"


def levels_from_points(
    is_buy: bool, opens_at: float, sl_points: int | None, tp_points: int | None, info: dict[str, Any]
) -> tuple[float | None, float | None]:
    """SL and TP given as points from the opening price, as prices on the symbol's grid (a
    buy's SL below, TP above; a sell's the other way), None where not given."""
    point, tick, digits = float(info["point"]), tick_size(info), int(info["digits"])
    sign = 1.0 if is_buy else -1.0

    def level(points: int | None, direction: float) -> float | None:
        if points is None:
            return None
        return round(round((opens_at + direction * sign * points * point) / tick) * tick, digits)

    return level(sl_points, -1.0), level(tp_points, 1.0)


def expiration_problem(order: OrderIn, info: dict[str, Any], now: float) -> str | None:
    """A time in force the symbol does not take (its ``expiration_mode``), or an expiration
    not in the future."""
    modes = info.get("expiration_mode")
    if modes is not None and not int(modes) & order.time_in_force.symbol_flag:
        return f"{info['name']} does not take time_in_force {order.time_in_force.value} (its expiration_mode is {int(modes)})"
    if order.expiration is not None:
        ends = order.expiration.timestamp()
        if order.time_in_force == TimeInForce.specified_day:  # the order lives to the end of that day (UTC)
            ends = (ends // 86400 + 1) * 86400
        if ends <= now:
            return f"expiration {order.expiration.isoformat()} is not in the future"
    return None


def tick_size(info: dict[str, Any]) -> float:
    """The symbol's price grid: ``trade_tick_size``, or the point when the terminal gives none."""
    return float(info.get("trade_tick_size") or 0.0) or float(info["point"])


def tick_problem(name: str, value: float | None, info: dict[str, Any]) -> str | None:
    """A price, SL or TP off the symbol's tick grid (a DE40 with tick 0.5 takes 17950.0 and
    17950.5, not 17950.3): the server refuses it (10015/10016), so it is refused here with the
    two nearest valid values. ``value`` is first rounded to ``digits`` (as it is sent), and the
    grid is checked in decimal: a float remainder would call 1.08501 off a 0.00001 grid."""
    if not value:
        return None
    digits, tick = int(info["digits"]), tick_size(info)
    price = Decimal(repr(round(value, digits)))
    step = Decimal(repr(tick))
    if step <= 0 or price % step == 0:
        return None
    below = (price // step) * step
    return f"{name} {price} is not on {info['name']}'s price grid: its tick size is {step}, so use {below} or {below + step}"


def grid_problem(info: dict[str, Any], **values: float | None) -> str | None:
    """The first of ``values`` (name=price) off the tick grid, see :func:`tick_problem`."""
    for name, value in values.items():
        problem = tick_problem(name, value, info)
        if problem:
            return problem
    return None


def filling_for(info: dict[str, Any]) -> int:
    flags = int(info.get("filling_mode") or 0)
    if flags & c.SYMBOL_FILLING_FOK:
        return c.ORDER_FILLING_FOK
    if flags & c.SYMBOL_FILLING_IOC:
        return c.ORDER_FILLING_IOC
    return c.ORDER_FILLING_RETURN


def round_price(value: float | None, digits: int) -> float:
    return 0.0 if not value else round(value, digits)


# --- flows ------------------------------------------------------------------------------------
#: How long a read or an order waits for the first tick of a symbol it has just selected into
#: Market Watch: the terminal subscribes on symbol_select and the tick arrives a moment later
#: (issue 12, fault 12). Polled every TICK_WAIT_STEP seconds.
TICK_WAIT = 2.0
TICK_WAIT_STEP = 0.05


def has_quotes(tick: dict[str, Any] | None) -> bool:
    return bool(tick and tick.get("bid") and tick.get("ask"))


async def symbol_quote(gw: Gateway, symbol: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """``(symbol_info, tick)`` of ``symbol``, None when the terminal has no such symbol. A
    symbol outside Market Watch is selected first, then its first tick is awaited up to
    TICK_WAIT seconds; ``tick`` is None (or has no bid/ask) when none came."""
    info = await gw.call_optional("symbol_info", symbol)
    if info is None:
        return None
    tick = await gw.call_optional("symbol_info_tick", symbol)
    if has_quotes(tick) or (info.get("select", True) and info.get("visible", True)):
        return info, tick
    await gw.call_optional("symbol_select", symbol, True)
    deadline = time.monotonic() + TICK_WAIT
    while True:
        tick = await gw.call_optional("symbol_info_tick", symbol)
        if has_quotes(tick) or time.monotonic() >= deadline:
            # The spec as it is now (selected, visible), not as it was before the select.
            return (await gw.call_optional("symbol_info", symbol)) or info, tick
        await asyncio.sleep(TICK_WAIT_STEP)


async def symbol_or_fail(gw: Gateway, symbol: str) -> tuple[dict[str, Any], dict[str, Any]]:
    quote = await symbol_quote(gw, symbol)
    if quote is None:
        raise TradeFailure(
            422,
            "unknown_symbol",
            f"unknown symbol '{symbol}': the terminal has no such symbol (check the spelling and your broker's suffix, e.g. EURUSD.m)",
        )
    info, tick = quote
    if tick is None or not has_quotes(tick):
        raise TradeFailure(409, "no_quotes", f"there are no quotes for {symbol} right now")
    return info, tick


async def check_or_fail(gw: Gateway, request: dict[str, Any], symbol: str, account_currency: str = "") -> dict[str, Any]:
    """order_check; return its MqlTradeCheckResult (retcode 0) or raise TradeFailure (never
    ``sent``). An argument the terminal refuses (last_error -2) is the caller's 422."""
    try:
        check = await gw.call("order_check", request)
    except BackendInvalidArgument as exc:
        raise TradeFailure(422, "invalid_argument", f"the terminal refused an argument of the request: {exc}") from exc
    except BackendUnavailable as exc:
        raise TradeFailure(503, "backend_unavailable", f"the terminal is not reachable, nothing was sent: {exc}") from exc
    except BackendError as exc:
        raise TradeFailure(502, "backend_error", f"the terminal's order_check failed, nothing was sent: {exc}") from exc
    retcode = int(check.get("retcode", -1))
    if retcode != c.TRADE_RETCODE_CHECK_OK:
        failure = failure_for(retcode, symbol, str(check.get("comment", "")))
        if retcode == c.TRADE_RETCODE_NO_MONEY:
            cur = f" {account_currency}" if account_currency else ""
            free_now = float(check.get("margin_free", 0.0)) + float(check.get("margin", 0.0))
            failure.message = (
                f"not enough free margin: this order needs "
                f"{float(check.get('margin', 0.0)):.2f}{cur} of margin, free "
                f"margin is {free_now:.2f}{cur} (retcode 10019)"
            )
        raise failure
    return check


async def check_and_send(gw: Gateway, request: dict[str, Any], symbol: str, account_currency: str = "") -> dict[str, Any]:
    """order_check, then order_send; return the send result or raise TradeFailure. An
    argument the terminal refuses (last_error -2) is the caller's 422, never a 5xx; a failure
    of order_check is never ``sent``."""
    await check_or_fail(gw, request, symbol, account_currency)
    try:
        result = await gw.call("order_send", request)
    except BackendInvalidArgument as exc:
        raise TradeFailure(422, "invalid_argument", f"the terminal refused an argument of the request: {exc}", sent=True) from exc
    retcode = int(result.get("retcode", -1))
    if retcode not in c.SUCCESS_RETCODES:
        raise failure_for(retcode, symbol, str(result.get("comment", "")), sent=True)
    return result


async def position_of_deal(gw: Gateway, result: dict[str, Any], symbol: str) -> int | None:
    """The ticket of the position a market order's deal opened or changed, None when the deal
    closed it. The order's own ticket names a position only on a hedging account; on a netting
    account the deal joins (or reverses) the symbol's one position, whose identifier is the
    deal's ``position_id`` and whose ticket changes on a reversal (issue 12, fault 3)."""
    order, deal = int(result.get("order", 0)), int(result.get("deal", 0))
    identifier = order
    deals = await gw.call_optional("history_deals_get", ticket=order) if order else None
    for row in deals or ():
        if int(row.get("ticket", 0)) == deal or not deal:
            identifier = int(row.get("position_id") or order)
            break
    rows = await gw.call("positions_get", symbol=symbol)
    for row in rows:
        if int(row.get("identifier") or row.get("ticket", 0)) == identifier:
            return int(row["ticket"])
    return None


async def order_request(gw: Gateway, order: OrderIn) -> dict[str, Any]:
    """The MqlTradeRequest of a new order, checked as the terminal would (volume, stops,
    pending price, tick grid) against the symbol's current quote; TradeFailure 4xx when not."""
    info, tick = await symbol_or_fail(gw, order.symbol)
    bid, ask = float(tick["bid"]), float(tick["ask"])
    digits = int(info["digits"])
    problem = volume_problem(order.volume, info)
    if problem:
        raise TradeFailure(422, "invalid_volume", problem, c.TRADE_RETCODE_INVALID_VOLUME)
    # "In the future" on the trade server's clock: its newest quote's time (UTC here).
    problem = expiration_problem(order, info, float(tick.get("time") or time.time()))
    if problem:
        raise TradeFailure(422, "invalid_expiration", problem, c.TRADE_RETCODE_INVALID_EXPIRATION)
    is_buy = order.type.is_buy
    if order.type.is_market:
        price = order.price or (ask if is_buy else bid)
        opens_at, reference = (ask if is_buy else bid), ""
        request: dict[str, Any] = {"action": c.TRADE_ACTION_DEAL, "type_filling": filling_for(info)}
    else:
        assert order.price is not None
        price, opens_at, reference = order.price, order.stoplimit or order.price, "order price"
        problem = pending_price_problem(order.type, price, bid, ask, info)
        if problem is None and order.stoplimit is not None:
            problem, reference = stoplimit_problem(order.type, price, order.stoplimit, info), "stoplimit"
        request = {"action": c.TRADE_ACTION_PENDING, "type_filling": c.ORDER_FILLING_RETURN}
    sl_at, tp_at = levels_from_points(is_buy, opens_at, order.sl_points, order.tp_points, info)
    for name, level, points in (("sl", sl_at, order.sl_points), ("tp", tp_at, order.tp_points)):
        if level is not None and not 0 < level <= MAX_PRICE:
            raise TradeFailure(
                422,
                "invalid_stops",
                f"{name}_points {points} puts the {name} at {level:g}, which is no price: use fewer points",
                c.TRADE_RETCODE_INVALID_STOPS,
            )
    sl, tp = order.sl if sl_at is None else sl_at, order.tp if tp_at is None else tp_at
    if problem is None:
        if order.type.is_market:
            problem = stops_problem(is_buy, sl, tp, bid, ask, info)
        else:
            problem = stops_problem(is_buy, sl, tp, opens_at, opens_at, info, reference=reference)
    problem = problem or grid_problem(info, price=order.price, stoplimit=order.stoplimit, sl=sl, tp=tp)
    if problem:
        error = "invalid_stops" if problem.startswith(("sl", "tp")) else "invalid_price"
        raise TradeFailure(422, error, problem)
    request.update(
        {
            "symbol": order.symbol,
            "volume": float(order.volume),
            "type": order.type.mt5,
            "price": round(price, digits),
            "sl": round_price(sl, digits),
            "tp": round_price(tp, digits),
            "deviation": order.deviation,
            "magic": order.magic,
            "comment": order.comment,
            "type_time": order.time_in_force.mt5,
        }
    )
    if order.stoplimit is not None:
        request["stoplimit"] = round(order.stoplimit, digits)
    if order.expiration is not None:  # MT5 takes it on the trade server's clock
        request["expiration"] = int(order.expiration.timestamp()) + gw.server_clock.seconds
    return request


async def place_order(gw: Gateway, order: OrderIn, account_currency: str) -> TradeOutcome:
    request = await order_request(gw, order)
    result = await check_and_send(gw, request, order.symbol, account_currency)
    position = await position_of_deal(gw, result, order.symbol) if order.type.is_market else None
    return TradeOutcome(201, trade_out(result, position), int(result["retcode"]))


async def check_order(gw: Gateway, order: OrderIn, account_currency: str) -> TradeOutcome:
    """order_check alone (nothing is sent): 200 with the MqlTradeCheckResult - the margin the
    order needs, and balance, equity, margin and free margin after it - or the TradeFailure a
    placement of it would get from the check."""
    request = await order_request(gw, order)
    check = await check_or_fail(gw, request, order.symbol, account_currency)
    keys = ("retcode", "balance", "equity", "profit", "margin", "margin_free", "margin_level", "comment")
    body = {key: check.get(key) for key in keys} | {"retcode_text": c.retcode_text(int(check["retcode"]))}
    return TradeOutcome(200, body, int(check["retcode"]))


async def _position(gw: Gateway, ticket: int) -> dict[str, Any]:
    rows = await gw.call("positions_get", ticket=ticket)
    if rows:
        return rows[0]
    # On a netting account a reversal gives the position a new ticket and keeps its
    # identifier (the first ticket): the caller's old ticket names it still, so say its new one.
    moved = [p for p in await gw.call("positions_get") if int(p.get("identifier", 0)) == ticket]
    if moved:
        raise TradeFailure(
            404,
            "position_not_found",
            f"position {ticket} was reversed and has the ticket {moved[0]['ticket']} now (a netting account); use that ticket",
        )
    raise TradeFailure(404, "position_not_found", f"no open position with ticket {ticket} (closed already, or another account's ticket)")


async def _pending(gw: Gateway, ticket: int) -> dict[str, Any]:
    rows = await gw.call("orders_get", ticket=ticket)
    if not rows:
        raise TradeFailure(
            404, "order_not_found", f"no pending order with ticket {ticket} (filled, cancelled, or another account's ticket)"
        )
    return rows[0]


async def close_position(gw: Gateway, ticket: int, volume: float | None, deviation: int) -> TradeOutcome:
    pos = await _position(gw, ticket)
    symbol = str(pos["symbol"])
    info, tick = await symbol_or_fail(gw, symbol)
    is_buy = int(pos["type"]) == c.POSITION_TYPE_BUY
    close_volume = float(pos["volume"]) if volume is None else volume
    if close_volume > float(pos["volume"]) + 1e-9:
        raise TradeFailure(
            422,
            "invalid_close_volume",
            f"cannot close {close_volume:g} lots: position {ticket} has {float(pos['volume']):g}",
            c.TRADE_RETCODE_INVALID_CLOSE_VOLUME,
        )
    problem = volume_problem(close_volume, info)
    if problem:
        raise TradeFailure(422, "invalid_volume", problem, c.TRADE_RETCODE_INVALID_VOLUME)
    request = {
        "action": c.TRADE_ACTION_DEAL,
        "position": ticket,
        "symbol": symbol,
        "volume": close_volume,
        "type": c.ORDER_TYPE_SELL if is_buy else c.ORDER_TYPE_BUY,
        "price": float(tick["bid"] if is_buy else tick["ask"]),
        "deviation": deviation,
        "magic": int(pos.get("magic", 0)),
        "comment": "close",
        "type_filling": filling_for(info),
        "type_time": c.ORDER_TIME_GTC,
    }
    result = await check_and_send(gw, request, symbol)
    return TradeOutcome(200, trade_out(result, ticket), int(result["retcode"]))


async def modify_position(gw: Gateway, ticket: int, change: PositionModifyIn) -> TradeOutcome:
    pos = await _position(gw, ticket)
    symbol = str(pos["symbol"])
    info, tick = await symbol_or_fail(gw, symbol)
    digits = int(info["digits"])
    sl = change.sl if "sl" in change.model_fields_set else pos.get("sl")
    tp = change.tp if "tp" in change.model_fields_set else pos.get("tp")
    is_buy = int(pos["type"]) == c.POSITION_TYPE_BUY
    problem = stops_problem(is_buy, sl, tp, float(tick["bid"]), float(tick["ask"]), info) or grid_problem(info, sl=sl, tp=tp)
    if problem:
        raise TradeFailure(422, "invalid_stops", problem, c.TRADE_RETCODE_INVALID_STOPS)
    request = {
        "action": c.TRADE_ACTION_SLTP,
        "position": ticket,
        "symbol": symbol,
        "sl": round_price(sl, digits),
        "tp": round_price(tp, digits),
    }
    result = await check_and_send(gw, request, symbol)
    return TradeOutcome(200, trade_out(result, ticket), int(result["retcode"]))


async def modify_order(gw: Gateway, ticket: int, change: OrderModifyIn) -> TradeOutcome:
    order = await _pending(gw, ticket)
    symbol = str(order["symbol"])
    info, tick = await symbol_or_fail(gw, symbol)
    digits = int(info["digits"])
    fields = change.model_fields_set
    price = change.price if "price" in fields and change.price else float(order["price_open"])
    sl = change.sl if "sl" in fields else order.get("sl")
    tp = change.tp if "tp" in fields else order.get("tp")
    order_type = _ORDER_TYPES_BY_MT5.get(int(order["type"]))
    if order_type is None or order_type.is_market:
        raise TradeFailure(422, "invalid_request", f"order {ticket} is not a pending order")
    stoplimit = change.stoplimit if change.stoplimit is not None else float(order.get("price_stoplimit") or 0.0)
    if change.stoplimit is not None and not order_type.is_stop_limit:
        raise TradeFailure(422, "invalid_price", f"order {ticket} is a {order_type.value}: only stop-limit orders have a stoplimit")
    opens_at = stoplimit if order_type.is_stop_limit else price
    problem = (
        pending_price_problem(order_type, price, float(tick["bid"]), float(tick["ask"]), info)
        or (stoplimit_problem(order_type, price, stoplimit, info) if order_type.is_stop_limit else None)
        or stops_problem(order_type.is_buy, sl, tp, opens_at, opens_at, info, reference="order price")
        or grid_problem(info, price=price, stoplimit=stoplimit or None, sl=sl, tp=tp)
    )
    if problem:
        raise TradeFailure(422, "invalid_stops" if problem.startswith(("sl", "tp")) else "invalid_price", problem)
    request = {
        "action": c.TRADE_ACTION_MODIFY,
        "order": ticket,
        "symbol": symbol,
        "price": round(price, digits),
        "sl": round_price(sl, digits),
        "tp": round_price(tp, digits),
        "type_time": int(order.get("type_time") or c.ORDER_TIME_GTC),
        # MT5 expects the order's expiration again with a modification (0: none); the
        # terminal reported it in UTC here, it takes it on the server's clock.
        "expiration": int(order["time_expiration"]) + gw.server_clock.seconds if order.get("time_expiration") else 0,
    }
    if order_type.is_stop_limit:
        request["stoplimit"] = round(stoplimit, digits)
    result = await check_and_send(gw, request, symbol)
    return TradeOutcome(200, trade_out(result), int(result["retcode"]))


async def close_by(gw: Gateway, ticket: int, change: CloseByIn) -> TradeOutcome:
    """TRADE_ACTION_CLOSE_BY: close ``ticket`` by the opposite position ``position_by`` of the
    same symbol (a hedging account): the smaller volume of the two closes, no spread paid."""
    pos = await _position(gw, ticket)
    by = await _position(gw, change.position_by)
    symbol = str(pos["symbol"])
    if str(by["symbol"]) != symbol or int(by["type"]) == int(pos["type"]):
        raise TradeFailure(
            422,
            "invalid_request",
            f"position {change.position_by} ({by['symbol']}) cannot close {ticket} ({symbol}): close-by needs an opposite position of the same symbol",
        )
    request = {
        "action": c.TRADE_ACTION_CLOSE_BY,
        "position": ticket,
        "position_by": change.position_by,
        "symbol": symbol,
        "magic": int(pos.get("magic", 0)),
        "comment": change.comment,
    }
    result = await check_and_send(gw, request, symbol)
    return TradeOutcome(200, trade_out(result, ticket), int(result["retcode"]))


async def close_all(gw: Gateway, symbol: str | None, magic: int | None, deviation: int) -> TradeOutcome:
    """Close every open position of ``symbol`` and/or ``magic``, one after another: the
    positions found and each one's answer (the trade result, or the refusal as an error
    body); 200 when every one closed, else 409 with the same body (none found: 200, empty)."""
    if symbol is not None and await gw.call_optional("symbol_info", symbol) is None:
        raise TradeFailure(404, "unknown_symbol", f"unknown symbol '{symbol}': the terminal has no such symbol, so no position of it")
    rows = await gw.call("positions_get", symbol=symbol) if symbol is not None else await gw.call("positions_get")
    chosen = [row for row in rows if magic is None or int(row.get("magic", 0)) == magic]
    results: list[dict[str, Any]] = []
    for row in chosen:
        ticket = int(row["ticket"])
        try:
            outcome = await close_position(gw, ticket, None, deviation)
            results.append({"ticket": ticket, "status": outcome.status, **outcome.body})
        except TradeFailure as failure:
            results.append({"ticket": ticket, "status": failure.status, **failure.body()})
    failed = sum(1 for r in results if r["status"] >= 300)
    body: dict[str, Any] = {"closed": len(results) - failed, "failed": failed, "results": results}
    if not failed:
        return TradeOutcome(200, body, c.TRADE_RETCODE_DONE)
    # The key is released on a 409 (routers.trading.keeps_key): a retry closes what is left.
    message = f"{failed} of {len(results)} positions were not closed (see results); the others were"
    return TradeOutcome(409, {"error": "not_all_closed", "message": message, "retcode": None, **body}, c.TRADE_RETCODE_ERROR)


async def cancel_order(gw: Gateway, ticket: int) -> TradeOutcome:
    order = await _pending(gw, ticket)
    request = {"action": c.TRADE_ACTION_REMOVE, "order": ticket}
    result = await check_and_send(gw, request, str(order["symbol"]))
    return TradeOutcome(200, trade_out(result), int(result["retcode"]))


_ORDER_TYPES_BY_MT5 = {t.mt5: t for t in OrderType}
