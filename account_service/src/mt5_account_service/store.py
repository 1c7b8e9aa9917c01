"""Postgres recording with a local durable spool: nothing lost, nothing written twice.

Every record (an order request and its result, a deal, an account snapshot) is first
appended to a SQLite spool in STATE_DIR (fsync'd), then a single flusher task copies the
spool to Postgres in spool order, one transaction per batch, and deletes the batch from the
spool only after the commit. Each record carries a unique key (a UUID, or (login, ticket) for
deals) and is inserted with ON CONFLICT DO NOTHING, so a batch replayed after a crash between
the commit and the delete is not written twice. While Postgres is unreachable the spool
grows (``mt5_db_spool_pending``) and the service keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BATCH = 500
RETRY_START = 0.5
RETRY_MAX = 15.0
MIGRATION_LOCK = 0x6D7435_0001  # pg_advisory_xact_lock key: "mt5" + 1
DEALS_BACKFILL_DAYS = 30


class Spool:
    """Append-only durable queue of records (SQLite, WAL, synchronous=FULL)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS seen_deals (ticket INTEGER PRIMARY KEY)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._lock = threading.Lock()

    def append(self, kind: str, payloads: list[dict[str, Any]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO spool (kind, payload) VALUES (?, ?)", [(kind, json.dumps(p)) for p in payloads])
            self._db.execute("COMMIT")

    def append_new_deals(self, deals: list[dict[str, Any]]) -> int:
        """Spool the deals whose ticket was never spooled before; return how many."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            fresh = []
            for deal in deals:
                cur = self._db.execute("INSERT OR IGNORE INTO seen_deals (ticket) VALUES (?)", (int(deal["ticket"]),))
                if cur.rowcount:
                    fresh.append(deal)
            self._db.executemany("INSERT INTO spool (kind, payload) VALUES ('deal', ?)", [(json.dumps(d),) for d in fresh])
            self._db.execute("COMMIT")
            return len(fresh)

    def batch(self, limit: int = BATCH) -> list[tuple[int, str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT seq, kind, payload FROM spool ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(seq, kind, json.loads(payload)) for seq, kind, payload in rows]

    def delete_through(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM spool WHERE seq <= ?", (seq,))

    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def migrations() -> list[tuple[int, str]]:
    """(version, sql) of the package's migration files, in order."""
    files = resources.files("mt5_account_service").joinpath("migrations")
    out = []
    for item in files.iterdir():
        if item.name.endswith(".sql"):
            out.append((int(item.name.split("_", 1)[0]), item.read_text(encoding="utf-8")))
    return sorted(out)


async def apply_migrations(conn: Any) -> list[int]:
    """Apply the missing migrations in one transaction under an advisory lock."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS mt5_schema_migrations ( version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM mt5_schema_migrations")
        done = {row[0] for row in await cur.fetchall()}
        for version, sql in migrations():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO mt5_schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied


async def connect_postgres(dsn: str, password: str | None, ca_file: Path | None = None) -> Any:
    """A connection for ``dsn``; ``ca_file`` is the CA a ``sslmode=verify-*`` DSN verifies the
    server's certificate against (libpq's sslrootcert; the DSN's sslmode decides whether TLS
    is required)."""
    import psycopg

    kwargs: dict[str, Any] = {"connect_timeout": 3, "autocommit": True}
    if password is not None:
        kwargs["password"] = password
    if ca_file is not None:
        kwargs["sslrootcert"] = str(ca_file)
    return await psycopg.AsyncConnection.connect(dsn, **kwargs)


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), tz=UTC)


async def _insert(conn: Any, kind: str, p: dict[str, Any]) -> None:
    from psycopg.types.json import Jsonb

    if kind == "order":
        await conn.execute(
            "INSERT INTO mt5_order_requests (record_id, login, server, requested_at, operation,"
            " idempotency_key, request, http_status, retcode, result)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (record_id) DO NOTHING",
            (
                p["record_id"],
                p["login"],
                p["server"],
                _ts(p["requested_at"]),
                p["operation"],
                p.get("idempotency_key"),
                Jsonb(p["request"]),
                p["http_status"],
                p.get("retcode"),
                Jsonb(p["result"]),
            ),
        )
    elif kind == "deal":
        d = p["deal"]
        await conn.execute(
            "INSERT INTO mt5_deals (login, ticket, order_ticket, time, type, entry, magic,"
            " position_id, reason, volume, price, commission, swap, profit, fee, symbol,"
            " comment, raw) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s, %s) ON CONFLICT (login, ticket) DO NOTHING",
            (
                p["login"],
                d["ticket"],
                d.get("order", 0),
                _ts(d.get("time", 0)),
                d.get("type", 0),
                d.get("entry", 0),
                d.get("magic", 0),
                d.get("position_id", 0),
                d.get("reason", 0),
                d.get("volume", 0.0),
                d.get("price", 0.0),
                d.get("commission", 0.0),
                d.get("swap", 0.0),
                d.get("profit", 0.0),
                d.get("fee", 0.0),
                d.get("symbol", ""),
                d.get("comment", ""),
                Jsonb(d),
            ),
        )
    elif kind == "snapshot":
        a = p["account"]
        await conn.execute(
            "INSERT INTO mt5_account_snapshots (record_id, login, taken_at, balance, equity,"
            " margin, margin_free, margin_level, profit, positions, orders, raw)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (record_id) DO NOTHING",
            (
                p["record_id"],
                p["login"],
                _ts(p["taken_at"]),
                a.get("balance", 0.0),
                a.get("equity", 0.0),
                a.get("margin", 0.0),
                a.get("margin_free", 0.0),
                a.get("margin_level", 0.0),
                a.get("profit", 0.0),
                p["positions"],
                p["orders"],
                Jsonb(a),
            ),
        )
    else:
        raise ValueError(f"unknown spool record kind {kind!r}")


class Store:
    """Records orders, deals and snapshots; see the module docstring for the guarantees."""

    def __init__(
        self,
        spool_path: Path,
        login: int,
        server: str,
        dsn: str,
        password: str | None,
        on_pending: Callable[[int], None],
        ca_file: Path | None = None,
    ) -> None:
        self.spool = Spool(spool_path)
        self._login, self._server = login, server
        self._dsn, self._password, self._ca_file = dsn, password, ca_file
        self._on_pending = on_pending
        self._wake = asyncio.Event()
        self._conn: Any = None
        self._migrated = False
        self.last_error: str | None = None
        self._on_pending(self.spool.pending())

    # --- producers (called from request handlers and the poller) ----------------------------
    async def record_order(
        self, operation: str, request: dict[str, Any], http_status: int, result: dict[str, Any], idempotency_key: str | None
    ) -> None:
        payload = {
            "record_id": str(uuid.uuid4()),
            "login": self._login,
            "server": self._server,
            "requested_at": time.time(),
            "operation": operation,
            "idempotency_key": idempotency_key,
            "request": request,
            "http_status": http_status,
            "retcode": result.get("retcode"),
            "result": result,
        }
        await asyncio.to_thread(self.spool.append, "order", [payload])
        self._after_append()

    async def record_snapshot(self, taken_at: float, account: dict[str, Any], positions: int, orders: int) -> None:
        payload = {
            "record_id": str(uuid.uuid4()),
            "login": self._login,
            "taken_at": taken_at,
            "account": account,
            "positions": positions,
            "orders": orders,
        }
        await asyncio.to_thread(self.spool.append, "snapshot", [payload])
        self._after_append()

    async def record_deals(self, deals: list[dict[str, Any]]) -> int:
        wrapped = [{"login": self._login, "deal": d, "ticket": d["ticket"]} for d in deals]
        added = await asyncio.to_thread(self.spool.append_new_deals, wrapped)
        if added:
            self._after_append()
        return added

    def deals_window(self, now: float) -> tuple[datetime, datetime]:
        """The history window to scan: since the last scan (minus 2 days of slack for the
        trade server's time zone), or DEALS_BACKFILL_DAYS on the first run."""
        last = self.spool.get_meta("deals_scanned_at")
        start = float(last) - 2 * 86400 if last else now - DEALS_BACKFILL_DAYS * 86400
        return _ts(start), _ts(now) + timedelta(days=2)

    def mark_deals_scanned(self, now: float) -> None:
        self.spool.set_meta("deals_scanned_at", repr(now))

    def _after_append(self) -> None:
        self._on_pending(self.spool.pending())
        self._wake.set()

    # --- the flusher -------------------------------------------------------------------
    async def run(self) -> None:
        delay = RETRY_START
        while True:
            try:
                await self.flush()
                delay = RETRY_START
                self._wake.clear()
                if self.spool.pending():
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=5.0)
                except TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Postgres down, network, ...
                self.last_error = f"{type(exc).__name__}: {exc}".strip()
                log.warning("postgres unavailable, %d records spooled: %s", self.spool.pending(), self.last_error)
                await self._drop_connection()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def flush(self) -> int:
        """Copy the whole spool to Postgres in order; return the records written."""
        written = 0
        while True:
            batch = await asyncio.to_thread(self.spool.batch)
            if not batch:
                return written
            conn = await self._connection()
            async with conn.transaction():
                for _seq, kind, payload in batch:
                    await _insert(conn, kind, payload)
            await asyncio.to_thread(self.spool.delete_through, batch[-1][0])
            written += len(batch)
            self.last_error = None
            self._on_pending(self.spool.pending())

    # --- retention ---------------------------------------------------------------------
    async def prune_snapshots(self, retention_days: int) -> int | None:
        """Delete this account's snapshots older than ``retention_days``; return how many,
        or None when Postgres is unreachable (skipped: the next run catches up).

        Runs on a connection of its own, outside the spool: a retention delete is not a
        record to replay, and the flusher's connection may be inside a batch transaction.
        ``WHERE login = %s`` keeps it to this account's own rows (and works under row-level
        security, where an account's role may only see its own login). Orders and deals
        are the trading record and are never deleted here."""
        try:
            conn = await connect_postgres(self._dsn, self._password, self._ca_file)
        except Exception as exc:  # noqa: BLE001 - Postgres down: skip this round
            log.info("snapshot retention skipped, postgres unavailable: %s", exc)
            return None
        try:
            cur = await conn.execute(
                "DELETE FROM mt5_account_snapshots WHERE login = %s AND taken_at < now() - make_interval(days => %s)",
                (self._login, retention_days),
            )
            removed = int(cur.rowcount)
            if removed:
                log.info("deleted %d account snapshots older than %d days", removed, retention_days)
            return removed
        except Exception as exc:  # noqa: BLE001 - e.g. table not migrated yet
            log.warning("snapshot retention failed: %s", exc)
            return None
        finally:
            await conn.close()

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = await connect_postgres(self._dsn, self._password, self._ca_file)
            if not self._migrated:
                applied = await apply_migrations(self._conn)
                if applied:
                    log.info("applied postgres migrations %s", applied)
                self._migrated = True
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - the connection is being thrown away
                pass

    async def close(self, flush_timeout: float = 3.0) -> None:
        try:
            await asyncio.wait_for(self.flush(), timeout=flush_timeout)
        except Exception as exc:  # noqa: BLE001 - what is left stays spooled for next start
            log.info("records left in the spool at stop: %d (%s)", self.spool.pending(), exc)
        await self._drop_connection()
        self.spool.close()
