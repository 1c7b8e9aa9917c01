"""The trade server's clock (issue 12, fault 11).

MetaTrader 5 reports every time (deals, orders, positions, ticks, symbols) on the trade
server's clock, as if it were UTC: a broker on UTC+2 (common: "New York close" servers are
UTC+2 in winter, UTC+3 in summer) reports a deal done at 10:00 UTC as 12:00. The history
functions compare their ``date_from``/``date_to`` with those same server-clock times.

So the service learns the offset and stores and serves UTC:

- the offset is the newest quote time of the symbols in Market Watch minus the time now,
  rounded to ``OFFSET_STEP`` (15 min: every time zone in use is a multiple of it), and only
  from a live quote: one newer than the last one seen (a closed market's last quote is hours
  old, and a quote exactly three hours old would otherwise read as a UTC-3 server) and
  within ``FRESH`` of a whole step;
- looked at on each poll from the connect until a live quote settles it (at most
  ``SETTLE`` seconds), then every ``RECHECK`` seconds (a broker's switch to summer time moves
  it by an hour); saved in ``STATE_DIR/server_time.json`` so a restart on a weekend, when no
  quote moves, keeps the last one (until the first live quote, a first start ever serves
  server times as they are: the source says ``unknown``);
- ``MT5_SERVER_TIME_OFFSET`` (seconds) fixes it instead, for an operator who knows better;
- :func:`to_utc` takes it off every time field of a result, :func:`to_server` puts it on the
  datetimes sent to the terminal.

``/health`` shows ``server_time_offset`` (seconds, null while unknown) and its source, and
``mt5_server_time_offset_seconds`` is the metric.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Seconds: time zones are whole multiples of 15 minutes (UTC+5:45 is the finest in use).
OFFSET_STEP = 900
#: Seconds a quote may be away from a whole step and still count as "now" (a liquid symbol
#: quotes every few seconds while its market is open; 2 minutes tolerates a quiet one).
FRESH = 120.0
#: Seconds: no trade server runs more than 14 hours from UTC (UTC-12 .. UTC+14).
LIMIT = 14 * 3600
#: Seconds between re-learning the offset while connected (a switch to summer time).
RECHECK = 300.0
#: Seconds after a connect during which every poll looks for a live quote (then RECHECK).
SETTLE = 60.0
#: Market Watch symbols asked for a quote each time (the newest of them counts).
SYMBOLS = 20
STATE_FILE = "server_time.json"

#: The time fields of MT5's records (ticks, deals, positions, orders; a symbol's ``time``,
#: ``start_time`` and ``expiration_time``): seconds, and their ``_msc`` (milliseconds) twins.
#: 0 (no expiry, no start) stays 0.
TIME_FIELDS = frozenset({"time", "time_setup", "time_done", "time_update", "time_expiration", "start_time", "expiration_time"})
MSC_FIELDS = frozenset({"time_msc", "time_setup_msc", "time_done_msc", "time_update_msc"})


def estimate(quote_time: float, now: float) -> int | None:
    """The server's offset in seconds from one quote time (server clock) and ``now`` (UTC
    epoch), or None when the quote is not fresh enough to tell (see FRESH)."""
    if quote_time <= 0:
        return None
    diff = quote_time - now
    offset = round(diff / OFFSET_STEP) * OFFSET_STEP
    if abs(diff - offset) > FRESH or abs(offset) > LIMIT:
        return None
    return int(offset)


def to_utc(value: Any, offset: int) -> Any:
    """``value`` (plain dicts and lists, as from ``to_plain``) with ``offset`` seconds taken
    off every time field; a new object, the input untouched."""
    if not offset:
        return value
    if isinstance(value, list):
        fields = _flat_time_fields(value)
        if fields is not None:  # bars, ticks, deals: flat records of one shape, row by row
            return [_shifted(row, fields, offset) for row in value]
        return [to_utc(v, offset) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, field in value.items():
        if key in TIME_FIELDS and isinstance(field, (int, float)) and field:
            out[key] = type(field)(field - offset)
        elif key in MSC_FIELDS and isinstance(field, (int, float)) and field:
            out[key] = type(field)(field - offset * 1000)
        else:
            out[key] = to_utc(field, offset) if isinstance(field, (dict, list)) else field
    return out


def _flat_time_fields(rows: list[Any]) -> list[tuple[str, int]] | None:
    """``(field, unit)`` of the time fields of ``rows`` (unit 1 for seconds, 1000 for
    milliseconds) when the rows are dicts with the first one's keys, that one flat; None
    otherwise (the general walk then)."""
    first = rows[0] if rows else None
    if not isinstance(first, dict) or any(isinstance(v, (dict, list)) for v in first.values()):
        return None
    keys = first.keys()
    if any(not isinstance(row, dict) or row.keys() != keys for row in rows):
        return None
    return [(k, 1) for k in keys if k in TIME_FIELDS] + [(k, 1000) for k in keys if k in MSC_FIELDS]


def _shifted(row: dict[str, Any], fields: list[tuple[str, int]], offset: int) -> dict[str, Any]:
    out = dict(row)
    for key, unit in fields:
        field = out[key]
        if field and isinstance(field, (int, float)):
            out[key] = field - offset * unit
    return out


def to_server(arg: Any, offset: int) -> Any:
    """A datetime argument moved onto the server's clock (history windows); others as is."""
    if isinstance(arg, datetime) and offset:
        return arg + timedelta(seconds=offset)
    return arg


class ServerClock:
    """The offset in use, where it came from, and its saved copy in ``state_dir``."""

    def __init__(self, state_dir: Path, configured: int | None = None) -> None:
        self._path = state_dir / STATE_FILE
        self.source = "unknown"
        self.offset: int | None = None
        self._last_quote: int | None = None
        if configured is not None:
            self.offset, self.source = int(configured), "configured"
        else:
            saved = self._load()
            if saved is not None:
                self.offset, self.source = saved, "saved"

    @property
    def seconds(self) -> int:
        """The offset to apply now (0 while unknown: MT5's own assumption)."""
        return self.offset or 0

    @property
    def settled(self) -> bool:
        """True once a live quote measured the offset (or the operator configured it)."""
        return self.source in ("measured", "configured")

    def learn(self, quote_msc: int, now: float) -> None:
        """Look at the newest quote time (milliseconds, server clock) at ``now`` (UTC epoch):
        a measurement when the quote moved since the last look and is fresh."""
        last, self._last_quote = self._last_quote, quote_msc
        if self.source == "configured" or last is None or quote_msc <= last:
            return
        measured = estimate(quote_msc / 1000, now)
        if measured is None:
            return
        if measured != self.offset:
            log.info("the trade server's clock is UTC%+.2f h (was %s)", measured / 3600, self.offset)
            self._save(measured)
        self.offset, self.source = measured, "measured"

    def _load(self) -> int | None:
        try:
            value = int(json.loads(self._path.read_text())["offset"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", self._path, exc)
            return None
        return value if abs(value) <= LIMIT and value % OFFSET_STEP == 0 else None

    def _save(self, offset: int) -> None:
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"offset": offset}))
            os.replace(tmp, self._path)
        except OSError as exc:  # a read-only STATE_DIR: the offset lives in memory
            log.warning("cannot save %s: %s", self._path, exc)
