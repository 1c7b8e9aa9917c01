"""Request and response bodies of the API (pydantic)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from .backends import base as c


class OrderType(StrEnum):
    buy = "buy"
    sell = "sell"
    buy_limit = "buy_limit"
    sell_limit = "sell_limit"
    buy_stop = "buy_stop"
    sell_stop = "sell_stop"
    buy_stop_limit = "buy_stop_limit"
    sell_stop_limit = "sell_stop_limit"

    @property
    def mt5(self) -> int:
        return _MT5_TYPES[self]

    @property
    def is_buy(self) -> bool:
        return self.value.startswith("buy")

    @property
    def is_market(self) -> bool:
        return self in (OrderType.buy, OrderType.sell)

    @property
    def is_stop_limit(self) -> bool:
        return self in (OrderType.buy_stop_limit, OrderType.sell_stop_limit)


_MT5_TYPES = {
    OrderType.buy: c.ORDER_TYPE_BUY,
    OrderType.sell: c.ORDER_TYPE_SELL,
    OrderType.buy_limit: c.ORDER_TYPE_BUY_LIMIT,
    OrderType.sell_limit: c.ORDER_TYPE_SELL_LIMIT,
    OrderType.buy_stop: c.ORDER_TYPE_BUY_STOP,
    OrderType.sell_stop: c.ORDER_TYPE_SELL_STOP,
    OrderType.buy_stop_limit: c.ORDER_TYPE_BUY_STOP_LIMIT,
    OrderType.sell_stop_limit: c.ORDER_TYPE_SELL_STOP_LIMIT,
}


class TimeInForce(StrEnum):
    """How long a pending order lives (MT5's ORDER_TIME_*): until cancelled, until the end of
    the trading day, until ``expiration``, or until the end of ``expiration``'s day."""

    gtc = "gtc"
    day = "day"
    specified = "specified"
    specified_day = "specified_day"

    @property
    def mt5(self) -> int:
        return {
            "gtc": c.ORDER_TIME_GTC,
            "day": c.ORDER_TIME_DAY,
            "specified": c.ORDER_TIME_SPECIFIED,
            "specified_day": c.ORDER_TIME_SPECIFIED_DAY,
        }[self.value]

    @property
    def symbol_flag(self) -> int:
        """The symbol's expiration_mode flag that allows it."""
        return {
            "gtc": c.SYMBOL_EXPIRATION_GTC,
            "day": c.SYMBOL_EXPIRATION_DAY,
            "specified": c.SYMBOL_EXPIRATION_SPECIFIED,
            "specified_day": c.SYMBOL_EXPIRATION_SPECIFIED_DAY,
        }[self.value]


#: Symbol names as brokers write them: "EURUSD.m", "Volatility 75 (1s) Index", "S&P500",
#: "BTC/USD". Anything printable (spaces, brackets, &, / included), 1 to 64 characters;
#: whether the symbol exists is the terminal's answer (issue 12, fault 1). Control characters
#: are refused: no MT5 name has them, and they would reach logs and Postgres.
SYMBOL_MAX_LENGTH = 64
SYMBOL_PATTERN = rf"^[^\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]{{1,{SYMBOL_MAX_LENGTH}}}$"
#: What each pattern of the API asks for, in words: a 422 says this, not the regular expression.
PATTERN_RULES = {
    SYMBOL_PATTERN: f"the symbol's name as the broker writes it: 1 to {SYMBOL_MAX_LENGTH} characters, "
    "no control or invisible formatting characters (zero-width, bidirectional overrides)",
}

#: The longest order comment the service passes on. The terminal's own check is stricter
#: than MqlTradeRequest's 31 characters: builds refuse comments past about 28 characters
#: with last_error (-2, 'Invalid "comment" argument') (issue 12, fault 2, from public reports
#: of the MetaTrader5 module); 27 keeps a character of margin.
COMMENT_MAX_LENGTH = 27
#: Characters terminal builds refuse in a comment (same reports), besides non-ASCII ones.
COMMENT_REFUSED_CHARACTERS = "[]():=,"

# --- bounds of trading numbers -------------------------------------------------------------
#: Upper bound of any price, SL or TP. The dearest quotes on MT5 servers are around 2e9
#: (bitcoin in Indonesian rupiah); 1e10 leaves room above that while keeping
#: price * 10**digits (5 digits) below 2**53, so rounding a price to the symbol's digits
#: stays exact. Anything above is a typo or an attack, never a price.
MAX_PRICE = 1e10
#: Upper bound of a volume in lots. Brokers' volume_max is at most 100,000 lots; 1e6 keeps
#: volume / volume_step (step >= VOLUME_STEP) below 2**53 so the step check stays exact.
MAX_VOLUME = 1e6
#: The finest volume step the service accepts. The terminal then checks the symbol's own
#: volume_min/volume_step (typically 0.01): this is the schema's honest common floor.
VOLUME_STEP = 0.0001
#: Slippage accepted for market orders, in points.
MAX_DEVIATION = 100_000
MAX_TICKET = 2**63 - 1  # MT5 tickets and magic numbers are unsigned 64-bit; Postgres bigint
#: Longest deal history a read asks the terminal for (ten years).
MAX_HISTORY_DAYS = 3650

# Bodies: JSON numbers only. strict=True refuses booleans (true is not 1 lot) and strings
# ("0.01"); a strict float still accepts a JSON integer, so "volume": 1 is one lot.


def on_volume_grid(volume: float) -> float:
    """Volumes are whole multiples of VOLUME_STEP (with float tolerance: 0.3 is fine)."""
    if not VOLUME_STEP <= volume <= MAX_VOLUME:  # out of bounds (or nan): the bounds say so
        return volume
    steps = volume / VOLUME_STEP
    if abs(steps - round(steps)) > 1e-6:
        raise ValueError(f"{volume:g} lots is finer than the smallest step, {VOLUME_STEP:g}")
    return volume


# The schema says multipleOf; the check itself is on_volume_grid, which runs after the
# bounds (so 1e308 is "less than or equal to 1000000", not "not a multiple").
_VOLUME_FIELD = Field(
    ge=VOLUME_STEP,
    le=MAX_VOLUME,
    allow_inf_nan=False,
    json_schema_extra={"multipleOf": VOLUME_STEP},
    description=f"lots: {VOLUME_STEP:g} to {MAX_VOLUME:g} in steps of "
    f"{VOLUME_STEP:g}; the symbol's own volume_min, "
    f"volume_max and volume_step are checked too (422)",
)
Volume = Annotated[Annotated[float, Field(strict=True), _VOLUME_FIELD], AfterValidator(on_volume_grid)]
Price = Annotated[float, Field(strict=True, gt=0, le=MAX_PRICE, allow_inf_nan=False)]
#: SL/TP in a modification: 0 (or null) removes the level.
Level = Annotated[float, Field(strict=True, ge=0, le=MAX_PRICE, allow_inf_nan=False)]
Deviation = Annotated[int, Field(strict=True, ge=0, le=MAX_DEVIATION, description="points of slippage accepted")]
Magic = Annotated[int, Field(strict=True, ge=0, le=MAX_TICKET)]
#: SL/TP as a distance in points from the price the order opens at (an alternative to prices).
MAX_POINTS = 100_000_000
Points = Annotated[int, Field(strict=True, gt=0, le=MAX_POINTS, description="points from the opening price")]

# Query and path parameters arrive as text, so they cannot be strict; but only the JSON
# number grammar is parsed: no "true", "nan", "inf", "1_0", " 1" or "0x10".
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_JSON_INTEGER = re.compile(r"-?[0-9]+")


def number_text(value: Any) -> Any:
    """Refuse text that is not a plain decimal number (pydantic would read "inf", "1_0")."""
    if isinstance(value, str) and not _JSON_NUMBER.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not a number (write it like 0.1 or 2)")
    return value


def integer_text(value: Any) -> Any:
    """Refuse text that is not whole decimal digits (pydantic would read "1.0", "+1", "1_0")."""
    if isinstance(value, str) and not _JSON_INTEGER.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not a whole number (write it like 12345)")
    return value


# Query and path numbers. Their bounds go in Query()/Path(), where FastAPI puts them after
# the text check, so pydantic applies them in Python (right for ge/le; its Python
# multiple_of is exact, 0.2 would fail: hence on_volume_grid) and would write them into the
# schema under non-standard names ("ge", "le"): WithJsonSchema states the schema instead.
def integer_schema(low: int, high: int, exclusive_low: bool = False) -> WithJsonSchema:
    """The JSON schema of an integer query/path parameter in [low, high] (or (low, high])."""
    bound = {"exclusiveMinimum": low} if exclusive_low else {"minimum": low}
    return WithJsonSchema({"type": "integer", **bound, "maximum": high})


#: Decimal digits only; FastAPI's Path()/Query() in the route add the bounds themselves.
IntegerText = BeforeValidator(integer_text)
#: A ticket (position or order): MT5 tickets are unsigned 64-bit, Postgres stores them as bigint.
TicketNumber = Annotated[int, IntegerText, integer_schema(0, MAX_TICKET, exclusive_low=True)]
#: ``?days=`` of the deal history.
HistoryDays = Annotated[int, IntegerText, integer_schema(1, MAX_HISTORY_DAYS)]
#: ``?deviation=`` of a close, in points.
QueryDeviation = Annotated[int, IntegerText, integer_schema(0, MAX_DEVIATION)]


#: Answers of the market data and history reads are bounded; each says how to ask for the
#: rest (``next``). Bars: the bench's request (issue 15: count=10000) in one answer.
MAX_RATES = 10_000
MAX_TICKS = 10_000
#: Symbols and history records per page.
MAX_PAGE = 1_000
#: copy_rates_from_pos' start_pos: the terminal keeps at most "Max. bars in chart" (100,000
#: by default) anyway.
MAX_START_POS = 1_000_000
#: Times in queries: ISO 8601 (a time without a zone is UTC) or Unix seconds, 1970 to 2100.
TIME_MIN = datetime(1970, 1, 2, tzinfo=UTC)
TIME_MAX = datetime(2100, 1, 1, tzinfo=UTC)
#: A symbol group filter (MT5's syntax: "*USD*,!EUR*").
GROUP_PATTERN = r"^[^\x00-\x1f\x7f]{1,256}$"
PATTERN_RULES[GROUP_PATTERN] = "MT5's group filter: 1 to 256 characters, patterns with * separated by commas, ! excludes"


def in_utc(value: datetime) -> datetime:
    """A query time in UTC (a time without a zone is taken as UTC), within TIME_MIN..TIME_MAX."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not TIME_MIN <= value <= TIME_MAX:
        raise ValueError(f"{value.isoformat()} is out of range: use a time from {TIME_MIN.date()} to {TIME_MAX.date()}")
    return value


def seconds_not_millis(value: Any) -> Any:
    """Refuse a number past TIME_MAX in seconds: pydantic would read it as milliseconds."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except ValueError:
        return value
    if number is not None and abs(number) > TIME_MAX.timestamp():
        raise ValueError(f"{value} is past 2100 in Unix seconds: times are seconds (not milliseconds) or ISO 8601")
    return value


def bool_text(value: Any) -> Any:
    """Only ``true`` and ``false`` (FastAPI would also read 1, yes, on, off ...)."""
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError(f"{value[:40]!r}: write true or false")
    return value


#: A query boolean: ``true`` or ``false`` only.
QueryBool = Annotated[bool, BeforeValidator(bool_text), WithJsonSchema({"type": "boolean"})]

QueryTime = Annotated[
    datetime,
    BeforeValidator(seconds_not_millis),
    AfterValidator(in_utc),
    WithJsonSchema({"type": "string", "description": "ISO 8601 (no zone: UTC) or Unix seconds", "examples": ["2026-12-01T00:00:00Z"]}),
]


class Timeframe(StrEnum):
    """MT5's timeframes by name (TIMEFRAME_M1 ... TIMEFRAME_MN1)."""

    M1 = "M1"
    M2 = "M2"
    M3 = "M3"
    M4 = "M4"
    M5 = "M5"
    M6 = "M6"
    M10 = "M10"
    M12 = "M12"
    M15 = "M15"
    M20 = "M20"
    M30 = "M30"
    H1 = "H1"
    H2 = "H2"
    H3 = "H3"
    H4 = "H4"
    H6 = "H6"
    H8 = "H8"
    H12 = "H12"
    D1 = "D1"
    W1 = "W1"
    MN1 = "MN1"

    @property
    def mt5(self) -> int:
        return c.TIMEFRAMES[self.value][0]

    @property
    def seconds(self) -> int:
        """The bar's length (MN1: 31 days, the longest month)."""
        return c.TIMEFRAMES[self.value][1]


class TickFlags(StrEnum):
    """copy_ticks_*' flags: every tick, bid/ask changes (COPY_TICKS_INFO), last/volume
    changes (COPY_TICKS_TRADE)."""

    all = "all"
    info = "info"
    trade = "trade"

    @property
    def mt5(self) -> int:
        return {"all": c.COPY_TICKS_ALL, "info": c.COPY_TICKS_INFO, "trade": c.COPY_TICKS_TRADE}[self.value]


def volume_in_bounds(volume: float) -> float:
    """The bounds of a query volume (a body's are native constraints of Volume)."""
    if not VOLUME_STEP <= volume <= MAX_VOLUME:
        raise ValueError(f"{volume:g} lots is out of range: use {VOLUME_STEP:g} to {MAX_VOLUME:g}")
    return volume


QueryVolume = Annotated[
    float,
    BeforeValidator(number_text),
    AfterValidator(volume_in_bounds),
    AfterValidator(on_volume_grid),
    WithJsonSchema({"type": "number", "minimum": VOLUME_STEP, "maximum": MAX_VOLUME, "multipleOf": VOLUME_STEP}),
]


def terminal_comment(value: str) -> str:
    """Refuse what a terminal would refuse in a comment (see COMMENT_MAX_LENGTH), with the rule."""
    refused = sorted({ch for ch in value if not " " <= ch <= "~" or ch in COMMENT_REFUSED_CHARACTERS})
    if refused:
        shown = " ".join(repr(ch) for ch in refused[:8])
        raise ValueError(
            f"MT5 terminals refuse these characters in a comment: {shown}; use printable ASCII without {COMMENT_REFUSED_CHARACTERS}"
        )
    if len(value) > COMMENT_MAX_LENGTH:
        raise ValueError(f"{len(value)} characters: MT5 terminals refuse comments longer than {COMMENT_MAX_LENGTH}")
    return value


#: The schema states the rule (pattern, maxLength); the check is terminal_comment, whose
#: message names it (pydantic's own would quote a regular expression).
_COMMENT_SCHEMA = {
    "type": "string",
    "maxLength": COMMENT_MAX_LENGTH,
    "pattern": r"^[ !\"#$%&'*+\-./0-9;<>?@A-Z\\^_`a-z{|}~]*$",
    "description": f"printable ASCII, at most {COMMENT_MAX_LENGTH} characters, none of {COMMENT_REFUSED_CHARACTERS}",
}
Comment = Annotated[str, Field(strict=True), AfterValidator(terminal_comment), WithJsonSchema(_COMMENT_SCHEMA)]


class OrderIn(BaseModel):
    """A market order (``buy``/``sell``) or a pending order (limits and stops, with price)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(pattern=SYMBOL_PATTERN, examples=["EURUSD"])
    type: OrderType
    volume: Volume
    price: Price | None = Field(
        None, description="required for pending orders; for market orders the expected price (checked against deviation)"
    )
    stoplimit: Price | None = Field(None, description="a stop-limit's limit price: the limit order placed when the price reaches price")
    sl: Price | None = None
    tp: Price | None = None
    sl_points: Points | None = Field(None, description="SL as points from the opening price, instead of sl")
    tp_points: Points | None = Field(None, description="TP as points from the opening price, instead of tp")
    deviation: Deviation = 20
    comment: Comment = ""
    magic: Magic = 0
    time_in_force: TimeInForce = Field(TimeInForce.gtc, description="pending orders: how long the order lives")
    expiration: QueryTime | None = Field(None, description="with time_in_force specified or specified_day: when (UTC)")

    @model_validator(mode="after")
    def _consistent(self) -> OrderIn:
        problem = order_in_problem(self)
        if problem:
            raise ValueError(problem)
        return self


#: Fields of OrderIn added after the Idempotency-Key fingerprints of orders were first kept
#: (issue 15): left out of an order's recorded body while at their defaults, so a key kept
#: before an upgrade still matches its retry after it (a replay, not 422 key reused).
LATER_ORDER_FIELDS = {"stoplimit": None, "sl_points": None, "tp_points": None, "time_in_force": "gtc", "expiration": None}


def order_record(order: OrderIn) -> dict[str, Any]:
    """The order as fingerprinted and recorded: its JSON form, LATER_ORDER_FIELDS at their
    defaults left out."""
    body = order.model_dump(mode="json")
    return {k: v for k, v in body.items() if k not in LATER_ORDER_FIELDS or v != LATER_ORDER_FIELDS[k]}


def order_in_problem(order: OrderIn) -> str | None:
    """What does not fit together in an order (a sentence), or None."""
    kind = order.type.value
    if not order.type.is_market and order.price is None:
        return f"a {kind} order needs a price"
    if order.type.is_stop_limit and order.stoplimit is None:
        return f"a {kind} order needs a stoplimit (the price of the limit order placed when price is reached)"
    if not order.type.is_stop_limit and order.stoplimit is not None:
        return f"stoplimit is for buy_stop_limit and sell_stop_limit orders, not {kind}"
    for level in ("sl", "tp"):
        if getattr(order, level) is not None and getattr(order, f"{level}_points") is not None:
            return f"give {level} or {level}_points, not both"
    timed = order.time_in_force in (TimeInForce.specified, TimeInForce.specified_day)
    if order.type.is_market and (order.time_in_force != TimeInForce.gtc or order.expiration is not None):
        return "time_in_force and expiration are for pending orders; a market order executes at once"
    if timed and order.expiration is None:
        return f"time_in_force {order.time_in_force.value} needs an expiration"
    if not timed and order.expiration is not None:
        return "expiration needs time_in_force specified or specified_day"
    return None


class PositionModifyIn(BaseModel):
    """New SL/TP of an open position; null or 0 removes that level, omitted keeps it."""

    # minProperties: an empty body changes nothing and is refused (see _something).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    sl: Level | None = None
    tp: Level | None = None

    @model_validator(mode="after")
    def _something(self) -> PositionModifyIn:
        if not self.model_fields_set:
            raise ValueError("give sl and/or tp")
        return self


class OrderModifyIn(BaseModel):
    """New price and/or SL/TP of a pending order; omitted fields are kept."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    price: Price | None = None
    stoplimit: Price | None = Field(None, description="a stop-limit order's limit price")
    sl: Level | None = None
    tp: Level | None = None

    @model_validator(mode="after")
    def _something(self) -> OrderModifyIn:
        if not self.model_fields_set:
            raise ValueError("give price, stoplimit, sl and/or tp")
        return self


class CloseByIn(BaseModel):
    """Close a position by an opposite one of the same symbol (a hedging account)."""

    model_config = ConfigDict(extra="forbid")

    position_by: int = Field(strict=True, gt=0, le=MAX_TICKET, description="the opposite position's ticket")
    comment: Comment = ""


class CloseAllOut(BaseModel):
    """The positions a close-all found, and each one's answer: the trade result, or the error."""

    closed: int
    failed: int
    results: list[dict[str, Any]]


class TradeOut(BaseModel):
    """What the trade server answered (MqlTradeResult, plus its text)."""

    retcode: int
    retcode_text: str
    order: int
    deal: int
    volume: float
    price: float
    bid: float
    ask: float
    comment: str
    request_id: int
    position: int | None = None


class CheckOut(BaseModel):
    """What order_check answered for an order that was not sent (MqlTradeCheckResult): the
    margin it needs, and balance, equity, profit, margin, free margin and margin level (%) as
    they would be after it, in the account's currency."""

    retcode: int
    retcode_text: str
    balance: float
    equity: float
    profit: float
    margin: float
    margin_free: float
    margin_level: float
    comment: str


class ErrorOut(BaseModel):
    error: str
    message: str
    retcode: int | None = None


class HealthOut(BaseModel):
    status: str
    connected: bool
    last_poll_age: float | None
    reason: str | None
    #: Whether the terminal and account allow trading now (null: not connected).
    trade_allowed: bool | None = None
    #: Why not, when trade_allowed is false.
    trade_reason: str | None = None
    #: True once the trade server refused the login AUTH_ATTEMPTS times in a row: the service
    #: has stopped logging in (see login_guard.py).
    auth_failed: bool = False
    #: Seconds the trade server's clock is ahead of UTC (null while unknown): every time the
    #: API serves is UTC, this offset already taken off (see server_time.py).
    server_time_offset: int | None = None
    #: Where the offset comes from: measured (quotes), saved (an earlier run), configured
    #: (MT5_SERVER_TIME_OFFSET) or unknown.
    server_time_offset_source: str = "unknown"


def trade_out(result: dict[str, Any], position: int | None = None) -> dict[str, Any]:
    retcode = int(result.get("retcode", 0))
    return TradeOut(
        retcode=retcode,
        retcode_text=c.retcode_text(retcode),
        order=int(result.get("order", 0)),
        deal=int(result.get("deal", 0)),
        volume=float(result.get("volume", 0.0)),
        price=float(result.get("price", 0.0)),
        bid=float(result.get("bid", 0.0)),
        ask=float(result.get("ask", 0.0)),
        comment=str(result.get("comment", "")),
        request_id=int(result.get("request_id", 0)),
        position=position,
    ).model_dump()
