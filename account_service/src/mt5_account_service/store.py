"""Postgres recording with a local durable spool: nothing lost, nothing written twice.

Every record (an order request and its result, a deal, an account snapshot) is first
appended to a SQLite spool in STATE_DIR (fsync'd), then a single flusher task copies the
spool to Postgres in spool order, one transaction per batch, and deletes the batch from the
spool only after the commit. While Postgres is unreachable the spool grows
(``mt5_db_spool_pending``) and the service keeps serving.

Each record carries a unique key (a UUID, or (login, ticket) for deals). A record whose key
is already in its table is compared with the row there (:func:`_insert`):

* the same content is the same record written again (a batch replayed after a crash between
  the commit and the delete, a deal read again): nothing happens, silently;
* other content is a *conflict* (a terminal that handed out a ticket twice, as the simulator
  did after a restart before issue 12, fault 13). The row already there is kept: it is the
  trading record that reports and clients have read, and the account's role may only SELECT
  and INSERT, never UPDATE. The new record is kept too, in ``mt5_record_conflicts`` with the
  row it collided with and the columns that differ; the service logs a warning naming the
  table, the key and the differences, and counts ``mt5_db_conflicts_total{table}``. Nothing
  is dropped silently.

Deals are spooled when their ticket is new *or* their content differs from what was spooled
for that ticket before (``seen_deals`` keeps a digest), so a reused ticket reaches Postgres
and is reported there instead of stopping at the spool.

A deal's times are not part of its identity (:func:`deal_identity`): the service converts the
terminal's times to UTC with an offset it learns (``server_time.py``), so the same deal read
before and after the offset is learned, or across a summer-time switch, comes with other
times. Comparing them would re-send every deal of the scan window and report each as a
conflict; the first row, written with the offset of its day, stays as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from .server_time import MSC_FIELDS, TIME_FIELDS

log = logging.getLogger(__name__)

BATCH = 500
RETRY_START = 0.5
RETRY_MAX = 15.0
MIGRATION_LOCK = 0x6D7435_0001  # pg_advisory_xact_lock key: "mt5" + 1
DEALS_BACKFILL_DAYS = 30
#: The tables records are written to (the label values of mt5_db_conflicts_total).
RECORD_TABLES = ("mt5_order_requests", "mt5_deals", "mt5_account_snapshots")
CONFLICTS_TABLE = "mt5_record_conflicts"


def digest(value: Any) -> str:
    """SHA-256 of ``value``'s canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def deal_identity(deal: dict[str, Any]) -> dict[str, Any]:
    """What makes a deal that deal: everything but its times, which the service shifts by the
    trade server's offset as it learns it (see the module doc)."""
    return {key: value for key, value in deal.items() if key not in TIME_FIELDS and key not in MSC_FIELDS}


def _deal_row_identity(row: dict[str, Any]) -> dict[str, Any]:
    """:func:`deal_identity` of a ``mt5_deals`` row: no ``time`` column, a ``raw`` without times."""
    same = {column: value for column, value in row.items() if column != "time"}
    if isinstance(same.get("raw"), dict):
        same["raw"] = deal_identity(same["raw"])
    return same


