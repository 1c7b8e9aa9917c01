"""The poll loop: one backend snapshot per POLL_INTERVAL, changes pushed to the hub.

It also owns connection state: a failed poll marks the backend disconnected (health turns
503, WebSocket clients get a status message) and reconnects with exponential backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from . import server_time
from .gateway import BackendAuthFailed, BackendError, BackendUnknownServer, Gateway, Snapshot
from .login_guard import LoginGuard
from .metrics import Metrics
from .trading import trading_block
from .ws import Hub

log = logging.getLogger(__name__)

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0


def diff_snapshots(old: Snapshot, new: Snapshot) -> dict[str, Any]:
    """What changed from ``old`` to ``new``: changed account fields, and per section the
    changed/new rows (whole rows) and the tickets that disappeared. Empty when equal.

    A position whose ticket changed while its ``identifier`` stayed (a reversal on a netting
    account, or a broker's re-opening for swaps) is one position: its new row is in
    ``changed`` and ``positions.reticketed`` maps the old ticket to the new, instead of a
    removal plus an unrelated addition (issue 12, fault 3)."""
    out: dict[str, Any] = {}
    account = {k: v for k, v in new.account.items() if old.account.get(k) != v}
    if account:
        out["account"] = account
    for section in ("positions", "orders"):
        before: dict[int, Any] = getattr(old, section)
        after: dict[int, Any] = getattr(new, section)
        changed = [row for ticket, row in after.items() if before.get(ticket) != row]
        removed = [ticket for ticket in before if ticket not in after]
        reticketed = _reticketed(before, after, removed) if section == "positions" else []
        if reticketed:
            gone = {pair["from"] for pair in reticketed}
            removed = [ticket for ticket in removed if ticket not in gone]
        if changed or removed or reticketed:
            out[section] = {"changed": changed, "removed": removed}
            if reticketed:
                out[section]["reticketed"] = reticketed
    return out


def _reticketed(before: dict[int, Any], after: dict[int, Any], removed: list[int]) -> list[dict[str, int]]:
    """``[{"from": old ticket, "to": new ticket}]`` of positions whose identifier lives on."""
    new_by_identifier = {int(row.get("identifier") or 0): ticket for ticket, row in after.items() if ticket not in before}
    pairs = []
    for ticket in removed:
        identifier = int(before[ticket].get("identifier") or 0)
        if identifier and identifier in new_by_identifier:
            pairs.append({"from": ticket, "to": new_by_identifier[identifier]})
    return pairs


def next_backoff(current: float) -> float:
    return min(current * 2.0, BACKOFF_MAX)


class Poller:
    def __init__(
        self,
        gateway: Gateway,
        hub: Hub,
        metrics: Metrics,
        interval: float,
        stale_after: float,
        on_snapshot: Callable[[Snapshot, dict[str, Any] | None], None] | None = None,
        login_guard: LoginGuard | None = None,
    ) -> None:
        self._gateway = gateway
        self._hub = hub
        self._metrics = metrics
        self._interval = interval
        self._stale_after = stale_after
        self._on_snapshot = on_snapshot
        self._login_guard = login_guard
        self._offset_due = 0.0
        self._settle_until = 0.0
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._json_cache: dict[str, tuple[int, bytes]] = {}
        self.connected = False
        self.reason = "not connected yet"
        self.snapshot: Snapshot | None = None
        self.seq = 0
        self.last_success_mono: float | None = None

    # --- state queries -------------------------------------------------------------------
    def last_poll_age(self) -> float | None:
        if self.last_success_mono is None:
            return None
        return time.monotonic() - self.last_success_mono

    def health(self) -> tuple[bool, str | None]:
        """(healthy, reason): healthy = connected and the last poll is fresh."""
        if not self.connected:
            return False, self.reason
        age = self.last_poll_age()
        if age is None:
            return False, "no successful poll yet"
        if age > self._stale_after:
            return False, f"last successful poll {age:.1f} s ago (limit {self._stale_after:.1f} s)"
        return True, None

    def trading_block(self) -> str | None:
        """Why the terminal would refuse orders now (see trading.trading_block), from the
        last poll; None when trading is allowed or nothing was polled yet."""
        snap = self.snapshot
        return trading_block(snap.terminal, snap.account) if snap is not None else None

    @property
    def auth_failed(self) -> bool:
        return self._login_guard is not None and self._login_guard.failed

    def fresh_snapshot(self) -> Snapshot | None:
        return self.snapshot if self.health()[0] else None

    def cached_json(self, section: str) -> bytes:
        """The JSON of one section of the current snapshot, encoded once per poll."""
        cached = self._json_cache.get(section)
        if cached is not None and cached[0] == self.seq:
            return cached[1]
        snap = self.snapshot
        assert snap is not None
        value: Any = snap.account if section == "account" else list(getattr(snap, section).values())
        body = json.dumps(value, separators=(",", ":")).encode()
        self._json_cache[section] = (self.seq, body)
        return body

    def snapshot_message(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "type": "snapshot",
            "seq": self.seq,
            "connected": self.connected,
            "reason": None if self.connected else self.reason,
            "time": snap.taken_at if snap else None,
            "account": snap.account if snap else None,
            "positions": list(snap.positions.values()) if snap else [],
            "orders": list(snap.orders.values()) if snap else [],
        }

    # --- the loop --------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        backoff = BACKOFF_START
        next_tick = time.monotonic()
        while not self._stopping.is_set():
            if not self.connected:
                blocked = self._login_guard.blocked() if self._login_guard else None
                if blocked:
                    # Also after a restart that loaded the guard's count: the alert holds.
                    self._metrics.auth_failed.set(1 if self.auth_failed else 0)
                    self._set_disconnected(blocked)
                    await self._sleep(self._login_guard.recheck_in() if self._login_guard else backoff)
                    continue
                try:
                    await self._gateway.connect()
                    # connect() looked once; each poll looks again until a live quote settles it.
                    self._offset_due = time.monotonic() + server_time.RECHECK
                    self._settle_until = time.monotonic() + server_time.SETTLE
                    if self._login_guard:
                        self._login_guard.succeeded()
                    self._metrics.auth_failed.set(0)
                    await self.poll_once()
                    backoff = BACKOFF_START
                    log.info("backend connected")
                except BackendAuthFailed as exc:
                    if self._login_guard:
                        self._login_guard.refused(str(exc))
                    self._metrics.auth_failed.set(1 if self.auth_failed else 0)
                    self._set_disconnected(f"auth_failed: {exc}")
                    await self._sleep(backoff)
                    backoff = next_backoff(backoff)
                    continue
                except BackendUnknownServer as exc:
                    # No login reaches the broker: retrying costs nothing, and the server list
                    # changes only with a new servers.dat (an image, or the terminal's own).
                    if not self.reason.startswith("unknown_server:"):
                        log.error("unknown_server: %s", exc)
                    self._set_disconnected(f"unknown_server: {exc}")
                    await self._sleep(backoff)
                    backoff = next_backoff(backoff)
                    continue
                except BackendError as exc:
                    self._set_disconnected(str(exc))
                    await self._sleep(backoff)
                    backoff = next_backoff(backoff)
                    continue
                except Exception as exc:
                    log.exception("unexpected error while connecting")
                    self._set_disconnected(f"unexpected error: {exc}")
                    await self._sleep(backoff)
                    backoff = next_backoff(backoff)
                    continue
                next_tick = time.monotonic()
            else:
                try:
                    now = time.monotonic()
                    if now >= self._offset_due or (not self._gateway.server_clock.settled and now < self._settle_until):
                        await self._gateway.learn_offset()
                        self._offset_due = now + server_time.RECHECK
                    await self.poll_once()
                except BackendError as exc:
                    log.warning("poll failed, reconnecting: %s", exc)
                    self._set_disconnected(str(exc))
                    continue
                except Exception as exc:
                    log.exception("unexpected error while polling")
                    self._set_disconnected(f"unexpected error: {exc}")
                    continue
            next_tick += self._interval
            now = time.monotonic()
            if next_tick < now:  # fell behind: skip missed ticks rather than burst
                next_tick = now + self._interval
            await self._sleep(next_tick - now)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(seconds, 0.0))
        except TimeoutError:
            pass

    async def poll_once(self) -> Snapshot:
        """Take a snapshot now, publish what changed. Also used right after a trade."""
        async with self._lock:
            start = time.perf_counter()
            new = await self._gateway.snapshot()
            self._metrics.poll_duration.observe(time.perf_counter() - start)
            old = self.snapshot
            changes = diff_snapshots(old, new) if old is not None else None
            self.snapshot = new
            self.last_success_mono = time.monotonic()
            self._metrics.last_poll.set(new.taken_at)
            self._metrics.observe_account(new.account, len(new.positions), len(new.orders))
            self._metrics.server_time_offset.set(self._gateway.server_clock.seconds)
            self._metrics.trade_allowed.set(0 if trading_block(new.terminal, new.account) else 1)
            self._metrics.terminal_build.set(int(new.terminal.get("build") or 0))
            if not self.connected:
                self._set_connected()
            if old is None:
                self.seq += 1
                self._hub.broadcast(self.snapshot_message())
            elif changes:
                self.seq += 1
                self._hub.broadcast({"type": "update", "seq": self.seq, "time": new.taken_at, **changes})
            if self._on_snapshot is not None:
                self._on_snapshot(new, changes)
            return new

    def _set_connected(self) -> None:
        self.connected, self.reason = True, "connected"
        self._metrics.backend_connected.set(1)
        self._hub.broadcast({"type": "status", "connected": True, "reason": None})

    def _set_disconnected(self, reason: str) -> None:
        was_connected = self.connected
        self.connected, self.reason = False, reason
        self._metrics.backend_connected.set(0)
        if was_connected:
            self._hub.broadcast({"type": "status", "connected": False, "reason": reason})
