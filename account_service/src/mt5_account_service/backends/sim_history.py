"""The simulated terminal's price history: ticks and bars derived from its price function.

A STAND-IN for what a MetaTrader 5 terminal downloads from its trade server; it belongs to
:mod:`.simulator` and answers ``copy_ticks_from``/``copy_ticks_range`` and
``copy_rates_from``/``copy_rates_from_pos``/``copy_rates_range`` there.

The model (the simulator's README section "Price history" says the same):

- **Ticks** are the simulator's quote at each whole second (server clock) while the
  symbol's market is open, kept only when the bid or the ask changed since the second
  before (MT5 stores no tick that changes nothing); ``flags`` says which (TICK_FLAG_BID 2,
  TICK_FLAG_ASK 4). No last price or volume: the simulated symbols are quoted, not traded
  on an exchange, so COPY_TICKS_TRADE finds none. A tick is never later than now.
- **Bars** are built from bid prices, as MT5's: aligned on the server clock (D1 at its
  midnight, W1 on Sunday, MN1 on the first of the month); a bar exists when the market was
  open at one of its samples. Open, high, low and close are taken from ``BAR_SAMPLES``
  samples per bar at a stride of ``bar length / BAR_SAMPLES`` (one second for M1: an M1 bar's
  prices are exactly its ticks' bids). The open of any bar equals the open of its first M1
  bar and the close of a finished bar the close of its last one, but the high and low of a
  bar above M1 are sampled: they may lie inside those of its M1 bars (real MT5 builds every
  timeframe from M1 exactly). ``tick_volume`` is 1 plus the number of samples at which the
  bid moved, times the stride (close to, not equal to, the bar's tick count). The current
  bar ends at now (its close is the bid of the current second).

Results are numpy structured arrays with MT5's field names and types (``RATE_FIELDS``,
``TICK_FIELDS``), as the ``MetaTrader5`` module returns them; numpy is imported on first use
(every image has it: ``mt5linux`` depends on it).
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import base as c

if TYPE_CHECKING:
    import numpy as np

#: Seconds of a timeframe by its MT5 value (MN1: see bar_index).
TIMEFRAME_SECONDS = {value: seconds for value, seconds in c.TIMEFRAMES.values()}
_W1 = c.TIMEFRAMES["W1"][1]
#: Samples per bar (see the module doc).
BAR_SAMPLES = 60
#: Seconds of ticks computed at once while walking forward.
_TICK_CHUNK = 3600
#: 1970-01-04, a Sunday: W1 bars start on Sundays.
_SUNDAY = 3 * 86400

RATE_FIELDS = (
    ("time", "<i8"),
    ("open", "<f8"),
    ("high", "<f8"),
    ("low", "<f8"),
    ("close", "<f8"),
    ("tick_volume", "<u8"),
    ("spread", "<i4"),
    ("real_volume", "<u8"),
)
TICK_FIELDS = (
    ("time", "<i8"),
    ("bid", "<f8"),
    ("ask", "<f8"),
    ("last", "<f8"),
    ("volume", "<u8"),
    ("time_msc", "<i8"),
    ("flags", "<u4"),
    ("volume_real", "<f8"),
)


def numpy() -> Any:
    """The numpy module (imported here, on first use: see the module doc)."""
    import numpy as np

    return np


#: Quotes of a symbol at many instants: (epoch seconds, UTC) -> (bid, ask), numpy arrays.
QuoteMany = Callable[["np.ndarray"], tuple["np.ndarray", "np.ndarray"]]
#: Whether the market is open at many instants (epoch seconds, UTC) -> bool array.
OpenMany = Callable[["np.ndarray"], "np.ndarray"]


def bar_index(t: float, seconds: int, mn1: bool) -> int:
    """The number of the bar of ``seconds`` (or of a month) that holds epoch second ``t``:
    consecutive bars have consecutive numbers (W1 bars start on Sundays, as MT5's)."""
    if mn1:
        moment = datetime.fromtimestamp(int(t), tz=UTC)
        return moment.year * 12 + moment.month - 1
    if seconds == _W1:
        return (int(t) - _SUNDAY) // seconds
    return int(t) // seconds


def bar_time(index: int, seconds: int, mn1: bool) -> int:
    """The start (epoch second) of bar number ``index`` (:func:`bar_index`)."""
    if mn1:
        return calendar.timegm((index // 12, index % 12 + 1, 1, 0, 0, 0))
    if seconds == _W1:
        return index * seconds + _SUNDAY
    return index * seconds


class PriceHistory:
    """Ticks and bars of one symbol (see the module doc).

    ``quotes``/``market_open``: vectorised quote and session functions over UTC epoch
    seconds; ``offset``: seconds the server clock is ahead of UTC; ``spread``: the symbol's
    spread in points; ``now``: the current UTC epoch second."""

    def __init__(self, quotes: QuoteMany, market_open: OpenMany, offset: int, spread: int, now: float) -> None:
        self._quotes, self._open, self._offset, self._spread = quotes, market_open, offset, spread
        self._now = math.floor(now)

    # --- ticks -------------------------------------------------------------------------
    def ticks_between(self, first: int, last: int, limit: int | None, flags: int) -> np.ndarray:
        """Ticks with server times from ``first`` to ``last`` seconds (inclusive, and never
        past now), at most ``limit`` (None: all), oldest first."""
        np = numpy()
        parts: list[Any] = []
        found = 0
        if flags == c.COPY_TICKS_TRADE:
            return np.zeros(0, dtype=list(TICK_FIELDS))
        last = min(last, self._now + self._offset)
        start = first
        while start <= last and (limit is None or found < limit):
            end = min(last, start + _TICK_CHUNK - 1)
            chunk = self._ticks(start, end)
            parts.append(chunk)
            found += len(chunk)
            start = end + 1
        out = np.concatenate(parts) if parts else np.zeros(0, dtype=list(TICK_FIELDS))
        return out[:limit] if limit is not None else out

    def _ticks(self, first: int, last: int) -> np.ndarray:
        np = numpy()
        seconds = np.arange(first - 1, last + 1, dtype=np.int64)  # one before: what changed
        utc = seconds - self._offset
        bid, ask = self._quotes(utc.astype(np.float64))
        is_open = self._open(utc)
        changed_bid = np.concatenate(([False], bid[1:] != bid[:-1]))
        changed_ask = np.concatenate(([False], ask[1:] != ask[:-1]))
        # A market's first second after a close quotes afresh: both count as changed.
        reopened = np.concatenate(([False], is_open[1:] & ~is_open[:-1]))
        changed_bid |= reopened
        changed_ask |= reopened
        keep = is_open & (changed_bid | changed_ask)
        keep[0] = False
        out = np.zeros(int(keep.sum()), dtype=list(TICK_FIELDS))
        out["time"] = seconds[keep]
        out["time_msc"] = seconds[keep] * 1000
        out["bid"], out["ask"] = bid[keep], ask[keep]
        out["flags"] = np.where(changed_bid[keep], c.TICK_FLAG_BID, 0) | np.where(changed_ask[keep], c.TICK_FLAG_ASK, 0)
        return out

    # --- bars --------------------------------------------------------------------------
    def bars(self, first: int, last: int, seconds: int, mn1: bool) -> np.ndarray:
        """The bars numbered ``first`` to ``last`` (:func:`bar_index` on the server clock)
        that have a sample with the market open, up to now, oldest first."""
        np = numpy()
        if last < first:
            return np.zeros(0, dtype=list(RATE_FIELDS))
        begin = np.asarray([bar_time(i, seconds, mn1) for i in range(first, last + 2)], dtype=np.int64)
        begin, end = begin[:-1], begin[1:]
        stride = np.maximum((end - begin) // BAR_SAMPLES, 1)
        steps = np.arange(BAR_SAMPLES + 1, dtype=np.int64)
        # Each bar's samples, the last one second before its end (the close of a finished
        # bar); those past now are now (the current bar closes at the current second).
        now_server = self._now + self._offset
        times = np.minimum(begin[:, None] + steps[None, :] * stride[:, None], (end - 1)[:, None])
        times = np.minimum(times, now_server)
        utc = (times - self._offset).reshape(-1)
        bid = self._quotes(utc.astype(np.float64))[0].reshape(times.shape)
        valid = self._open(utc).reshape(times.shape) & (begin <= now_server)[:, None]
        has = valid.any(axis=1)
        bid, valid, stride, begin, times = bid[has], valid[has], stride[has], begin[has], times[has]
        rows = np.arange(len(bid))
        first_open = valid.argmax(axis=1)
        last_open = valid.shape[1] - 1 - valid[:, ::-1].argmax(axis=1)
        out = np.zeros(len(bid), dtype=list(RATE_FIELDS))
        out["time"] = begin
        out["open"] = bid[rows, first_open]
        out["close"] = bid[rows, last_open]
        out["high"] = np.where(valid, bid, -np.inf).max(axis=1)
        out["low"] = np.where(valid, bid, np.inf).min(axis=1)
        moved = valid[:, 1:] & (bid[:, 1:] != bid[:, :-1])
        covered = times[rows, last_open] - times[rows, first_open] + 1
        out["tick_volume"] = np.minimum((moved.sum(axis=1) + 1) * stride, covered)
        out["spread"] = self._spread
        return out

    def current_index(self, seconds: int, mn1: bool) -> int:
        """The number of the bar holding now (server clock)."""
        return bar_index(self._now + self._offset, seconds, mn1)