def _whole(row: dict[str, Any]) -> dict[str, Any]:
    return row


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
        self._db.execute("CREATE TABLE IF NOT EXISTS seen_deals (ticket INTEGER PRIMARY KEY, digest TEXT)")
        # A spool from before the digest: its deals have none (NULL), so each is spooled once more
        # when next read, and Postgres tells the same deal (silent) from a different one.
        if "digest" not in {row[1] for row in self._db.execute("PRAGMA table_info(seen_deals)")}:
            self._db.execute("ALTER TABLE seen_deals ADD COLUMN digest TEXT")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._lock = threading.Lock()

    def append(self, kind: str, payloads: list[dict[str, Any]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO spool (kind, payload) VALUES (?, ?)", [(kind, json.dumps(p)) for p in payloads])
            self._db.execute("COMMIT")

    def append_new_deals(self, deals: list[dict[str, Any]]) -> int:
        """Spool the deals not spooled before as they are: a new ticket, or a ticket seen with
        other content (which Postgres then reports as a conflict); return how many."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            fresh = []
            for deal in deals:
                ticket, content = int(deal["ticket"]), digest(deal_identity(deal["deal"]))
                row = self._db.execute("SELECT digest FROM seen_deals WHERE ticket = ?", (ticket,)).fetchone()
                if row is not None and row[0] == content:
                    continue
                self._db.execute("INSERT OR REPLACE INTO seen_deals (ticket, digest) VALUES (?, ?)", (ticket, content))
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


@dataclass(frozen=True)
class _Record:
    """One row to insert: its table, the columns of its unique key, every column's value, and
    what of a row (as plain JSON) tells whether two rows with that key are the same record."""

    table: str
    key: tuple[str, ...]
    values: dict[str, Any]
    identity: Callable[[dict[str, Any]], dict[str, Any]] = _whole


@dataclass(frozen=True)
class Conflict:
    """A record whose key was taken by a row with other content (see the module doc)."""

    table: str
    key: dict[str, Any]
    #: column -> (kept, incoming), plain JSON values
    differs: dict[str, tuple[Any, Any]]

    def describe(self) -> str:
        """``col: kept -> incoming`` for each differing column (JSON documents by name only)."""
        parts = []
        for column, (kept, incoming) in self.differs.items():
            parts.append(column if isinstance(kept, dict | list) else f"{column}: {kept!r} -> {incoming!r}")
        return "; ".join(parts)


def _record(kind: str, p: dict[str, Any]) -> _Record:
    from psycopg.types.json import Jsonb

    if kind == "order":
        return _Record(
            "mt5_order_requests",
            ("record_id",),
            {
                "record_id": p["record_id"],
                "login": p["login"],
                "server": p["server"],
                "requested_at": _ts(p["requested_at"]),
                "operation": p["operation"],
                "idempotency_key": p.get("idempotency_key"),
                "request": Jsonb(p["request"]),
                "http_status": p["http_status"],
                "retcode": p.get("retcode"),
                "result": Jsonb(p["result"]),
            },
        )
    if kind == "deal":
        d = p["deal"]
        return _Record(
            "mt5_deals",
            ("login", "ticket"),
            {
                "login": p["login"],
                "ticket": d["ticket"],
                "order_ticket": d.get("order", 0),
                "time": _ts(d.get("time", 0)),
                "type": d.get("type", 0),
                "entry": d.get("entry", 0),
                "magic": d.get("magic", 0),
                "position_id": d.get("position_id", 0),
                "reason": d.get("reason", 0),
                "volume": d.get("volume", 0.0),
                "price": d.get("price", 0.0),
                "commission": d.get("commission", 0.0),
                "swap": d.get("swap", 0.0),
                "profit": d.get("profit", 0.0),
                "fee": d.get("fee", 0.0),
                "symbol": d.get("symbol", ""),
                "comment": d.get("comment", ""),
                "raw": Jsonb(d),
            },
            _deal_row_identity,
        )
    if kind == "snapshot":
        a = p["account"]
        return _Record(
            "mt5_account_snapshots",
            ("record_id",),
            {
                "record_id": p["record_id"],
                "login": p["login"],
                "taken_at": _ts(p["taken_at"]),
                "balance": a.get("balance", 0.0),
                "equity": a.get("equity", 0.0),
                "margin": a.get("margin", 0.0),
                "margin_free": a.get("margin_free", 0.0),
                "margin_level": a.get("margin_level", 0.0),
                "profit": a.get("profit", 0.0),
                "positions": p["positions"],
                "orders": p["orders"],
                "raw": Jsonb(a),
            },
        )
    raise ValueError(f"unknown spool record kind {kind!r}")


def _plain(value: Any) -> Any:
    """A column's value as JSON: a Jsonb parameter's document, a UUID's and a time's text."""
    from psycopg.types.json import Jsonb

    if isinstance(value, Jsonb):
        return value.obj
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


async def _insert(conn: Any, kind: str, p: dict[str, Any]) -> Conflict | None:
    """Insert one spooled record; return the conflict when its key holds other content.

    ``ON CONFLICT DO NOTHING`` first (the common case: one statement). When nothing was
    inserted, the row holding the key is read and compared column by column: the same record
    is nothing to do; another one goes to ``mt5_record_conflicts`` (keyed by its content, so a
    replayed batch adds no second row and reports nothing twice) and is returned."""
    from psycopg.types.json import Jsonb

    rec = _record(kind, p)
    columns = list(rec.values)
    cur = await conn.execute(
        f"INSERT INTO {rec.table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
        f" ON CONFLICT ({', '.join(rec.key)}) DO NOTHING",
        list(rec.values.values()),
    )
    if cur.rowcount == 1:
        return None
    key = {column: _plain(rec.values[column]) for column in rec.key}
    cur = await conn.execute(
        f"SELECT {', '.join(columns)} FROM {rec.table} WHERE {' AND '.join(f'{column} = %s' for column in rec.key)}",
        [rec.values[column] for column in rec.key],
    )
    row = await cur.fetchone()
    incoming = {column: _plain(value) for column, value in rec.values.items()}
    kept: dict[str, Any] | None
    if row is None:  # row-level security hides it: another login's row holds this UUID
        kept, differs = None, {column: (None, incoming[column]) for column in ("login", *rec.key)}
    else:
        kept = {column: _plain(value) for column, value in zip(columns, row, strict=True)}
        old, new = rec.identity(kept), rec.identity(incoming)
        differs = {column: (old[column], new[column]) for column in new if old.get(column) != new[column]}
    if not differs:
        return None
    cur = await conn.execute(
        f"INSERT INTO {CONFLICTS_TABLE} (login, table_name, record_key, differs, kept, incoming, incoming_sha256)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (table_name, record_key, incoming_sha256) DO NOTHING",
        (incoming["login"], rec.table, Jsonb(key), list(differs), None if kept is None else Jsonb(kept), Jsonb(incoming), digest(incoming)),
    )
    return Conflict(rec.table, key, differs) if cur.rowcount == 1 else None


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
        on_conflict: Callable[[str], None] = lambda table: None,
    ) -> None:
        """``on_pending(n)``: the spool holds n records now; ``on_conflict(table)``: a record
        with a taken key and other content was kept aside (see the module doc)."""
        self.spool = Spool(spool_path)
        self._login, self._server = login, server
        self._dsn, self._password, self._ca_file = dsn, password, ca_file
        self._on_pending = on_pending
        self._on_conflict = on_conflict
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
            conflicts = []
            async with conn.transaction():
                for _seq, kind, payload in batch:
                    conflict = await _insert(conn, kind, payload)
                    if conflict is not None:
                        conflicts.append(conflict)
            # Reported once committed (a batch rolled back and retried reports nothing twice).
            for conflict in conflicts:
                log.warning(
                    "%s: a record with key %s differs from the row already there (%s): the row is kept, the new record is in %s",
                    conflict.table,
                    ", ".join(f"{column}={value}" for column, value in conflict.key.items()),
                    conflict.describe(),
                    CONFLICTS_TABLE,
                )
                self._on_conflict(conflict.table)
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
