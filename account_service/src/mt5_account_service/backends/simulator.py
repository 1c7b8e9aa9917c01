"""SimulatedTerminal: a paper-trading STAND-IN for the MetaTrader 5 terminal.

This is not MetaTrader 5. It answers the ``MetaTrader5`` module's functions with the same
names, argument conventions, result shapes (named tuples whose class and field names are
MT5's) and trade server return codes, so that the service, its tests, the demo farm and CI
can run without a broker, a terminal or Windows.

What it models
  * Prices: a deterministic function of (symbol, time): the same symbol at the same
    simulated instant always has the same bid/ask. Mid price = base x (1 + a sum of three
    sines whose phases come from the symbol name); bid/ask = mid -/+ half a fixed spread.
  * Symbols: EURUSD, GBPUSD, USDJPY, XAUUSD (forex hours: closed Friday 21:00 UTC to Sunday
    21:00 UTC) and BTCUSD (open every day), with digits, point, contract size, volume
    min/max/step, stops level and filling flags.
  * Account: USD, hedging, leverage (default 1:100), balance/equity/margin/free margin/margin
    level; P/L converted to USD at the current mid rates; swap-free, commission-free.
  * Trading: market orders (instant execution with deviation/requote), pending limit and stop
    orders that trigger, stop-limit orders, expiration (GTC, day, specified), close-by,
    SL/TP that close positions, partial closes, SL/TP and pending order
    modification, cancellation, stop-out at 50 % margin level, deals for every fill, and MT5's
    retcodes for the failures (10014 volume, 10015 price, 10016 stops, 10018 market closed,
    10019 no money, 10030 filling, 10036 position closed, 10038 close volume, ...).
  * Price history: ticks and bars derived from the price function (sim_history.py says how).

What it does not model
  * Order book, ticks between calls: pending orders, SL/TP and stop-out are
    checked whenever the terminal is called, at that instant's price; a price that crosses a
    level and comes back between two calls does not trigger. Fills are at the current
    bid/ask (no slippage, no gaps, no partial fills).
  * Swaps, commissions, fees, dividends,
    freeze levels, hedged-margin reduction (margins of opposite positions simply add up),
    market_book.
  * A broker's network: no latency unless you serve it over RPyC (``mt5-account-service
    simulator-rpyc``); ``login`` checks a password only when TerminalOptions sets one.

What it keeps
  * Given a ``state_dir`` (the service's STATE_DIR), each login's account lives in
    ``simulator-<login>.json`` there: balance, positions, pending and historical orders,
    deals, ticket counters (issue 12, fault 13). It is written atomically after every change
    (a trade, a trigger) and read at the login, so a restarted terminal holds the same
    positions and issues tickets past the old ones. See :meth:`SimulatedTerminal._bind`.
    Without a ``state_dir`` (unit tests) the account lives in memory only.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import re
import threading
import time
import zlib
from collections import namedtuple
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from . import base as c
from .sim_history import (
    TIMEFRAME_SECONDS,
    PriceHistory,
    bar_index,
    bar_time,
    numpy,
)

log = logging.getLogger(__name__)

#: The layout of ``simulator-<login>.json``; a file of another version is not loaded.
STATE_VERSION = 1
#: Seconds copy_ticks_from looks past its date_from for ticks (a year; never past now).
_TICKS_LOOK_AHEAD = 366 * 86400
#: Bars built at once, and how many such blocks of finished bars a terminal keeps
#: (_BAR_CACHE x _BAR_BLOCK x 52 bytes: 3.4 MB at most).
_BAR_BLOCK = 256
_BAR_CACHE = 256
#: The first tickets of an account kept in memory only (deterministic for unit tests).
FIRST_ORDER_TICKET, FIRST_DEAL_TICKET = 1_000_001, 5_000_001

AccountInfo = namedtuple(
    "AccountInfo",
    [
        "login",
        "trade_mode",
        "leverage",
        "limit_orders",
        "margin_so_mode",
        "trade_allowed",
        "trade_expert",
        "margin_mode",
        "currency_digits",
        "fifo_close",
        "balance",
        "credit",
        "profit",
        "equity",
        "margin",
        "margin_free",
        "margin_level",
        "margin_so_call",
        "margin_so_so",
        "margin_initial",
        "margin_maintenance",
        "assets",
        "liabilities",
        "commission_blocked",
        "name",
        "server",
        "currency",
        "company",
    ],
)
TerminalInfo = namedtuple(
    "TerminalInfo",
    [
        "community_account",
        "community_connection",
        "connected",
        "dlls_allowed",
        "trade_allowed",
        "tradeapi_disabled",
        "email_enabled",
        "ftp_enabled",
        "notifications_enabled",
        "mqid",
        "build",
        "maxbars",
        "codepage",
        "ping_last",
        "community_balance",
        "retransmission",
        "company",
        "name",
        "language",
        "path",
        "data_path",
        "commondata_path",
    ],
)
TradePosition = namedtuple(
    "TradePosition",
    [
        "ticket",
        "time",
        "time_msc",
        "time_update",
        "time_update_msc",
        "type",
        "magic",
        "identifier",
        "reason",
        "volume",
        "price_open",
        "sl",
        "tp",
        "price_current",
        "swap",
        "profit",
        "symbol",
        "comment",
        "external_id",
    ],
)
TradeOrder = namedtuple(
    "TradeOrder",
    [
        "ticket",
        "time_setup",
        "time_setup_msc",
        "time_done",
        "time_done_msc",
        "time_expiration",
        "type",
        "type_time",
        "type_filling",
        "state",
        "magic",
        "position_id",
        "position_by_id",
        "reason",
        "volume_initial",
        "volume_current",
        "price_open",
        "sl",
        "tp",
        "price_current",
        "price_stoplimit",
        "symbol",
        "comment",
        "external_id",
    ],
)
TradeDeal = namedtuple(
    "TradeDeal",
    [
        "ticket",
        "order",
        "time",
        "time_msc",
        "type",
        "entry",
        "magic",
        "position_id",
        "reason",
        "volume",
        "price",
        "commission",
        "swap",
        "profit",
        "fee",
        "symbol",
        "comment",
        "external_id",
    ],
)
Tick = namedtuple("Tick", ["time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real"])
SymbolInfo = namedtuple(
    "SymbolInfo",
    [
        "custom",
        "select",
        "visible",
        "digits",
        "spread",
        "spread_float",
        "trade_stops_level",
        "trade_freeze_level",
        "trade_mode",
        "trade_exemode",
        "filling_mode",
        "order_mode",
        "time",
        "bid",
        "ask",
        "last",
        "point",
        "trade_tick_value",
        "trade_tick_size",
        "trade_contract_size",
        "volume_min",
        "volume_max",
        "volume_step",
        "volume_limit",
        "swap_long",
        "swap_short",
        "margin_initial",
        "margin_maintenance",
        "currency_base",
        "currency_profit",
        "currency_margin",
        "description",
        "path",
        "name",
        "expiration_mode",
    ],
)
TradeRequest = namedtuple(
    "TradeRequest",
    [
        "action",
        "magic",
        "order",
        "symbol",
        "volume",
        "price",
        "stoplimit",
        "sl",
        "tp",
        "deviation",
        "type",
        "type_filling",
        "type_time",
        "expiration",
        "comment",
        "position",
        "position_by",
    ],
)
OrderCheckResult = namedtuple(
    "OrderCheckResult",
    [
        "retcode",
        "balance",
        "equity",
        "profit",
        "margin",
        "margin_free",
        "margin_level",
        "comment",
        "request",
    ],
)
OrderSendResult = namedtuple(
    "OrderSendResult",
    [
        "retcode",
        "deal",
        "order",
        "volume",
        "price",
        "bid",
        "ask",
        "comment",
        "request_id",
        "retcode_external",
        "request",
    ],
)


@dataclass(frozen=True)
class SymbolSpec:
    """Contract specification of one simulated symbol."""

    name: str
    description: str
    base: float
    digits: int
    spread_points: int
    contract_size: float
    currency_base: str
    currency_profit: str
    currency_margin: str
    volume_min: float = 0.01
    volume_max: float = 100.0
    volume_step: float = 0.01
    stops_level: int = 10
    always_open: bool = False
    trade_mode: int = c.SYMBOL_TRADE_MODE_FULL
    filling_mode: int = c.SYMBOL_FILLING_FOK | c.SYMBOL_FILLING_IOC
    #: The price grid; 0 means the point. Index CFDs often quote in steps coarser than their
    #: digits (DE40: digits 1, tick 0.5), and the server refuses prices off the grid.
    tick_size: float = 0.0
    #: A CFD's margin is on price x volume x contract (an index), a forex pair's on
    #: volume x contract in the margin currency.
    cfd: bool = False
    #: symbol_info().expiration_mode: the ORDER_TIME_* a pending order may have (all four).
    expiration_mode: int = (
        c.SYMBOL_EXPIRATION_GTC | c.SYMBOL_EXPIRATION_DAY | c.SYMBOL_EXPIRATION_SPECIFIED | c.SYMBOL_EXPIRATION_SPECIFIED_DAY
    )

    @property
    def point(self) -> float:
        return 10.0**-self.digits

    @property
    def tick(self) -> float:
        return self.tick_size or self.point


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec("EURUSD", "Euro vs US Dollar", 1.08500, 5, 12, 100_000, "EUR", "USD", "EUR"),
    SymbolSpec("GBPUSD", "Pound Sterling vs US Dollar", 1.26500, 5, 15, 100_000, "GBP", "USD", "GBP"),
    SymbolSpec("USDJPY", "US Dollar vs Japanese Yen", 151.500, 3, 14, 100_000, "USD", "JPY", "USD"),
    SymbolSpec("XAUUSD", "Gold vs US Dollar", 2350.00, 2, 30, 100, "XAU", "USD", "XAU", volume_max=50.0, stops_level=50),
    SymbolSpec(
        "BTCUSD", "Bitcoin vs US Dollar", 65000.00, 2, 1500, 1, "BTC", "USD", "BTC", volume_max=10.0, stops_level=100, always_open=True
    ),
    # Names and grids as brokers have them (issue 12, faults 1 and 4).
    SymbolSpec(
        "DE40", "Germany 40 Index", 18000.0, 1, 20, 1, "EUR", "EUR", "EUR", volume_min=0.1, volume_step=0.1, tick_size=0.5, cfd=True
    ),
    SymbolSpec("S&P500", "US 500 Index", 5200.00, 2, 50, 1, "USD", "USD", "USD", volume_min=0.1, volume_step=0.1, tick_size=0.25, cfd=True),
    SymbolSpec(
        "Volatility 75 (1s) Index",
        "Synthetic index, 75 % volatility, a tick every second",
        400_000.00,
        2,
        3000,
        1,
        "USD",
        "USD",
        "USD",
        volume_min=0.001,
        volume_step=0.001,
        stops_level=0,
        always_open=True,
        cfd=True,
    ),
)

#: (relative amplitude, period in seconds) of the three sines of every price path.
_WAVES = ((0.0040, 3600.0), (0.0008, 300.0), (0.00015, 11.0))


def deterministic_mid(spec: SymbolSpec, t: float) -> float:
    """The simulated mid price of ``spec`` at epoch second ``t``: same inputs, same price."""
    seed = zlib.crc32(spec.name.encode())
    offset = 0.0
    for i, (amplitude, period) in enumerate(_WAVES):
        phase = ((seed >> (8 * i)) & 0xFF) / 256.0 * 2.0 * math.pi
        offset += amplitude * math.sin(2.0 * math.pi * t / period + phase)
    return spec.base * (1.0 + offset)


def deterministic_mid_many(spec: SymbolSpec, t: Any) -> Any:
    """:func:`deterministic_mid` at many instants at once (a numpy array of epoch seconds)."""
    np = numpy()
    seed = zlib.crc32(spec.name.encode())
    offset = np.zeros(len(t), dtype=np.float64)
    for i, (amplitude, period) in enumerate(_WAVES):
        phase = ((seed >> (8 * i)) & 0xFF) / 256.0 * 2.0 * math.pi
        offset += amplitude * np.sin(2.0 * math.pi * t / period + phase)
    return spec.base * (1.0 + offset)


def forex_market_open_many(t: Any) -> Any:
    """:func:`forex_market_open` at many instants at once (numpy epoch seconds)."""
    seconds = numpy().asarray(t, dtype="int64")
    weekday = (seconds // 86400 + 3) % 7  # 1970-01-01 was a Thursday; Monday == 0
    hour = seconds % 86400 // 3600
    return ~((weekday == 5) | ((weekday == 4) & (hour >= 21)) | ((weekday == 6) & (hour < 21)))


def forex_market_open(t: float) -> bool:
    """Forex hours: closed from Friday 21:00 UTC until Sunday 21:00 UTC."""
    moment = datetime.fromtimestamp(t, tz=UTC)
    weekday, hour = moment.weekday(), moment.hour  # Monday == 0
    if weekday == 5:
        return False
    if weekday == 4 and hour >= 21:
        return False
    if weekday == 6 and hour < 21:
        return False
    return True


class ManualClock:
    """A clock the caller moves by hand (for deterministic tests of triggers)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class _Position:
    ticket: int
    symbol: str
    type: int
    volume: float
    price_open: float
    sl: float
    tp: float
    magic: int
    comment: str
    time: float
    time_update: float
    reason: int
    #: POSITION_IDENTIFIER: the ticket of the order that opened it; it outlives a change of
    #: the position's ticket (a reversal on a netting account).
    identifier: int = 0

    def __post_init__(self) -> None:
        self.identifier = self.identifier or self.ticket


