"""Idempotency keys for trade requests, kept in SQLite under STATE_DIR.

Protocol for one key:
  1. :meth:`claim` durably records "started" with a fingerprint of the request, *before*
     anything is sent to the terminal. A key already finished returns its stored response;
     a key used for a different request, or one still running, is refused.
  2. :meth:`finish` durably records the response (status + body) that the client got.

If the service dies between 1 and 2, the key stays "started": the order may or may not have
reached the broker, so a retry with that key is refused with a message telling the caller to
check positions/orders first. Never guessing is the point when the money is real.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RETENTION_SECONDS = 7 * 24 * 3600  # the documented TTL; pruned at start and every hour
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class Claim:
    """Outcome of :meth:`IdempotencyStore.claim`."""

    state: str  # "new" | "replay" | "conflict" | "in_progress" | "interrupted"
    status: int | None = None
    body: Any = None


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS idempotency ("
            " key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, state TEXT NOT NULL,"
            " status INTEGER, body TEXT, created REAL NOT NULL, boot TEXT NOT NULL)"
        )
        self._lock = threading.Lock()
        self._boot = f"{time.time():.6f}"
        self.prune()

    def prune(self, now: float | None = None) -> int:
        """Forget keys older than RETENTION_SECONDS; return how many. Called at start and
        periodically by the app, so the store stays bounded by a week of trade requests."""
        cutoff = (time.time() if now is None else now) - RETENTION_SECONDS
        with self._lock:
            return int(self._db.execute("DELETE FROM idempotency WHERE created < ?", (cutoff,)).rowcount)

    def claim(self, key: str, fp: str) -> Claim:
        with self._lock:
            row = self._db.execute("SELECT fingerprint, state, status, body, boot FROM idempotency WHERE key = ?", (key,)).fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO idempotency (key, fingerprint, state, created, boot) VALUES (?, ?, 'started', ?, ?)",
                    (key, fp, time.time(), self._boot),
                )
                return Claim("new")
            stored_fp, state, status, body, boot = row
            if stored_fp != fp:
                return Claim("conflict")
            if state == "done":
                return Claim("replay", status, json.loads(body))
            if boot == self._boot:
                return Claim("in_progress")
            return Claim("interrupted")

    def finish(self, key: str, status: int, body: Any) -> None:
        with self._lock:
            self._db.execute("UPDATE idempotency SET state = 'done', status = ?, body = ? WHERE key = ?", (status, json.dumps(body), key))

    def release(self, key: str) -> None:
        """Forget a claim whose request never reached the terminal (safe to retry)."""
        with self._lock:
            self._db.execute("DELETE FROM idempotency WHERE key = ? AND state = 'started'", (key,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
