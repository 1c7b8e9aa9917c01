"""Streaming quotes on ``/ws`` (issue 15): clients subscribe to symbols and receive their ticks.

A client sends ``{"action": "subscribe", "symbols": [...], "interval_ms": 250}`` (or
``"unsubscribe"``, without symbols: all) and gets ``{"type": "subscribed", "symbols": [...],
"interval_ms": ...}`` with its whole subscription, or ``{"type": "error", "error", "message"}``
(nothing changed then). Ticks come as ``{"type": "tick", "symbol", "time", "time_msc", "bid",
"ask", "last", "volume", "flags", "volume_real"}`` (times in UTC, as every read), alongside the
account's ``update`` messages on the same socket and through the same bounded queue: a client
too slow for either is dropped (close 1013) without delaying the others.

- One :class:`QuoteFeed` per service looks at the ticks of every subscribed symbol every
  ``QUOTE_POLL`` seconds in one backend call (``symbol_info_tick`` each), while anyone is
  subscribed; a tick that changed goes to the symbol's subscribers.
- Each client gets at most one message per symbol per its interval (``INTERVAL_MIN_MS`` to
  ``INTERVAL_MAX_MS``): the newest tick is sent at once when the symbol's last message is an
  interval old, else when it will be (ticks in between are coalesced: the latest wins). A new
  subscriber gets the symbol's current tick at once.
- Bounds: ``MAX_SYMBOLS_PER_CLIENT`` per client, ``MAX_SYMBOLS_PER_ACCOUNT`` distinct symbols
  across the account's clients (each costs a ``symbol_info_tick`` per look), messages of at
  most ``MAX_CLIENT_MESSAGE`` characters.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .bodies import loads_strict
from .models import SYMBOL_MAX_LENGTH

if TYPE_CHECKING:
    from .gateway import Gateway
    from .ws import Client

MAX_SYMBOLS_PER_CLIENT = 20
MAX_SYMBOLS_PER_ACCOUNT = 100
INTERVAL_MIN_MS = 100
INTERVAL_MAX_MS = 60_000
INTERVAL_DEFAULT_MS = 250
#: Seconds between two looks at the subscribed symbols' ticks: a quarter of the shortest
#: interval, so a tick waits at most that long on top of the client's own interval.
QUOTE_POLL = 0.025
MAX_CLIENT_MESSAGE = 4096
#: The fields of a tick message (MT5's Tick, times in UTC).
TICK_FIELDS = ("time", "time_msc", "bid", "ask", "last", "volume", "flags", "volume_real")


@dataclass
class Subscription:
    """One client's symbols, interval, and the ticks waiting for their turn."""

    symbols: set[str] = field(default_factory=set)
    interval: float = INTERVAL_DEFAULT_MS / 1000
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_sent: dict[str, float] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, symbol: str, tick: dict[str, Any]) -> None:
        """The newest tick of ``symbol`` replaces any still waiting."""
        self.pending[symbol] = tick
        self.wake.set()

    def due(self, now: float) -> tuple[list[str], float | None]:
        """The symbols whose tick may go now, and the seconds until the next one may (None:
        nothing else waits)."""
        ready = [s for s in self.pending if now - self.last_sent.get(s, -math.inf) >= self.interval]
        later = [self.last_sent[s] + self.interval - now for s in self.pending if s not in ready]
        return ready, (min(later) if later else None)