@dataclass
class _Order:
    ticket: int
    symbol: str
    type: int
    volume: float
    price_open: float
    sl: float
    tp: float
    magic: int
    comment: str
    time_setup: float
    type_filling: int
    state: int = c.ORDER_STATE_PLACED
    time_done: float = 0.0
    position_id: int = 0
    reason: int = c.REASON_CLIENT
    #: ORDER_TIME_* and, for SPECIFIED(_DAY) and DAY, when it expires (UTC epoch; 0: never).
    type_time: int = c.ORDER_TIME_GTC
    expiration: float = 0.0
    #: A stop-limit order's limit price, placed as a limit order when the stop triggers.
    price_stoplimit: float = 0.0
    #: ORDER_POSITION_BY_ID: a close-by order's opposite position.
    position_by: int = 0


@dataclass
class _Account:
    login: int = 0
    server: str = "MT5Farm-Simulator"
    name: str = "Simulated account"
    balance: float = 10_000.0
    leverage: int = 100
    margin_so_call: float = 100.0
    margin_so_so: float = 50.0


@dataclass
class _State:
    positions: dict[int, _Position] = field(default_factory=dict)
    orders: dict[int, _Order] = field(default_factory=dict)
    history_orders: list[_Order] = field(default_factory=list)
    deals: list[Any] = field(default_factory=list)


def state_path(state_dir: Path, login: int) -> Path:
    """Where the simulated account of ``login`` is kept in ``state_dir``."""
    return state_dir / f"simulator-{login}.json"


def ticket_floor() -> int:
    """The first ticket of a fresh account that is kept on disk: the wall clock in
    milliseconds. If an earlier state of the account was lost (never kept, deleted,
    unreadable), it issued its tickets at far fewer than one per millisecond since its own
    fresh start, so every one of them lies below this floor: a lost state never makes the
    terminal hand out a ticket it already gave (the recorder keys deals by ticket)."""
    return int(time.time() * 1000)


_TICKET_FIELDS = re.compile(rb'"(?:ticket|order|identifier|position_id|next_order|next_deal)"\s*:\s*(\d{1,19})')


def tickets_in(raw: bytes) -> int:
    """The largest ticket written in ``raw`` (an unreadable state file), 0 when none is legible."""
    return max((int(found) for found in _TICKET_FIELDS.findall(raw)), default=0)


def _parse_state(data: Any, login: int) -> tuple[_Account, _State, int, int]:
    """(account, state, next order ticket, next deal ticket) from a state file's JSON.

    Raises ValueError when it is not a version-STATE_VERSION state of ``login`` (KeyError or
    TypeError when a record is malformed). The counters come out past every ticket in the
    file, whatever the file says they are."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("version") != STATE_VERSION:
        raise ValueError(f"state version {data.get('version')!r}, this simulator reads version {STATE_VERSION}")
    if data.get("login") != login:
        raise ValueError(f"it is the state of login {data.get('login')!r}, not of {login}")
    account = _Account(**data["account"])
    positions = [_Position(**row) for row in data["positions"]]
    orders = [_Order(**row) for row in data["orders"]]
    history = [_Order(**row) for row in data["history_orders"]]
    deals = [TradeDeal(**row) for row in data["deals"]]
    state = _State({p.ticket: p for p in positions}, {o.ticket: o for o in orders}, history, deals)
    order_tickets = [p.ticket for p in positions] + [p.identifier for p in positions] + [o.ticket for o in orders + history]
    order_tickets += [d.order for d in deals]
    next_order = max([int(data["next_order"]), *(t + 1 for t in order_tickets)])
    next_deal = max([int(data["next_deal"]), *(d.ticket + 1 for d in deals)])
    return account, state, next_order, next_deal


class _AppendOnlyJson:
    """The JSON array of an append-only list (the deals, the order history), each item encoded
    once: the account is written after every trade, and re-encoding a long history each time
    cost ten times more than writing it (10,000 deals: ~140 ms against ~15 ms)."""

    def __init__(self, encode: Callable[[Any], dict[str, Any]]) -> None:
        self._encode = encode
        self._of: list[Any] | None = None
        self._parts: list[str] = []

    def text(self, items: list[Any]) -> str:
        if items is not self._of or len(self._parts) > len(items):  # another list: start again
            self._of, self._parts = items, []
        self._parts.extend(json.dumps(self._encode(item), separators=(",", ":")) for item in items[len(self._parts) :])
        return "[" + ",".join(self._parts) + "]"


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; Windows has no directory handles)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Reject(Exception):
    """A trade request refused with an MT5 retcode."""

    def __init__(self, retcode: int, comment: str | None = None, margin: float = 0.0) -> None:
        super().__init__(comment or c.retcode_text(retcode))
        self.retcode = retcode
        self.comment = comment or c.retcode_text(retcode)
        self.margin = margin


_BUY_TYPES = (c.ORDER_TYPE_BUY, c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_BUY_STOP, c.ORDER_TYPE_BUY_STOP_LIMIT)
_PENDING_TYPES = (
    c.ORDER_TYPE_BUY_LIMIT,
    c.ORDER_TYPE_SELL_LIMIT,
    c.ORDER_TYPE_BUY_STOP,
    c.ORDER_TYPE_SELL_STOP,
    c.ORDER_TYPE_BUY_STOP_LIMIT,
    c.ORDER_TYPE_SELL_STOP_LIMIT,
)
_STOP_LIMIT_TYPES = (c.ORDER_TYPE_BUY_STOP_LIMIT, c.ORDER_TYPE_SELL_STOP_LIMIT)
#: A stop-limit triggers as its stop would, and becomes its limit.
_STOP_OF = {c.ORDER_TYPE_BUY_STOP_LIMIT: c.ORDER_TYPE_BUY_STOP, c.ORDER_TYPE_SELL_STOP_LIMIT: c.ORDER_TYPE_SELL_STOP}
_LIMIT_OF = {c.ORDER_TYPE_BUY_STOP_LIMIT: c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_SELL_STOP_LIMIT: c.ORDER_TYPE_SELL_LIMIT}


#: Comments a terminal takes: it refuses longer ones and these characters with last_error
#: (-2, 'Invalid "comment" argument') from order_check/order_send (issue 12, fault 2: public
#: reports of the MetaTrader5 module; MqlTradeRequest itself allows 31 characters).
TERMINAL_COMMENT_MAX = 28
TERMINAL_COMMENT_REFUSED = frozenset("[]():=,")


@dataclass(frozen=True)
class TerminalOptions:
    """Where MT5 installations differ, the simulated terminal and broker can be set to the
    harder case (issue 12). The defaults are the demo's: hedging, any password, UTC."""

    margin_mode: int = c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
    #: The account's master password; None accepts any. Another one is refused like a broker
    #: refuses it: initialize/login False, last_error (-6, 'Terminal: Authorization failed').
    password: str | None = None
    #: The investor (read-only) password: the login works, reads work, and the account's
    #: trade_allowed is False, so every order gets 10027.
    investor_password: str | None = None
    #: Seconds the trade server's clock is ahead of UTC (7200: UTC+2). Every time the terminal
    #: reports (ticks, deals, positions, orders) is then server time, as MT5's are.
    server_time_offset: int = 0
    #: Symbols outside Market Watch at start: their tick is all zeros until symbol_select, and
    #: the first tick comes ``select_tick_delay`` wall-clock seconds after the select.
    hidden_symbols: frozenset[str] = frozenset()
    select_tick_delay: float = 0.0
    #: The trade servers in the terminal's server list (its config/servers.dat); None knows
    #: every name. A login to another server fails before any broker sees it:
    #: initialize/login False, last_error (-4, RES_E_NOT_FOUND) naming the server (our model:
    #: MT5 has no code of its own for it; see gateway.BackendUnknownServer).
    known_servers: frozenset[str] | None = None
    #: terminal_info().build: the terminal's build (a LiveUpdate changes it; issue 12, fault 9).
    build: int = 4000
    #: terminal_info().maxbars ("Max. bars in chart"): copy_rates_* give no bar older than
    #: this many bars back (MT5's default, 100000).
    max_bars: int = 100_000


