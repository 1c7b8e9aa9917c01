"""The one interface every backend offers: the shape of the ``MetaTrader5`` module.

A backend is any object with the module's function names and calling conventions
(``initialize``, ``login``, ``account_info``, ...). Results are MT5's result objects
(named tuples with ``_asdict``) or ``None`` on failure, with ``last_error()`` telling why.
:func:`to_plain` turns any of those shapes into dicts and lists of builtins.

The numeric constants below are MetaTrader 5's own values (``mt5.TRADE_ACTION_DEAL`` ...),
repeated here so that code which only needs the numbers never imports a backend.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

# --- last_error() codes -------------------------------------------------------------
RES_S_OK = 1
RES_E_FAIL = -1
RES_E_INVALID_PARAMS = -2
RES_E_NOT_FOUND = -4
RES_E_AUTH_FAILED = -6
RES_E_INTERNAL_FAIL = -10000
RES_E_INTERNAL_FAIL_CONNECT = -10004

# --- trade actions, order and position types ---------------------------------------
TRADE_ACTION_DEAL = 1
TRADE_ACTION_PENDING = 5
TRADE_ACTION_SLTP = 6
TRADE_ACTION_MODIFY = 7
TRADE_ACTION_REMOVE = 8
TRADE_ACTION_CLOSE_BY = 10

ORDER_TYPE_BUY = 0
ORDER_TYPE_SELL = 1
ORDER_TYPE_BUY_LIMIT = 2
ORDER_TYPE_SELL_LIMIT = 3
ORDER_TYPE_BUY_STOP = 4
ORDER_TYPE_SELL_STOP = 5
ORDER_TYPE_BUY_STOP_LIMIT = 6
ORDER_TYPE_SELL_STOP_LIMIT = 7
ORDER_TYPE_CLOSE_BY = 8

ORDER_FILLING_FOK = 0
ORDER_FILLING_IOC = 1
ORDER_FILLING_RETURN = 2
ORDER_TIME_GTC = 0
ORDER_TIME_DAY = 1
ORDER_TIME_SPECIFIED = 2
ORDER_TIME_SPECIFIED_DAY = 3
#: SYMBOL_EXPIRATION_* flags of symbol_info().expiration_mode: which ORDER_TIME_* it takes.
SYMBOL_EXPIRATION_GTC = 1
SYMBOL_EXPIRATION_DAY = 2
SYMBOL_EXPIRATION_SPECIFIED = 4
SYMBOL_EXPIRATION_SPECIFIED_DAY = 8

ORDER_STATE_PLACED = 1
ORDER_STATE_CANCELED = 2
ORDER_STATE_FILLED = 4
ORDER_STATE_REJECTED = 5
ORDER_STATE_EXPIRED = 6

POSITION_TYPE_BUY = 0
POSITION_TYPE_SELL = 1

DEAL_TYPE_BUY = 0
DEAL_TYPE_SELL = 1
DEAL_TYPE_BALANCE = 2
DEAL_ENTRY_IN = 0
DEAL_ENTRY_OUT = 1
DEAL_ENTRY_INOUT = 2
DEAL_ENTRY_OUT_BY = 3

REASON_CLIENT = 0
REASON_EXPERT = 3
REASON_SL = 4
REASON_TP = 5
REASON_SO = 6

SYMBOL_TRADE_MODE_DISABLED = 0
SYMBOL_TRADE_MODE_FULL = 4
SYMBOL_FILLING_FOK = 1
SYMBOL_FILLING_IOC = 2
SYMBOL_TRADE_EXECUTION_INSTANT = 1

ACCOUNT_TRADE_MODE_DEMO = 0
ACCOUNT_MARGIN_MODE_RETAIL_NETTING = 0
ACCOUNT_MARGIN_MODE_EXCHANGE = 1
ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2
ACCOUNT_STOPOUT_MODE_PERCENT = 0

# --- timeframes (TIMEFRAME_*) and copy_ticks flags (COPY_TICKS_*, TICK_FLAG_*) ------------
TIMEFRAME_M1 = 1
TIMEFRAME_M2 = 2
TIMEFRAME_M3 = 3
TIMEFRAME_M4 = 4
TIMEFRAME_M5 = 5
TIMEFRAME_M6 = 6
TIMEFRAME_M10 = 10
TIMEFRAME_M12 = 12
TIMEFRAME_M15 = 15
TIMEFRAME_M20 = 20
TIMEFRAME_M30 = 30
TIMEFRAME_H1 = 16385
TIMEFRAME_H2 = 16386
TIMEFRAME_H3 = 16387
TIMEFRAME_H4 = 16388
TIMEFRAME_H6 = 16390
TIMEFRAME_H8 = 16392
TIMEFRAME_H12 = 16396
TIMEFRAME_D1 = 16408
TIMEFRAME_W1 = 32769
TIMEFRAME_MN1 = 49153
#: Each timeframe's name (MT5's, without TIMEFRAME_), value and length in seconds (MN1, a
#: calendar month: 31 days, its longest).
TIMEFRAMES: dict[str, tuple[int, int]] = {
    "M1": (TIMEFRAME_M1, 60),
    "M2": (TIMEFRAME_M2, 120),
    "M3": (TIMEFRAME_M3, 180),
    "M4": (TIMEFRAME_M4, 240),
    "M5": (TIMEFRAME_M5, 300),
    "M6": (TIMEFRAME_M6, 360),
    "M10": (TIMEFRAME_M10, 600),
    "M12": (TIMEFRAME_M12, 720),
    "M15": (TIMEFRAME_M15, 900),
    "M20": (TIMEFRAME_M20, 1200),
    "M30": (TIMEFRAME_M30, 1800),
    "H1": (TIMEFRAME_H1, 3600),
    "H2": (TIMEFRAME_H2, 7200),
    "H3": (TIMEFRAME_H3, 10800),
    "H4": (TIMEFRAME_H4, 14400),
    "H6": (TIMEFRAME_H6, 21600),
    "H8": (TIMEFRAME_H8, 28800),
    "H12": (TIMEFRAME_H12, 43200),
    "D1": (TIMEFRAME_D1, 86400),
    "W1": (TIMEFRAME_W1, 604800),
    "MN1": (TIMEFRAME_MN1, 31 * 86400),
}
COPY_TICKS_ALL = -1
COPY_TICKS_INFO = 1
COPY_TICKS_TRADE = 2
TICK_FLAG_BID = 2
TICK_FLAG_ASK = 4
TICK_FLAG_LAST = 8
TICK_FLAG_VOLUME = 16
TICK_FLAG_BUY = 32
TICK_FLAG_SELL = 64

# --- trade server return codes (MqlTradeResult.retcode) -----------------------------
TRADE_RETCODES: dict[int, str] = {
    0: "Done (check passed)",
    10004: "Requote",
    10006: "Request rejected",
    10007: "Request canceled by trader",
    10008: "Order placed",
    10009: "Request completed",
    10010: "Only part of the request was completed",
    10011: "Request processing error",
    10012: "Request canceled by timeout",
    10013: "Invalid request",
    10014: "Invalid volume in the request",
    10015: "Invalid price in the request",
    10016: "Invalid stops in the request",
    10017: "Trade is disabled",
    10018: "Market is closed",
    10019: "There is not enough money to complete the request",
    10020: "Prices changed",
    10021: "There are no quotes to process the request",
    10022: "Invalid order expiration date in the request",
    10023: "Order state changed",
    10024: "Too frequent requests",
    10025: "No changes in request",
    10026: "Autotrading disabled by server",
    10027: "Autotrading disabled by client terminal",
    10028: "Request locked for processing",
    10029: "Order or position frozen",
    10030: "Invalid order filling type",
    10031: "No connection with the trade server",
    10033: "The number of pending orders has reached the limit",
    10034: "The volume of orders and positions for the symbol has reached the limit",
    10035: "Incorrect or prohibited order type",
    10036: "Position with the specified POSITION_IDENTIFIER has already been closed",
    10038: "A close volume exceeds the current position volume",
}
TRADE_RETCODE_CHECK_OK = 0
TRADE_RETCODE_REQUOTE = 10004
TRADE_RETCODE_REJECT = 10006
TRADE_RETCODE_PLACED = 10008
TRADE_RETCODE_DONE = 10009
TRADE_RETCODE_DONE_PARTIAL = 10010
TRADE_RETCODE_ERROR = 10011
TRADE_RETCODE_TIMEOUT = 10012
TRADE_RETCODE_INVALID = 10013
TRADE_RETCODE_INVALID_VOLUME = 10014
TRADE_RETCODE_INVALID_PRICE = 10015
TRADE_RETCODE_INVALID_STOPS = 10016
TRADE_RETCODE_TRADE_DISABLED = 10017
TRADE_RETCODE_MARKET_CLOSED = 10018
TRADE_RETCODE_NO_MONEY = 10019
TRADE_RETCODE_PRICE_CHANGED = 10020
TRADE_RETCODE_PRICE_OFF = 10021
TRADE_RETCODE_TOO_MANY_REQUESTS = 10024
TRADE_RETCODE_INVALID_EXPIRATION = 10022
TRADE_RETCODE_INVALID_ORDER = 10035
TRADE_RETCODE_NO_CHANGES = 10025
TRADE_RETCODE_SERVER_DISABLES_AT = 10026
TRADE_RETCODE_CLIENT_DISABLES_AT = 10027
TRADE_RETCODE_INVALID_FILL = 10030
TRADE_RETCODE_CONNECTION = 10031
TRADE_RETCODE_POSITION_CLOSED = 10036
TRADE_RETCODE_INVALID_CLOSE_VOLUME = 10038

SUCCESS_RETCODES = frozenset({TRADE_RETCODE_PLACED, TRADE_RETCODE_DONE, TRADE_RETCODE_DONE_PARTIAL})


@runtime_checkable
class MT5Backend(Protocol):
    """The subset of the ``MetaTrader5`` module the service calls, with its signatures."""

    def initialize(self, path: str | None = None, **kwargs: Any) -> bool: ...
    def login(self, login: int, password: str | None = None, server: str | None = None, timeout: int | None = None) -> bool: ...
    def shutdown(self) -> None: ...
    def last_error(self) -> tuple[int, str]: ...
    def terminal_info(self) -> Any: ...
    def account_info(self) -> Any: ...
    def positions_get(self, **kwargs: Any) -> Any: ...
    def orders_get(self, **kwargs: Any) -> Any: ...
    def history_deals_get(self, *args: Any, **kwargs: Any) -> Any: ...
    def history_orders_get(self, *args: Any, **kwargs: Any) -> Any: ...
    def symbols_total(self) -> Any: ...
    def symbols_get(self, group: str | None = None) -> Any: ...
    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> Any: ...
    def copy_rates_range(self, symbol: str, timeframe: int, date_from: Any, date_to: Any) -> Any: ...
    def copy_ticks_from(self, symbol: str, date_from: Any, count: int, flags: int) -> Any: ...
    def symbol_info(self, symbol: str) -> Any: ...
    def symbol_info_tick(self, symbol: str) -> Any: ...
    def symbol_select(self, symbol: str, enable: bool = True) -> bool: ...
    def order_check(self, request: dict[str, Any]) -> Any: ...
    def order_send(self, request: dict[str, Any]) -> Any: ...


def to_plain(value: Any) -> Any:
    """Turn MT5 result objects (named tuples, tuples of them, numpy structured arrays of bars
    and ticks) into dicts and lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    names = getattr(getattr(value, "dtype", None), "names", None)
    if names:  # copy_rates_*/copy_ticks_*: a numpy structured array; tolist() gives builtins
        return [dict(zip(names, row, strict=True)) for row in value.tolist()]
    asdict = getattr(value, "_asdict", None)
    if callable(asdict):
        return {str(k): to_plain(v) for k, v in asdict().items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def retcode_text(retcode: int) -> str:
    """MT5's description of a trade server return code."""
    return TRADE_RETCODES.get(retcode, f"trade server return code {retcode}")