class SubscriptionError(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error, self.message = error, message


def tick_message(symbol: str, tick: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tick", "symbol": symbol, **{k: tick.get(k) for k in TICK_FIELDS}}


def parse_request(text: str) -> tuple[str, list[str] | None, int | None]:
    """``(action, symbols, interval_ms)`` of a client message; SubscriptionError saying what
    is wrong with it otherwise."""
    if len(text) > MAX_CLIENT_MESSAGE:
        raise SubscriptionError("invalid_message", f"a message is at most {MAX_CLIENT_MESSAGE} characters")
    try:
        body = loads_strict(text)
    except json.JSONDecodeError as exc:
        raise SubscriptionError("invalid_message", f"not JSON this service reads ({exc.msg}): send one JSON object") from None
    if not isinstance(body, dict):
        raise SubscriptionError("invalid_message", 'send a JSON object: {"action": "subscribe", "symbols": ["EURUSD"], "interval_ms": 250}')
    unknown = set(body) - {"action", "symbols", "interval_ms"}
    if unknown:
        raise SubscriptionError("invalid_message", f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    action = body.get("action")
    if action not in ("subscribe", "unsubscribe"):
        raise SubscriptionError("invalid_message", 'action: "subscribe" or "unsubscribe"')
    symbols = body.get("symbols")
    if symbols is not None and (
        not isinstance(symbols, list)
        or not all(isinstance(s, str) and 0 < len(s) <= SYMBOL_MAX_LENGTH and s.isprintable() for s in symbols)
    ):
        raise SubscriptionError("invalid_message", f"symbols: a list of symbol names (1 to {SYMBOL_MAX_LENGTH} printable characters)")
    if action == "subscribe" and not symbols:
        raise SubscriptionError("invalid_message", "symbols: name at least one symbol to subscribe to")
    interval = body.get("interval_ms")
    if action == "unsubscribe" and interval is not None:
        raise SubscriptionError("invalid_message", "interval_ms: only with subscribe")
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, int) or not INTERVAL_MIN_MS <= interval <= INTERVAL_MAX_MS
    ):
        raise SubscriptionError("invalid_message", f"interval_ms: a whole number from {INTERVAL_MIN_MS} to {INTERVAL_MAX_MS}")
    return action, symbols, interval


class QuoteFeed:
    """The subscribed symbols of all clients, and the loop that brings them their ticks."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._subscribers: dict[str, set[Client]] = {}
        self._latest: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()

    @property
    def symbols(self) -> list[str]:
        return sorted(self._subscribers)

    async def handle(self, client: Client, text: str) -> dict[str, Any]:
        """Carry out a client's message; the answer to send it."""
        try:
            action, symbols, interval = parse_request(text)
            if action == "subscribe":
                assert symbols is not None
                await self.subscribe(client, symbols, interval)
            else:
                self.unsubscribe(client, symbols)
        except SubscriptionError as exc:
            return {"type": "error", "error": exc.error, "message": exc.message}
        sub = client.quotes
        return {"type": "subscribed", "symbols": sorted(sub.symbols), "interval_ms": round(sub.interval * 1000)}

    async def subscribe(self, client: Client, symbols: list[str], interval_ms: int | None) -> None:
        """Add ``symbols`` to the client's subscription (all or none); SubscriptionError for
        an unknown symbol or a bound passed."""
        sub = client.quotes
        new = [s for s in dict.fromkeys(symbols) if s not in sub.symbols]
        if len(sub.symbols) + len(new) > MAX_SYMBOLS_PER_CLIENT:
            raise SubscriptionError("too_many_symbols", f"a client subscribes to at most {MAX_SYMBOLS_PER_CLIENT} symbols")
        fresh = [s for s in new if s not in self._subscribers]
        if len(self._subscribers) + len(fresh) > MAX_SYMBOLS_PER_ACCOUNT:
            raise SubscriptionError(
                "too_many_symbols", f"this account streams at most {MAX_SYMBOLS_PER_ACCOUNT} symbols to all its clients together"
            )
        for symbol in fresh:
            info = await self._gateway.call_optional("symbol_info", symbol)
            if info is None:
                raise SubscriptionError("unknown_symbol", f"unknown symbol '{symbol}': the terminal has no such symbol")
            if not info.get("visible", True):
                await self._gateway.call_optional("symbol_select", symbol, True)
        if interval_ms is not None:
            sub.interval = interval_ms / 1000
        for symbol in new:
            sub.symbols.add(symbol)
            self._subscribers.setdefault(symbol, set()).add(client)
            if symbol in self._latest:
                sub.put(symbol, self._latest[symbol])
        self._wake.set()

    def unsubscribe(self, client: Client, symbols: list[str] | None = None) -> None:
        """Drop ``symbols`` (None: all) from the client's subscription."""
        sub = client.quotes
        for symbol in list(sub.symbols) if symbols is None else symbols:
            sub.symbols.discard(symbol)
            sub.pending.pop(symbol, None)
            subscribers = self._subscribers.get(symbol)
            if subscribers is not None:
                subscribers.discard(client)
                if not subscribers:
                    del self._subscribers[symbol]
                    self._latest.pop(symbol, None)

    async def run(self) -> None:
        """Look at the subscribed symbols' ticks every QUOTE_POLL seconds while there are any."""
        while True:
            if not self._subscribers:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                ticks = await self._gateway.ticks(self.symbols)
            except Exception:  # noqa: BLE001 - the poller reports the backend; quotes wait for it
                await asyncio.sleep(1.0)
                continue
            for symbol, tick in ticks.items():
                if tick == self._latest.get(symbol) or not tick.get("time_msc"):
                    continue
                self._latest[symbol] = tick
                for client in self._subscribers.get(symbol, ()):
                    client.quotes.put(symbol, tick)
            await asyncio.sleep(QUOTE_POLL)


async def send_quotes(client: Client) -> None:
    """A client's tick messages, at most one per symbol per its interval (see the module)."""
    sub = client.quotes
    while True:
        await sub.wake.wait()
        sub.wake.clear()
        while sub.pending:
            now = time.monotonic()
            ready, wait = sub.due(now)
            for symbol in ready:
                sub.last_sent[symbol] = now
                client.offer_message(tick_message(symbol, sub.pending.pop(symbol)))
            if wait is not None:
                await asyncio.sleep(wait)