class SimulatedTerminal:
    """A paper account behind the ``MetaTrader5`` module's interface (see the module doc).

    Thread-safe: every public function takes one lock, as the real module serialises calls
    to its terminal.
    """

    def __init__(
        self,
        *,
        balance: float = 10_000.0,
        leverage: int = 100,
        clock: Callable[[], float] = time.time,
        symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS,
        price_path: Callable[[SymbolSpec, float], float] = deterministic_mid,
        market_open: Callable[[float], bool] = forex_market_open,
        options: TerminalOptions = TerminalOptions(),
        state_dir: Path | str | None = None,
    ) -> None:
        """``state_dir``: where each login's account is kept across restarts (see the module
        doc, "What it keeps"); None keeps it in memory only."""
        self._options = options
        self._offset = int(options.server_time_offset)
        self._hidden = set(options.hidden_symbols)
        self._selected_at: dict[str, float] = {}
        #: terminal_info.trade_allowed (the AutoTrading button), terminal_info.tradeapi_disabled
        #: (Options > Expert Advisors > disable Python API trading), account_info.trade_expert
        #: (the broker allows automated trading); set_trading changes them.
        self._trading = {"trade_allowed": True, "tradeapi_disabled": False, "trade_expert": True}
        self._investor = False
        self._clock = clock
        self._symbols = {s.name: s for s in symbols}
        #: Finished bars by (symbol, timeframe, block): see _bar_range.
        self._bar_blocks: dict[tuple[str, int, int], Any] = {}
        self._price_path = price_path
        self._market_open = market_open
        self._lock = threading.RLock()
        self._initialized = False
        self._terminal_up = True
        self._last_error: tuple[int, str] = (c.RES_S_OK, "Success")
        self._request_id = 0
        self._initial = (float(balance), int(leverage))
        self._state_dir = Path(state_dir) if state_dir is not None else None
        #: The login whose file the account is (None: not bound yet, or kept in memory only).
        self._bound_login: int | None = None
        #: The account changed since it was last written.
        self._dirty = False
        self._save_failing = False
        self._deals_json = _AppendOnlyJson(lambda deal: deal._asdict())
        self._history_json = _AppendOnlyJson(asdict)
        self._account = _Account()
        self._state = _State()
        self._next_order, self._next_deal = FIRST_ORDER_TICKET, FIRST_DEAL_TICKET
        if self._state_dir is None:
            self._fresh_account(FIRST_ORDER_TICKET, FIRST_DEAL_TICKET)
        else:
            self._fresh_account(ticket_floor(), ticket_floor())

    # --- test and demo controls (not part of the MT5 interface) -----------------------
    def set_terminal_up(self, up: bool) -> None:
        """Simulate losing (False) or regaining (True) the terminal's connection."""
        with self._lock:
            self._terminal_up = up
            if not up:
                self._initialized = False

    def set_trading(self, **flags: bool) -> None:
        """Switch the terminal's and the broker's trade permissions: ``trade_allowed``
        (AutoTrading), ``tradeapi_disabled``, ``trade_expert``. Orders then get 10027/10026."""
        with self._lock:
            unknown = set(flags) - set(self._trading)
            if unknown:
                raise ValueError(f"unknown trading flags: {sorted(unknown)}")
            self._trading.update(flags)

    def set_price_path(self, path: Callable[[SymbolSpec, float], float]) -> None:
        with self._lock:
            self._price_path = path
            self._bar_blocks.clear()

    # --- connection -------------------------------------------------------------------
    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
        portable: bool = False,
    ) -> bool:
        with self._lock:
            if not self._terminal_up:
                return self._fail(c.RES_E_INTERNAL_FAIL_CONNECT, "IPC initialize failed, terminal not reachable", False)
            if login is not None:
                # The terminal starts either way, but initialize is False when the login fails.
                self._initialized = True
                ok = self._login(login, password, server)
                self._initialized = ok
                return ok
            self._initialized = True
            return self._ok(True)

    def login(self, login: int, password: str | None = None, server: str | None = None, timeout: int | None = None) -> bool:
        with self._lock:
            if not self._ready():
                return False
            return self._login(login, password, server)

    def _login(self, login: int, password: str | None, server: str | None) -> bool:
        if not isinstance(login, int) or login <= 0:
            return self._fail(c.RES_E_INVALID_PARAMS, "Invalid login", False)
        opts = self._options
        if server and opts.known_servers is not None and server not in opts.known_servers:
            return self._fail(c.RES_E_NOT_FOUND, f"Terminal: server '{server}' not found in the server list", False)
        if opts.password is not None and password not in (opts.password, opts.investor_password):
            return self._fail(c.RES_E_AUTH_FAILED, "Terminal: Authorization failed", False)
        self._investor = opts.investor_password is not None and password == opts.investor_password
        if self._state_dir is not None and login != self._bound_login:
            self._bind(login)
        self._account.login = login
        if server and server != self._account.server:
            self._account.server = server
            self._dirty = True
        self._persist()
        return self._ok(True)

    # --- keeping the account across restarts (issue 12, fault 13) ---------------------
    def _fresh_account(self, next_order: int, next_deal: int) -> None:
        """A new account: the starting balance as its one deal, no positions or orders."""
        balance, leverage = self._initial
        self._account = _Account(balance=balance, leverage=leverage)
        self._state = _State()
        self._next_order, self._next_deal = next_order, next_deal
        self._add_deal(
            symbol="",
            type_=c.DEAL_TYPE_BALANCE,
            entry=c.DEAL_ENTRY_IN,
            volume=0.0,
            price=0.0,
            profit=balance,
            order=0,
            position_id=0,
            magic=0,
            reason=c.REASON_CLIENT,
            comment="Initial deposit",
        )

    def _bind(self, login: int) -> None:
        """Make the account the one kept for ``login``: read its file when there is one; else
        keep the account as it is (the first login of this terminal) or start a fresh one
        (another login before). A file that cannot be read (corrupt, another version, another
        login's) is logged and moved aside, and the fresh account's tickets start past every
        ticket legible in it and past :func:`ticket_floor`, never at values already used."""
        assert self._state_dir is not None
        self._persist()  # the account of the login before, if its last write failed
        path = state_path(self._state_dir, login)
        first_login = self._bound_login is None
        self._bound_login = login
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if not first_login:
                self._fresh_account(max(ticket_floor(), self._next_order), max(ticket_floor(), self._next_deal))
            self._account.login = login
            self._dirty = True
            log.info(
                "simulated account %d starts fresh (no %s yet); next tickets: order %d, deal %d",
                login,
                path,
                self._next_order,
                self._next_deal,
            )
            return
        except OSError as exc:
            raw, error = b"", f"{type(exc).__name__}: {exc}"
        else:
            try:
                self._account, self._state, self._next_order, self._next_deal = _parse_state(json.loads(raw), login)
            except (ValueError, KeyError, TypeError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                log.info(
                    "simulated account %d read from %s: %d positions, %d orders, %d deals; next tickets: order %d, deal %d",
                    login,
                    path,
                    len(self._state.positions),
                    len(self._state.orders),
                    len(self._state.deals),
                    self._next_order,
                    self._next_deal,
                )
                self._dirty = False
                return
        aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            os.replace(path, aside)
            where = f"moved to {aside}"
        except OSError as move:
            where = f"and could not be moved aside ({move.strerror}): it will be overwritten"
        past = max(ticket_floor(), tickets_in(raw) + 1, self._next_order, self._next_deal)
        self._fresh_account(past, past)
        self._account.login = login
        self._dirty = True
        log.error(
            "simulated account %d: %s is unreadable (%s), %s; starting a fresh account with tickets from %d on (past every one it held)",
            login,
            path,
            error,
            where,
            past,
        )

    def _persist(self) -> None:
        """Write the account to its file if it changed (tmp file, fsync, os.replace: a crash
        leaves the old file or the new one, never half of one). A failed write is logged and
        retried at the next call; the terminal goes on trading. The whole account is written
        each time, its history included (each deal encoded once): a few milliseconds for a
        demo account's hundreds of deals, tens at 10,000; not made for millions."""
        if not self._dirty or self._state_dir is None or self._bound_login is None:
            return
        path = state_path(self._state_dir, self._bound_login)
        tmp = path.with_name(path.name + ".tmp")
        head = {
            "version": STATE_VERSION,
            "login": self._bound_login,
            "saved_at": time.time(),
            "next_order": self._next_order,
            "next_deal": self._next_deal,
            "account": asdict(self._account),
            "positions": [asdict(p) for p in self._state.positions.values()],
            "orders": [asdict(o) for o in self._state.orders.values()],
        }
        history, deals = self._history_json.text(self._state.history_orders), self._deals_json.text(self._state.deals)
        text = json.dumps(head, separators=(",", ":"))[:-1] + f',"history_orders":{history},"deals":{deals}}}'
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
            _fsync_directory(path.parent)
        except OSError as exc:
            if not self._save_failing:
                log.error("cannot write the simulated account to %s (%s): a restart now loses what changed since", path, exc)
            self._save_failing = True
            return
        if self._save_failing:
            log.info("the simulated account is written to %s again", path)
        self._save_failing = False
        self._dirty = False

    def shutdown(self) -> None:
        with self._lock:
            self._initialized = False
            self._ok(None)

    def last_error(self) -> tuple[int, str]:
        with self._lock:
            return self._last_error

    def version(self) -> tuple[int, int, str] | None:
        with self._lock:
            return self._ok((500, self._options.build, "01 Jan 2026")) if self._ready() else None

    # --- information --------------------------------------------------------------------
    def terminal_info(self) -> TerminalInfo | None:
        with self._lock:
            if not self._ready():
                return None
            return self._ok(
                TerminalInfo(
                    False,
                    False,
                    True,
                    False,
                    self._trading["trade_allowed"],
                    self._trading["tradeapi_disabled"],
                    False,
                    False,
                    False,
                    0,
                    self._options.build,
                    self._options.max_bars,
                    0,
                    0,
                    0.0,
                    0.0,
                    "MT5 Farm",
                    "MT5 Farm simulator (not MetaTrader 5)",
                    "English",
                    "",
                    "",
                    "",
                )
            )

    def account_info(self) -> AccountInfo | None:
        with self._lock:
            if not self._ready():
                return None
            now = self._tick_world()
            return self._ok(self._account_info(now))

    def positions_get(
        self, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...] | None:
        with self._lock:
            if not self._ready():
                return None
            now = self._tick_world()
            rows = [
                self._position_row(p, now)
                for p in self._state.positions.values()
                if (symbol is None or p.symbol == symbol) and (ticket is None or p.ticket == ticket)
            ]
            return self._ok(tuple(rows))

    def positions_total(self) -> int | None:
        with self._lock:
            return self._ok(len(self._state.positions)) if self._ready() else None

    def orders_get(self, symbol: str | None = None, group: str | None = None, ticket: int | None = None) -> tuple[TradeOrder, ...] | None:
        with self._lock:
            if not self._ready():
                return None
            now = self._tick_world()
            rows = [
                self._order_row(o, now)
                for o in self._state.orders.values()
                if (symbol is None or o.symbol == symbol) and (ticket is None or o.ticket == ticket)
            ]
            return self._ok(tuple(rows))

    def orders_total(self) -> int | None:
        with self._lock:
            return self._ok(len(self._state.orders)) if self._ready() else None

    def history_deals_get(
        self,
        date_from: Any = None,
        date_to: Any = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeDeal, ...] | None:
        """Deals: made by the order ``ticket`` (DEAL_ORDER), of ``position``, or done within
        the window (server clock, as MT5's HistorySelect); ``group`` filters by symbol."""
        with self._lock:
            if not self._ready():
                return None
            self._tick_world()
            # Deal times are stored on the server's clock already (_add_deal).
            deals = _history_select(
                self._state.deals, lambda d: (d.order, d.position_id, d.time, d.symbol), date_from, date_to, group, ticket, position
            )
            if deals is None:
                return self._fail(c.RES_E_INVALID_PARAMS, "Invalid arguments", None)
            return self._ok(tuple(deals))

    def history_orders_get(
        self,
        date_from: Any = None,
        date_to: Any = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeOrder, ...] | None:
        """Orders no longer pending (filled, canceled, rejected, expired): by ``ticket``, by
        ``position`` (the orders that opened, changed or closed it), or set up within the
        window (server clock, as MT5's HistorySelect); ``group`` filters by symbol."""
        with self._lock:
            if not self._ready():
                return None
            now = self._tick_world()
            offset = self._offset
            orders = _history_select(
                self._state.history_orders,
                lambda o: (o.ticket, o.position_id, o.time_setup + offset, o.symbol),
                date_from,
                date_to,
                group,
                ticket,
                position,
            )
            if orders is None:
                return self._fail(c.RES_E_INVALID_PARAMS, "Invalid arguments", None)
            return self._ok(tuple(self._order_row(o, now) for o in orders))

    def history_orders_total(self, date_from: Any, date_to: Any) -> int | None:
        found = self.history_orders_get(date_from, date_to)
        return None if found is None else len(found)

    def history_deals_total(self, date_from: Any, date_to: Any) -> int | None:
        found = self.history_deals_get(date_from, date_to)
        return None if found is None else len(found)

    # --- price history (sim_history: what is modelled) -------------------------------
    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> Any:
        """``count`` bars ending ``start_pos`` bars before the current one (0: the current
        bar included), oldest first; a numpy array with MT5's fields, None on error."""
        with self._lock:
            history = self._history_for(symbol, timeframe, count, start_pos)
            if history is None:
                return None
            seconds, mn1 = TIMEFRAME_SECONDS[timeframe], timeframe == c.TIMEFRAME_MN1
            wanted = min(start_pos + count, self._options.max_bars)
            bars = self._bars_back(history, symbol, timeframe, history.current_index(seconds, mn1), wanted)
            return self._ok(bars[: max(0, len(bars) - start_pos)])

    def copy_rates_from(self, symbol: str, timeframe: int, date_from: Any, count: int) -> Any:
        """The ``count`` bars opened at or before ``date_from`` (server clock), oldest first."""
        with self._lock:
            history = self._history_for(symbol, timeframe, count, 0)
            if history is None:
                return None
            seconds, mn1 = TIMEFRAME_SECONDS[timeframe], timeframe == c.TIMEFRAME_MN1
            last = min(bar_index(_epoch(date_from), seconds, mn1), history.current_index(seconds, mn1))
            return self._ok(self._bars_back(history, symbol, timeframe, last, count))

    def copy_rates_range(self, symbol: str, timeframe: int, date_from: Any, date_to: Any) -> Any:
        """The bars opened from ``date_from`` to ``date_to`` (server clock), oldest first."""
        with self._lock:
            history = self._history_for(symbol, timeframe, 1, 0)
            if history is None:
                return None
            seconds, mn1 = TIMEFRAME_SECONDS[timeframe], timeframe == c.TIMEFRAME_MN1
            lo, hi = _epoch(date_from), _epoch(date_to)
            first = bar_index(lo, seconds, mn1)
            first += bar_time(first, seconds, mn1) < lo
            current = history.current_index(seconds, mn1)
            first = max(first, current - self._options.max_bars + 1)
            return self._ok(self._bar_range(history, symbol, timeframe, first, min(bar_index(hi, seconds, mn1), current)))

    def copy_ticks_from(self, symbol: str, date_from: Any, count: int, flags: int) -> Any:
        """The first ``count`` ticks at or after ``date_from`` (server clock), oldest first."""
        with self._lock:
            history = self._history_for(symbol, c.TIMEFRAME_M1, count, 0, flags)
            if history is None:
                return None
            first = math.ceil(_epoch(date_from))
            return self._ok(history.ticks_between(first, first + _TICKS_LOOK_AHEAD, count, flags))

    def copy_ticks_range(self, symbol: str, date_from: Any, date_to: Any, flags: int) -> Any:
        """The ticks from ``date_from`` to ``date_to`` (server clock), oldest first."""
        with self._lock:
            history = self._history_for(symbol, c.TIMEFRAME_M1, 1, 0, flags)
            if history is None:
                return None
            return self._ok(history.ticks_between(math.ceil(_epoch(date_from)), math.floor(_epoch(date_to)), None, flags))

    def _history_for(self, symbol: str, timeframe: int, count: int, start_pos: int, flags: int = c.COPY_TICKS_ALL) -> PriceHistory | None:
        """The symbol's PriceHistory, or None after setting last_error as MT5 does: the
        terminal not ready, a symbol it does not know or that is not in Market Watch (our
        model: the call fails, -1 'Terminal: Call failed'; select it first), a timeframe,
        count, position or flags it does not take (-2 'Invalid params')."""
        if not self._ready():
            return None
        spec = self._symbols.get(symbol)
        if spec is None or symbol in self._hidden:
            return self._fail(c.RES_E_FAIL, "Terminal: Call failed", None)
        valid = (
            timeframe in TIMEFRAME_SECONDS
            and _is_int(count)
            and _is_int(start_pos)
            and count > 0
            and start_pos >= 0
            and flags in (c.COPY_TICKS_ALL, c.COPY_TICKS_INFO, c.COPY_TICKS_TRADE)
        )
        if not valid:
            return self._fail(c.RES_E_INVALID_PARAMS, "Invalid params", None)
        return PriceHistory(self._quotes_many(spec), self._open_many(spec), self._offset, spec.spread_points, self._clock())

    def _bars_back(self, history: PriceHistory, symbol: str, timeframe: int, last: int, count: int) -> Any:
        """The ``count`` newest bars numbered ``last`` or lower, oldest first; fewer when the
        terminal's history ends (max_bars periods of the timeframe back from now: the
        simulator counts periods, closed ones included, where MT5 counts bars)."""
        np = numpy()
        seconds, mn1 = TIMEFRAME_SECONDS[timeframe], timeframe == c.TIMEFRAME_MN1
        floor = max(0, history.current_index(seconds, mn1) - self._options.max_bars + 1)
        found: list[Any] = []
        have, top = 0, last
        while have < count and top >= floor:
            bottom = max(floor, (top // _BAR_BLOCK) * _BAR_BLOCK)
            bars = self._bar_range(history, symbol, timeframe, bottom, top)
            found.insert(0, bars)
            have += len(bars)
            top = bottom - 1
        out = np.concatenate(found) if found else history.bars(1, 0, seconds, mn1)
        return out[max(0, len(out) - count) :]

    def _bar_range(self, history: PriceHistory, symbol: str, timeframe: int, first: int, last: int) -> Any:
        """The bars numbered ``first`` to ``last``, built in blocks of _BAR_BLOCK; a block
        of finished bars is built once and kept (the history of a past instant never
        changes), the newest _BAR_CACHE blocks at most."""
        np = numpy()
        seconds, mn1 = TIMEFRAME_SECONDS[timeframe], timeframe == c.TIMEFRAME_MN1
        current = history.current_index(seconds, mn1)
        last = min(last, current)
        parts: list[Any] = []
        for block in range(first // _BAR_BLOCK, last // _BAR_BLOCK + 1):
            low, high = block * _BAR_BLOCK, block * _BAR_BLOCK + _BAR_BLOCK - 1
            if high < current:
                key = (symbol, timeframe, block)
                bars = self._bar_blocks.get(key)
                if bars is None:
                    bars = self._bar_blocks[key] = history.bars(low, high, seconds, mn1)
                    while len(self._bar_blocks) > _BAR_CACHE:
                        self._bar_blocks.pop(next(iter(self._bar_blocks)))
            else:
                bars = history.bars(low, current, seconds, mn1)
            parts.append(bars)
        out = np.concatenate(parts) if parts else history.bars(1, 0, seconds, mn1)
        lo, hi = bar_time(first, seconds, mn1), bar_time(last, seconds, mn1)
        return out[(out["time"] >= lo) & (out["time"] <= hi)]

    def _quotes_many(self, spec: SymbolSpec) -> Callable[[Any], tuple[Any, Any]]:
        """The symbol's bid and ask at many UTC instants (numpy), as :meth:`_quote` gives them."""
        np = numpy()
        path = self._price_path

        def quotes(t: Any) -> tuple[Any, Any]:
            if path is deterministic_mid:
                mid = deterministic_mid_many(spec, t)
            else:
                mid = np.fromiter((path(spec, float(x)) for x in t), dtype=np.float64, count=len(t))
            half = spec.spread_points * spec.point / 2.0
            bid = np.round(np.round((mid - half) / spec.tick) * spec.tick, spec.digits)
            ask = np.round(bid + spec.spread_points * spec.point, spec.digits)
            return bid, ask

        return quotes

    def _open_many(self, spec: SymbolSpec) -> Callable[[Any], Any]:
        """Whether the symbol's market is open at many UTC instants (numpy): the forex hours
        computed at once, any other session function asked once per distinct minute."""
        np = numpy()
        market_open = self._market_open

        def is_open(t: Any) -> Any:
            if spec.always_open:
                return np.ones(len(t), dtype=bool)
            if market_open is forex_market_open:
                return forex_market_open_many(t)
            minutes, where = np.unique(np.asarray(t, dtype=np.int64) // 60, return_inverse=True)
            answers = np.fromiter((market_open(float(m) * 60) for m in minutes), dtype=bool, count=len(minutes))
            return answers[where]

        return is_open

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        with self._lock:
            if not self._ready():
                return None
            spec = self._symbols.get(symbol)
            if spec is None:
                return self._fail(c.RES_E_NOT_FOUND, "Terminal: Not found", None)
            now = self._last_quote_time(spec, self._clock())
            bid, ask = self._quote(spec, now) if self._has_tick(spec.name) else (0.0, 0.0)
            selected = spec.name not in self._hidden
            return self._ok(
                SymbolInfo(
                    False,
                    selected,
                    selected,
                    spec.digits,
                    spec.spread_points,
                    False,
                    spec.stops_level,
                    0,
                    spec.trade_mode,
                    c.SYMBOL_TRADE_EXECUTION_INSTANT,
                    spec.filling_mode,
                    127,
                    int(now) + self._offset,
                    bid,
                    ask,
                    0.0,
                    spec.point,
                    spec.contract_size * spec.tick * self._to_usd(spec.currency_profit, now),
                    spec.tick,
                    spec.contract_size,
                    spec.volume_min,
                    spec.volume_max,
                    spec.volume_step,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    spec.currency_base,
                    spec.currency_profit,
                    spec.currency_margin,
                    spec.description,
                    f"Simulator\\{spec.name}",
                    spec.name,
                    spec.expiration_mode,
                )
            )

    def symbols_total(self) -> int | None:
        with self._lock:
            return self._ok(len(self._symbols)) if self._ready() else None

    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        """Every symbol's info, or those matching ``group`` (MT5's syntax: comma-separated
        patterns with ``*``, ``!`` before a pattern excludes; e.g. ``"*USD*,!EUR*"``)."""
        with self._lock:
            if not self._ready():
                return None
            names = [n for n in self._symbols if group is None or _in_group(n, group)]
        infos = [self.symbol_info(n) for n in names]
        return self._ok(tuple(i for i in infos if i is not None))

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        with self._lock:
            if not self._ready():
                return None
            spec = self._symbols.get(symbol)
            if spec is None:
                return self._fail(c.RES_E_NOT_FOUND, "Terminal: Not found", None)
            if not self._has_tick(symbol):
                return self._ok(Tick(0, 0.0, 0.0, 0.0, 0, 0, 0, 0.0))
            now = self._last_quote_time(spec, self._clock())
            bid, ask = self._quote(spec, now)
            server = now + self._offset
            return self._ok(Tick(int(server), bid, ask, 0.0, 0, int(server * 1000), 6, 0.0))

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        with self._lock:
            if not self._ready():
                return False
            if symbol not in self._symbols:
                return self._fail(c.RES_E_NOT_FOUND, "Terminal: Not found", False)
            if enable and symbol in self._hidden:
                self._hidden.discard(symbol)
                self._selected_at[symbol] = time.monotonic()
            elif not enable and symbol not in self._hidden:
                # MT5 keeps a symbol with an open position or order in Market Watch.
                busy = any(p.symbol == symbol for p in self._state.positions.values()) or any(
                    o.symbol == symbol for o in self._state.orders.values()
                )
                if busy:
                    return self._fail(c.RES_E_FAIL, "Terminal: Call failed", False)
                self._hidden.add(symbol)
                self._selected_at.pop(symbol, None)
            return self._ok(True)

    def _has_tick(self, symbol: str) -> bool:
        """False for a symbol outside Market Watch, and for select_tick_delay after its select."""
        if symbol in self._hidden:
            return False
        selected = self._selected_at.get(symbol)
        return selected is None or time.monotonic() - selected >= self._options.select_tick_delay

    # --- trading --------------------------------------------------------------------------
    def order_check(self, request: dict[str, Any]) -> OrderCheckResult | None:
        with self._lock:
            if not self._ready():
                return None
            if not _comment_ok(request.get("comment", "")):
                return self._fail(c.RES_E_INVALID_PARAMS, 'Invalid "comment" argument', None)
            now = self._tick_world()
            req = _request_tuple(request)
            info = self._account_info(now)
            try:
                margin = self._validate(req, now)
                retcode, comment = c.TRADE_RETCODE_CHECK_OK, "Done"
            except _Reject as rej:
                margin = rej.margin
                retcode, comment = rej.retcode, rej.comment
            # MqlTradeCheckResult: margin needed by this request; free margin and margin
            # level as they would be after it.
            total = info.margin + margin
            level = round(info.equity / total * 100.0, 2) if total else 0.0
            return self._ok(
                OrderCheckResult(
                    retcode, info.balance, info.equity, info.profit, round(margin, 2), round(info.equity - total, 2), level, comment, req
                )
            )

    def order_send(self, request: dict[str, Any]) -> OrderSendResult | None:
        with self._lock:
            if not self._ready():
                return None
            if not _comment_ok(request.get("comment", "")):
                return self._fail(c.RES_E_INVALID_PARAMS, 'Invalid "comment" argument', None)
            now = self._tick_world()
            req = _request_tuple(request)
            self._request_id += 1
            spec = self._symbols.get(req.symbol)
            bid, ask = self._quote(spec, now) if spec else (0.0, 0.0)
            try:
                self._validate(req, now)
                deal, order, volume, price = self._execute(req, now)
            except _Reject as rej:
                return self._ok(OrderSendResult(rej.retcode, 0, 0, 0.0, 0.0, bid, ask, rej.comment, self._request_id, 0, req))
            self._persist()
            retcode = c.TRADE_RETCODE_DONE
            return self._ok(OrderSendResult(retcode, deal, order, volume, price, bid, ask, "Request executed", self._request_id, 0, req))

    # --- internals: bookkeeping ----------------------------------------------------------
    def _ready(self) -> bool:
        if not self._terminal_up or not self._initialized:
            self._last_error = (c.RES_E_INTERNAL_FAIL_CONNECT, "IPC send failed")
            return False
        return True

    def _ok(self, value: Any) -> Any:
        self._last_error = (c.RES_S_OK, "Success")
        return value

    def _fail(self, code: int, message: str, value: Any) -> Any:
        self._last_error = (code, message)
        return value

    def _last_quote_time(self, spec: SymbolSpec, t: float) -> float:
        """``t`` while the symbol's market is open, else the last minute it was (as MT5: a
        closed market's tick is its last one, e.g. Friday's close all weekend)."""
        if spec.always_open or self._market_open(t):
            return t
        back = t - t % 3600
        for _ in range(24 * 7):
            if self._market_open(back - 1):
                break
            back -= 3600
        else:
            return t  # never open in a week: a market model without sessions
        last = back - 1  # open; the close is within the next hour (or before t)
        while last + 60 <= t and self._market_open(last + 60):
            last += 60
        return last

    def _quote(self, spec: SymbolSpec, t: float) -> tuple[float, float]:
        mid = self._price_path(spec, t)
        half = spec.spread_points * spec.point / 2.0
        bid = round(round((mid - half) / spec.tick) * spec.tick, spec.digits)
        ask = round(bid + spec.spread_points * spec.point, spec.digits)
        return bid, ask

    def _mid(self, symbol: str, t: float) -> float:
        return self._price_path(self._symbols[symbol], t)

    def _to_usd(self, currency: str, t: float) -> float:
        """Value of one unit of ``currency`` in USD at ``t`` (mid rates)."""
        if currency == "USD":
            return 1.0
        if currency == "JPY":
            return 1.0 / self._mid("USDJPY", t)
        return self._mid(f"{currency}USD", t)

    def _margin_for(self, spec: SymbolSpec, volume: float, t: float) -> float:
        if spec.cfd:
            notional = volume * spec.contract_size * self._price_path(spec, t) * self._to_usd(spec.currency_profit, t)
        else:
            notional = volume * spec.contract_size * self._to_usd(spec.currency_margin, t)
        return notional / self._account.leverage

    def _profit(self, p: _Position, t: float) -> float:
        spec = self._symbols[p.symbol]
        bid, ask = self._quote(spec, t)
        close = bid if p.type == c.POSITION_TYPE_BUY else ask
        sign = 1.0 if p.type == c.POSITION_TYPE_BUY else -1.0
        raw = sign * (close - p.price_open) * p.volume * spec.contract_size
        return round(raw * self._to_usd(spec.currency_profit, t), 2)

    def _account_info(self, t: float) -> AccountInfo:
        a = self._account
        profit = round(float(sum(self._profit(p, t) for p in self._state.positions.values())), 2)
        margin = round(float(sum(self._margin_for(self._symbols[p.symbol], p.volume, t) for p in self._state.positions.values())), 2)
        equity = round(a.balance + profit, 2)
        level = round(equity / margin * 100.0, 2) if margin else 0.0
        return AccountInfo(
            a.login,
            c.ACCOUNT_TRADE_MODE_DEMO,
            a.leverage,
            200,
            c.ACCOUNT_STOPOUT_MODE_PERCENT,
            not self._investor,
            self._trading["trade_expert"],
            self._options.margin_mode,
            2,
            False,
            round(a.balance, 2),
            0.0,
            profit,
            equity,
            margin,
            round(equity - margin, 2),
            level,
            a.margin_so_call,
            a.margin_so_so,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            a.name,
            a.server,
            "USD",
            "MT5 Farm simulator",
        )

    def _position_row(self, p: _Position, t: float) -> TradePosition:
        bid, ask = self._quote(self._symbols[p.symbol], t)
        current = bid if p.type == c.POSITION_TYPE_BUY else ask
        opened, updated = p.time + self._offset, p.time_update + self._offset
        return TradePosition(
            p.ticket,
            int(opened),
            int(opened * 1000),
            int(updated),
            int(updated * 1000),
            p.type,
            p.magic,
            p.identifier,
            p.reason,
            p.volume,
            p.price_open,
            p.sl,
            p.tp,
            current,
            0.0,
            self._profit(p, t),
            p.symbol,
            p.comment,
            "",
        )

    def _order_row(self, o: _Order, t: float) -> TradeOrder:
        bid, ask = self._quote(self._symbols[o.symbol], t)
        current = ask if o.type in _BUY_TYPES else bid
        setup, done = o.time_setup + self._offset, (o.time_done + self._offset) if o.time_done else 0.0
        return TradeOrder(
            o.ticket,
            int(setup),
            int(setup * 1000),
            int(done),
            int(done * 1000),
            int(o.expiration + self._offset) if o.expiration else 0,
            o.type,
            o.type_time,
            o.type_filling,
            o.state,
            o.magic,
            o.position_id,
            o.position_by,
            o.reason,
            o.volume,
            o.volume,
            o.price_open,
            o.sl,
            o.tp,
            current,
            o.price_stoplimit,
            o.symbol,
            o.comment,
            "",
        )

    def _add_deal(
        self,
        *,
        symbol: str,
        type_: int,
        entry: int,
        volume: float,
        price: float,
        profit: float,
        order: int,
        position_id: int,
        magic: int,
        reason: int,
        comment: str,
        t: float | None = None,
    ) -> int:
        now = (self._clock() if t is None else t) + self._offset  # deal times are server time
        ticket = self._next_deal
        self._next_deal += 1
        self._dirty = True
        self._state.deals.append(
            TradeDeal(
                ticket,
                order,
                int(now),
                int(now * 1000),
                type_,
                entry,
                magic,
                position_id,
                reason,
                volume,
                price,
                0.0,
                0.0,
                profit,
                0.0,
                symbol,
                comment,
                "",
            )
        )
        return ticket

    def _new_order_ticket(self) -> int:
        ticket = self._next_order
        self._next_order += 1
        return ticket

    # --- internals: validation -----------------------------------------------------------
    def _validate(self, req: TradeRequest, t: float) -> float:
        """Raise :class:`_Reject` when MT5 would refuse ``req``; return its extra margin."""
        if not self._trading["trade_allowed"] or self._trading["tradeapi_disabled"] or self._investor:
            raise _Reject(c.TRADE_RETCODE_CLIENT_DISABLES_AT)
        if not self._trading["trade_expert"]:
            raise _Reject(c.TRADE_RETCODE_SERVER_DISABLES_AT)
        if req.action in (c.TRADE_ACTION_DEAL, c.TRADE_ACTION_PENDING):
            spec = self._spec_or_reject(req.symbol)
            self._check_tradeable(spec, t)
            if not self._has_tick(spec.name):
                raise _Reject(c.TRADE_RETCODE_PRICE_OFF)
            if req.position:
                return self._validate_close(req, spec)
            self._check_volume(spec, req.volume)
            self._check_grid(spec, req.price, req.sl, req.tp)
            bid, ask = self._quote(spec, t)
            if req.action == c.TRADE_ACTION_DEAL:
                if req.type not in (c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL):
                    raise _Reject(c.TRADE_RETCODE_INVALID, "Invalid order type for a deal")
                self._check_filling(spec, req.type_filling)
                market = ask if req.type == c.ORDER_TYPE_BUY else bid
                if req.price and abs(req.price - market) > req.deviation * spec.point + 1e-12:
                    raise _Reject(c.TRADE_RETCODE_REQUOTE)
                self._check_stops(spec, req.type == c.ORDER_TYPE_BUY, market, req.sl, req.tp, bid, ask)
                margin = self._extra_margin(spec, req.type, req.volume, t)
                if margin > self._account_info(t).margin_free:
                    raise _Reject(c.TRADE_RETCODE_NO_MONEY, "No money", margin)
                return margin
            self._check_pending_price(spec, req.type, req.price, bid, ask)
            opens_at = req.price
            if req.type in _STOP_LIMIT_TYPES:
                self._check_stoplimit(spec, req.type, req.price, req.stoplimit)
                opens_at = req.stoplimit
            self._check_stops(spec, req.type in _BUY_TYPES, opens_at, req.sl, req.tp, opens_at, opens_at)
            self._expiry_of(spec, req.type_time, req.expiration, t)
            return 0.0
        if req.action == c.TRADE_ACTION_SLTP:
            pos = self._state.positions.get(req.position)
            if pos is None:
                raise _Reject(c.TRADE_RETCODE_POSITION_CLOSED)
            spec = self._symbols[pos.symbol]
            self._check_tradeable(spec, t)
            self._check_grid(spec, 0.0, req.sl, req.tp)
            bid, ask = self._quote(spec, t)
            is_buy = pos.type == c.POSITION_TYPE_BUY
            self._check_stops(spec, is_buy, bid if is_buy else ask, req.sl, req.tp, bid, ask)
            if (req.sl, req.tp) == (pos.sl, pos.tp):
                raise _Reject(c.TRADE_RETCODE_NO_CHANGES)
            return 0.0
        if req.action == c.TRADE_ACTION_CLOSE_BY:
            return self._validate_close_by(req, t)
        if req.action in (c.TRADE_ACTION_MODIFY, c.TRADE_ACTION_REMOVE):
            order = self._state.orders.get(req.order)
            if order is None:
                raise _Reject(c.TRADE_RETCODE_INVALID, "Order not found")
            spec = self._symbols[order.symbol]
            self._check_tradeable(spec, t)
            if req.action == c.TRADE_ACTION_MODIFY:
                bid, ask = self._quote(spec, t)
                price = req.price or order.price_open
                stoplimit = req.stoplimit or order.price_stoplimit
                self._check_grid(spec, price, req.sl, req.tp)
                self._check_pending_price(spec, order.type, price, bid, ask)
                opens_at = price
                if order.type in _STOP_LIMIT_TYPES:
                    self._check_stoplimit(spec, order.type, price, stoplimit)
                    opens_at = stoplimit
                self._check_stops(spec, order.type in _BUY_TYPES, opens_at, req.sl, req.tp, opens_at, opens_at)
                expires = self._expiry_of(spec, req.type_time, req.expiration, t)
                same = (price, stoplimit, req.sl, req.tp, req.type_time, expires)
                if same == (order.price_open, order.price_stoplimit, order.sl, order.tp, order.type_time, order.expiration):
                    raise _Reject(c.TRADE_RETCODE_NO_CHANGES)
            return 0.0
        raise _Reject(c.TRADE_RETCODE_INVALID, "Unsupported trade action")

    def _spec_or_reject(self, symbol: str) -> SymbolSpec:
        spec = self._symbols.get(symbol)
        if spec is None:
            raise _Reject(c.TRADE_RETCODE_INVALID, "Unknown symbol")
        return spec

    def _check_tradeable(self, spec: SymbolSpec, t: float) -> None:
        if spec.trade_mode == c.SYMBOL_TRADE_MODE_DISABLED:
            raise _Reject(c.TRADE_RETCODE_TRADE_DISABLED)
        if not spec.always_open and not self._market_open(t):
            raise _Reject(c.TRADE_RETCODE_MARKET_CLOSED, "Market closed")

    @staticmethod
    def _check_grid(spec: SymbolSpec, price: float, sl: float, tp: float) -> None:
        """Prices off the tick grid: 10015 for the price, 10016 for SL/TP (as servers answer)."""
        if not on_tick_grid(price, spec):
            raise _Reject(c.TRADE_RETCODE_INVALID_PRICE, "Invalid price")
        if not (on_tick_grid(sl, spec) and on_tick_grid(tp, spec)):
            raise _Reject(c.TRADE_RETCODE_INVALID_STOPS, "Invalid stops")

    def _netting_position(self, symbol: str) -> _Position | None:
        """The symbol's one position on a netting account (None on hedging, or when flat)."""
        if self._options.margin_mode != c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING:
            return None
        return next((p for p in self._state.positions.values() if p.symbol == symbol), None)

    def _extra_margin(self, spec: SymbolSpec, type_: int, volume: float, t: float) -> float:
        """Margin a new deal adds: its own on hedging; on netting, that of the net position
        after it less that of the position now (a reducing deal adds none)."""
        pos = self._netting_position(spec.name)
        if pos is None:
            return self._margin_for(spec, volume, t)
        now = pos.volume if pos.type == c.POSITION_TYPE_BUY else -pos.volume
        after = now + (volume if type_ in _BUY_TYPES else -volume)
        return max(self._margin_for(spec, abs(after), t) - self._margin_for(spec, abs(now), t), 0.0)

    @staticmethod
    def _check_volume(spec: SymbolSpec, volume: float) -> None:
        if not volume_fits(volume, spec.volume_min, spec.volume_max, spec.volume_step):
            raise _Reject(c.TRADE_RETCODE_INVALID_VOLUME, "Invalid volume")

    @staticmethod
    def _check_filling(spec: SymbolSpec, filling: int) -> None:
        allowed = {
            c.ORDER_FILLING_FOK: spec.filling_mode & c.SYMBOL_FILLING_FOK,
            c.ORDER_FILLING_IOC: spec.filling_mode & c.SYMBOL_FILLING_IOC,
            c.ORDER_FILLING_RETURN: 1,
        }
        if not allowed.get(filling, 0):
            raise _Reject(c.TRADE_RETCODE_INVALID_FILL, "Unsupported filling mode")

    @staticmethod
    def _check_stops(spec: SymbolSpec, is_buy: bool, ref: float, sl: float, tp: float, bid: float, ask: float) -> None:
        """SL/TP on the right side of the price they close at, stops_level points away."""
        gap = spec.stops_level * spec.point - 1e-12
        close_ref = bid if is_buy else ask
        if is_buy:
            if sl and not sl <= close_ref - gap:
                raise _Reject(c.TRADE_RETCODE_INVALID_STOPS, "Invalid stops")
            if tp and not tp >= close_ref + gap:
                raise _Reject(c.TRADE_RETCODE_INVALID_STOPS, "Invalid stops")
        else:
            if sl and not sl >= close_ref + gap:
                raise _Reject(c.TRADE_RETCODE_INVALID_STOPS, "Invalid stops")
            if tp and not tp <= close_ref - gap:
                raise _Reject(c.TRADE_RETCODE_INVALID_STOPS, "Invalid stops")

    @staticmethod
    def _check_pending_price(spec: SymbolSpec, type_: int, price: float, bid: float, ask: float) -> None:
        gap = spec.stops_level * spec.point - 1e-12
        ok = {
            c.ORDER_TYPE_BUY_LIMIT: price <= ask - gap,
            c.ORDER_TYPE_SELL_LIMIT: price >= bid + gap,
            c.ORDER_TYPE_BUY_STOP: price >= ask + gap,
            c.ORDER_TYPE_SELL_STOP: price <= bid - gap,
            c.ORDER_TYPE_BUY_STOP_LIMIT: price >= ask + gap,
            c.ORDER_TYPE_SELL_STOP_LIMIT: price <= bid - gap,
        }.get(type_)
        if ok is None:
            raise _Reject(c.TRADE_RETCODE_INVALID, "Invalid order type for a pending order")
        if price <= 0 or not ok:
            raise _Reject(c.TRADE_RETCODE_INVALID_PRICE, "Invalid price")

    @staticmethod
    def _check_stoplimit(spec: SymbolSpec, type_: int, price: float, stoplimit: float) -> None:
        """A stop-limit's limit price: a buy limit placed at or below its stop price (a sell
        limit at or above), stops_level points away, on the grid (10015 otherwise)."""
        gap = spec.stops_level * spec.point - 1e-12
        ok = stoplimit <= price - gap if type_ == c.ORDER_TYPE_BUY_STOP_LIMIT else stoplimit >= price + gap
        if stoplimit <= 0 or not ok or not on_tick_grid(stoplimit, spec):
            raise _Reject(c.TRADE_RETCODE_INVALID_PRICE, "Invalid stoplimit price")

    def _expiry_of(self, spec: SymbolSpec, type_time: int, expiration: int, t: float) -> float:
        """When a pending order of ``type_time`` expires (UTC epoch; 0: never); 10022 for an
        ORDER_TIME_* the symbol does not take or an expiration not in the future. DAY ends at
        the server's midnight; SPECIFIED_DAY at the server's midnight after ``expiration``
        (server clock, as MT5's)."""
        flags = {
            c.ORDER_TIME_GTC: c.SYMBOL_EXPIRATION_GTC,
            c.ORDER_TIME_DAY: c.SYMBOL_EXPIRATION_DAY,
            c.ORDER_TIME_SPECIFIED: c.SYMBOL_EXPIRATION_SPECIFIED,
            c.ORDER_TIME_SPECIFIED_DAY: c.SYMBOL_EXPIRATION_SPECIFIED_DAY,
        }
        if type_time not in flags or not spec.expiration_mode & flags[type_time]:
            raise _Reject(c.TRADE_RETCODE_INVALID_EXPIRATION, "Invalid expiration")
        server_now = t + self._offset
        if type_time == c.ORDER_TIME_GTC:
            return 0.0
        if type_time == c.ORDER_TIME_DAY:
            return (server_now // 86400 + 1) * 86400 - self._offset
        ends = (expiration // 86400 + 1) * 86400 if type_time == c.ORDER_TIME_SPECIFIED_DAY else expiration
        if ends <= server_now:
            raise _Reject(c.TRADE_RETCODE_INVALID_EXPIRATION, "Invalid expiration")
        return float(ends - self._offset)

    def _validate_close_by(self, req: TradeRequest, t: float) -> float:
        """TRADE_ACTION_CLOSE_BY: two open positions of one symbol, opposite sides (a hedging
        account's: a netting account never holds two)."""
        pos, by = self._state.positions.get(req.position), self._state.positions.get(req.position_by)
        if pos is None or by is None:
            raise _Reject(c.TRADE_RETCODE_POSITION_CLOSED)
        if pos.symbol != by.symbol or pos.type == by.type or pos.ticket == by.ticket:
            raise _Reject(c.TRADE_RETCODE_INVALID, "Close by needs an opposite position of the same symbol")
        self._check_tradeable(self._symbols[pos.symbol], t)
        return 0.0

    def _validate_close(self, req: TradeRequest, spec: SymbolSpec) -> float:
        pos = self._state.positions.get(req.position)
        if pos is None:
            raise _Reject(c.TRADE_RETCODE_POSITION_CLOSED)
        if pos.symbol != spec.name:
            raise _Reject(c.TRADE_RETCODE_INVALID, "Symbol differs from the position's")
        expected = c.ORDER_TYPE_SELL if pos.type == c.POSITION_TYPE_BUY else c.ORDER_TYPE_BUY
        if req.action != c.TRADE_ACTION_DEAL or req.type != expected:
            raise _Reject(c.TRADE_RETCODE_INVALID, "A close must be an opposite deal")
        self._check_volume(spec, req.volume)
        if req.volume > pos.volume + 1e-9:
            raise _Reject(c.TRADE_RETCODE_INVALID_CLOSE_VOLUME)
        return 0.0

    # --- internals: execution ------------------------------------------------------------
    def _execute(self, req: TradeRequest, t: float) -> tuple[int, int, float, float]:
        """Apply a validated request; return (deal, order, volume, price)."""
        self._dirty = True
        if req.action == c.TRADE_ACTION_DEAL:
            spec = self._symbols[req.symbol]
            bid, ask = self._quote(spec, t)
            price = ask if req.type == c.ORDER_TYPE_BUY else bid
            order = self._new_order_ticket()
            self._record_filled_order(order, req, price, t)
            if req.position:
                deal = self._close(self._state.positions[req.position], req.volume, price, order, c.REASON_EXPERT, req.comment, t)
            else:
                deal = self._open(
                    order, req.symbol, req.type, req.volume, price, req.sl, req.tp, req.magic, req.comment, c.REASON_EXPERT, t
                )
            return deal, order, req.volume, price
        if req.action == c.TRADE_ACTION_PENDING:
            order = self._new_order_ticket()
            self._state.orders[order] = _Order(
                order,
                req.symbol,
                req.type,
                req.volume,
                req.price,
                req.sl,
                req.tp,
                req.magic,
                req.comment,
                t,
                c.ORDER_FILLING_RETURN,
                reason=c.REASON_EXPERT,
                type_time=req.type_time,
                expiration=self._expiry_of(self._symbols[req.symbol], req.type_time, req.expiration, t),
                price_stoplimit=req.stoplimit if req.type in _STOP_LIMIT_TYPES else 0.0,
            )
            return 0, order, req.volume, req.price
        if req.action == c.TRADE_ACTION_CLOSE_BY:
            return self._close_by(req, t)
        if req.action == c.TRADE_ACTION_SLTP:
            pos = self._state.positions[req.position]
            pos.sl, pos.tp, pos.time_update = req.sl, req.tp, t
            return 0, 0, pos.volume, 0.0
        pending = self._state.orders[req.order]
        if req.action == c.TRADE_ACTION_MODIFY:
            pending.price_open = req.price or pending.price_open
            pending.price_stoplimit = req.stoplimit or pending.price_stoplimit
            pending.sl, pending.tp = req.sl, req.tp
            # As MT5: a modification states the order's time in force and expiry again.
            pending.type_time = req.type_time
            pending.expiration = self._expiry_of(self._symbols[pending.symbol], req.type_time, req.expiration, t)
            return 0, pending.ticket, pending.volume, pending.price_open
        del self._state.orders[pending.ticket]
        self._state.history_orders.append(replace(pending, state=c.ORDER_STATE_CANCELED, time_done=t))
        return 0, pending.ticket, pending.volume, pending.price_open

    def _close_by(self, req: TradeRequest, t: float) -> tuple[int, int, float, float]:
        """Close ``position`` by ``position_by``: the smaller volume of both is closed, both at
        ``position_by``'s open price (so it realises nothing, and the pair the difference of
        their open prices: no spread paid), two OUT_BY deals of one CLOSE_BY order."""
        pos, by = self._state.positions[req.position], self._state.positions[req.position_by]
        volume = min(pos.volume, by.volume)
        order = self._new_order_ticket()
        pos_price = by_price = by.price_open
        self._state.history_orders.append(
            _Order(
                order, pos.symbol, c.ORDER_TYPE_CLOSE_BY, volume, pos_price, 0.0, 0.0, pos.magic, req.comment, t,
                c.ORDER_FILLING_RETURN, c.ORDER_STATE_FILLED, t, pos.identifier, c.REASON_EXPERT,
                position_by=by.identifier,
            )
        )  # fmt: skip
        deal = 0
        for closing, price in ((pos, pos_price), (by, by_price)):
            profit = self._realise(closing, volume, price, t)
            remaining = round(closing.volume - volume, 8)
            if remaining <= 1e-9:
                del self._state.positions[closing.ticket]
            else:
                closing.volume, closing.time_update = remaining, t
            deal_type = c.DEAL_TYPE_SELL if closing.type == c.POSITION_TYPE_BUY else c.DEAL_TYPE_BUY
            made = self._position_deal(
                closing, deal_type, c.DEAL_ENTRY_OUT_BY, volume, price, profit, order, c.REASON_EXPERT, req.comment, t
            )
            deal = deal or made
        return deal, order, volume, pos_price

    def _record_filled_order(self, ticket: int, req: TradeRequest, price: float, t: float) -> None:
        self._state.history_orders.append(
            _Order(
                ticket,
                req.symbol,
                req.type,
                req.volume,
                price,
                req.sl,
                req.tp,
                req.magic,
                req.comment,
                t,
                req.type_filling,
                c.ORDER_STATE_FILLED,
                t,
                req.position or ticket,
                c.REASON_EXPERT,
            )
        )

    def _open(
        self,
        order: int,
        symbol: str,
        type_: int,
        volume: float,
        price: float,
        sl: float,
        tp: float,
        magic: int,
        comment: str,
        reason: int,
        t: float,
    ) -> int:
        held = self._netting_position(symbol)
        if held is not None:
            return self._net(held, order, type_, volume, price, sl, tp, comment, reason, t)
        self._state.positions[order] = _Position(
            order,
            symbol,
            c.POSITION_TYPE_BUY if type_ in _BUY_TYPES else c.POSITION_TYPE_SELL,
            volume,
            price,
            sl,
            tp,
            magic,
            comment,
            t,
            t,
            reason,
        )
        deal_type = c.DEAL_TYPE_BUY if type_ in _BUY_TYPES else c.DEAL_TYPE_SELL
        return self._add_deal(
            symbol=symbol,
            type_=deal_type,
            entry=c.DEAL_ENTRY_IN,
            volume=volume,
            price=price,
            profit=0.0,
            order=order,
            position_id=order,
            magic=magic,
            reason=reason,
            comment=comment,
            t=t,
        )

    def _net(
        self, pos: _Position, order: int, type_: int, volume: float, price: float, sl: float, tp: float, comment: str, reason: int, t: float
    ) -> int:
        """A deal on a netting account's symbol that already has its one position: it adds to
        it (average price), reduces or closes it, or reverses it. A reversal closes the old
        volume and holds the rest the other way under a new ticket (the order's), with the
        same identifier; its one deal is DEAL_ENTRY_INOUT."""
        spec = self._symbols[pos.symbol]
        side = c.POSITION_TYPE_BUY if type_ in _BUY_TYPES else c.POSITION_TYPE_SELL
        deal_type = c.DEAL_TYPE_BUY if side == c.POSITION_TYPE_BUY else c.DEAL_TYPE_SELL
        if side == pos.type:
            total = round(pos.volume + volume, 8)
            pos.price_open = round((pos.price_open * pos.volume + price * volume) / total, spec.digits + 3)
            pos.volume, pos.time_update = total, t
            if sl or tp:
                pos.sl, pos.tp = sl, tp
            return self._position_deal(pos, deal_type, c.DEAL_ENTRY_IN, volume, price, 0.0, order, reason, comment, t)
        if volume <= pos.volume + 1e-9:
            return self._close(pos, volume, price, order, reason, comment, t)
        held = pos.volume
        profit = self._realise(pos, held, price, t)
        del self._state.positions[pos.ticket]
        self._state.positions[order] = _Position(
            order, pos.symbol, side, round(volume - held, 8), price, sl, tp, pos.magic, comment, t, t, reason, pos.identifier
        )
        return self._position_deal(pos, deal_type, c.DEAL_ENTRY_INOUT, volume, price, profit, order, reason, comment, t)

    def _close(self, pos: _Position, volume: float, price: float, order: int, reason: int, comment: str, t: float) -> int:
        profit = self._realise(pos, volume, price, t)
        remaining = round(pos.volume - volume, 8)
        if remaining <= 1e-9:
            del self._state.positions[pos.ticket]
        else:
            pos.volume, pos.time_update = remaining, t
        deal_type = c.DEAL_TYPE_SELL if pos.type == c.POSITION_TYPE_BUY else c.DEAL_TYPE_BUY
        return self._position_deal(pos, deal_type, c.DEAL_ENTRY_OUT, volume, price, profit, order, reason, comment, t)

    def _realise(self, pos: _Position, volume: float, price: float, t: float) -> float:
        """The profit of closing ``volume`` of ``pos`` at ``price``, credited to the balance."""
        spec = self._symbols[pos.symbol]
        sign = 1.0 if pos.type == c.POSITION_TYPE_BUY else -1.0
        # + 0.0: a zero profit is 0.0, never -0.0
        profit = round(sign * (price - pos.price_open) * volume * spec.contract_size * self._to_usd(spec.currency_profit, t), 2) + 0.0
        self._account.balance = round(self._account.balance + profit, 2)
        return profit

    def _position_deal(
        self,
        pos: _Position,
        type_: int,
        entry: int,
        volume: float,
        price: float,
        profit: float,
        order: int,
        reason: int,
        comment: str,
        t: float,
    ) -> int:
        """The deal of ``order`` on an existing position (its symbol, identifier and magic)."""
        return self._add_deal(
            symbol=pos.symbol,
            type_=type_,
            entry=entry,
            volume=volume,
            price=price,
            profit=profit,
            order=order,
            position_id=pos.identifier,
            magic=pos.magic,
            reason=reason,
            comment=comment,
            t=t,
        )

    def _tick_world(self) -> float:
        """Trigger pending orders, SL/TP and stop-out at the current instant's prices."""
        now = self._clock()
        for order in list(self._state.orders.values()):
            if order.expiration and now >= order.expiration:
                del self._state.orders[order.ticket]
                self._state.history_orders.append(replace(order, state=c.ORDER_STATE_EXPIRED, time_done=order.expiration))
                self._dirty = True
                continue
            spec = self._symbols[order.symbol]
            if not spec.always_open and not self._market_open(now):
                continue
            bid, ask = self._quote(spec, now)
            if order.type in _STOP_LIMIT_TYPES and _pending_triggered(_STOP_OF[order.type], order.price_open, bid, ask):
                self._place_stop_limit(order, now)
            elif _pending_triggered(order.type, order.price_open, bid, ask):
                self._fill_pending(order, bid, ask, now)
        for pos in list(self._state.positions.values()):
            spec = self._symbols[pos.symbol]
            if not spec.always_open and not self._market_open(now):
                continue
            bid, ask = self._quote(spec, now)
            reason = _stop_hit(pos, bid, ask)
            if reason is not None:
                price = bid if pos.type == c.POSITION_TYPE_BUY else ask
                self._close(pos, pos.volume, price, self._new_order_ticket(), reason, "[sl]" if reason == c.REASON_SL else "[tp]", now)
        self._stop_out(now)
        self._persist()
        return now

    def _place_stop_limit(self, order: _Order, t: float) -> None:
        """A stop-limit whose stop price was reached: it is done (filled) and a limit order
        of its volume, SL, TP, expiry and magic is placed at its stoplimit price (a new ticket)."""
        del self._state.orders[order.ticket]
        self._dirty = True
        self._state.history_orders.append(replace(order, state=c.ORDER_STATE_FILLED, time_done=t))
        ticket = self._new_order_ticket()
        limit = replace(
            order,
            ticket=ticket,
            type=_LIMIT_OF[order.type],
            price_open=order.price_stoplimit,
            price_stoplimit=0.0,
            time_setup=t,
            reason=c.REASON_EXPERT,
        )
        self._state.orders[ticket] = limit

    def _fill_pending(self, order: _Order, bid: float, ask: float, t: float) -> None:
        del self._state.orders[order.ticket]
        self._dirty = True
        spec = self._symbols[order.symbol]
        if self._margin_for(spec, order.volume, t) > self._account_info(t).margin_free:
            self._state.history_orders.append(replace(order, state=c.ORDER_STATE_REJECTED, time_done=t))
            return
        price = ask if order.type in _BUY_TYPES else bid
        self._state.history_orders.append(replace(order, state=c.ORDER_STATE_FILLED, time_done=t, position_id=order.ticket))
        self._open(
            order.ticket, order.symbol, order.type, order.volume, price, order.sl, order.tp, order.magic, order.comment, order.reason, t
        )

    def _stop_out(self, t: float) -> None:
        while self._state.positions:
            info = self._account_info(t)
            if not info.margin or info.margin_level >= self._account.margin_so_so:
                return
            worst = min(self._state.positions.values(), key=lambda p: self._profit(p, t))
            bid, ask = self._quote(self._symbols[worst.symbol], t)
            price = bid if worst.type == c.POSITION_TYPE_BUY else ask
            self._close(worst, worst.volume, price, self._new_order_ticket(), c.REASON_SO, f"[so {info.margin_level:.2f}%]", t)


def _comment_ok(comment: Any) -> bool:
    """What a terminal takes as a comment (TERMINAL_COMMENT_MAX, TERMINAL_COMMENT_REFUSED)."""
    return (
        isinstance(comment, str)
        and len(comment) <= TERMINAL_COMMENT_MAX
        and all(" " <= ch <= "~" and ch not in TERMINAL_COMMENT_REFUSED for ch in comment)
    )


def on_tick_grid(value: float, spec: SymbolSpec) -> bool:
    """``value`` is a whole number of the symbol's ticks (0, no level, always is)."""
    if not value:
        return True
    price, tick = Decimal(repr(round(value, spec.digits))), Decimal(repr(spec.tick))
    return price % tick == 0 and abs(float(price) - value) < spec.point / 2


def volume_fits(volume: float, vmin: float, vmax: float, step: float) -> bool:
    """True when ``volume`` lies in [vmin, vmax] on the grid vmin + k x step."""
    if not math.isfinite(volume) or volume < vmin - 1e-9 or volume > vmax + 1e-9:
        return False
    steps = (volume - vmin) / step
    return abs(steps - round(steps)) < 1e-6


def _pending_triggered(type_: int, price: float, bid: float, ask: float) -> bool:
    return {
        c.ORDER_TYPE_BUY_LIMIT: ask <= price,
        c.ORDER_TYPE_SELL_LIMIT: bid >= price,
        c.ORDER_TYPE_BUY_STOP: ask >= price,
        c.ORDER_TYPE_SELL_STOP: bid <= price,
    }.get(type_, False)


def _stop_hit(pos: _Position, bid: float, ask: float) -> int | None:
    if pos.type == c.POSITION_TYPE_BUY:
        if pos.sl and bid <= pos.sl:
            return c.REASON_SL
        if pos.tp and bid >= pos.tp:
            return c.REASON_TP
    else:
        if pos.sl and ask >= pos.sl:
            return c.REASON_SL
        if pos.tp and ask <= pos.tp:
            return c.REASON_TP
    return None


def _in_group(name: str, group: str) -> bool:
    """MT5's symbols_get group filter: the last matching pattern decides; ``!`` excludes."""
    chosen = False
    for pattern in (p.strip() for p in group.split(",") if p.strip()):
        exclude = pattern.startswith("!")
        if fnmatch.fnmatchcase(name, pattern.lstrip("!")):
            chosen = not exclude
    return chosen


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


def _request_tuple(request: dict[str, Any]) -> TradeRequest:
    """MT5's TradeRequest from a request dict; missing fields default as in MT5."""

    def num(key: str, default: float = 0.0) -> float:
        value = request.get(key, default)
        return float(value) if value is not None else default

    def integer(key: str) -> int:
        value = request.get(key, 0)
        return int(value) if value is not None else 0

    return TradeRequest(
        integer("action"),
        integer("magic"),
        integer("order"),
        str(request.get("symbol", "")),
        num("volume"),
        num("price"),
        num("stoplimit"),
        num("sl"),
        num("tp"),
        integer("deviation"),
        integer("type"),
        integer("type_filling"),
        integer("type_time"),
        integer("expiration"),
        str(request.get("comment", "")),
        integer("position"),
        integer("position_by"),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _history_select(
    rows: list[Any],
    keys: Callable[[Any], tuple[int, int, float, str]],
    date_from: Any,
    date_to: Any,
    group: str | None,
    ticket: int | None,
    position: int | None,
) -> list[Any] | None:
    """MT5's history selection: by ``ticket``, else by ``position``, else within the window
    (``keys`` gives a row's ticket, position, server time and symbol); ``group`` filters by
    symbol. None when no selection is given (MT5: invalid arguments)."""
    if ticket is not None:
        chosen = [r for r in rows if keys(r)[0] == ticket]
    elif position is not None:
        chosen = [r for r in rows if keys(r)[1] == position]
    elif date_from is not None and date_to is not None:
        lo, hi = _epoch(date_from), _epoch(date_to)
        chosen = [r for r in rows if lo <= keys(r)[2] <= hi]
    else:
        return None
    return chosen if group is None else [r for r in chosen if _in_group(keys(r)[3], group)]
