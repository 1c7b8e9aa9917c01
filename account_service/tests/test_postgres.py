"""Postgres recording against a real PostgreSQL 15: orders, deals, snapshots, spool."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from mt5_account_service.backends.simulator import SimulatedTerminal
from mt5_account_service.store import Store, apply_migrations, connect_postgres, migrations
from mt5svc_testlib import LOGIN, PostgresServer, wait_until

ORDER = {"symbol": "BTCUSD", "type": "buy", "volume": 0.01}


@pytest.fixture
def pg(postgres_server: PostgresServer) -> PostgresServer:
    postgres_server.reset()
    return postgres_server


def counts(pg: PostgresServer) -> tuple[int, int, int]:
    return pg.query(
        "SELECT (SELECT count(*) FROM mt5_order_requests),"
        " (SELECT count(*) FROM mt5_deals WHERE type <> 2),"
        " (SELECT count(*) FROM mt5_account_snapshots)"
    )[0]


def spool_pending(http: Any) -> float:
    line = next(row for row in http.get("/metrics").text.splitlines() if row.startswith("mt5_db_spool_pending "))
    return float(line.split()[1])


def test_migrations_apply_once_and_are_recorded(pg: PostgresServer) -> None:
    async def run() -> tuple[list[int], list[int]]:
        conn = await connect_postgres(pg.dsn, pg.password)
        try:
            return await apply_migrations(conn), await apply_migrations(conn)
        finally:
            await conn.close()

    versions = [version for version, _ in migrations()]
    first, second = asyncio.run(run())
    assert versions[:2] == [1, 2]
    assert first == versions and second == []
    assert pg.query("SELECT version FROM mt5_schema_migrations ORDER BY version") == [(v,) for v in versions]


def test_row_level_security_reads_the_login_from_the_session_role_and_fails_closed(pg: PostgresServer) -> None:
    """Migration 0002: an account's session (role mt5_account_<login>) gets its login; a role
    that looks like an account's but whose login cannot be read gets -1 (sees no row), and
    only a session that is no account's gets NULL (held by its privileges alone)."""
    import psycopg

    pg.migrate()
    cases = {
        "mt5_account_5001001": 5001001,
        "mt5_account_9223372036854775807": 2**63 - 1,
        "mt5_account_9223372036854775808": -1,
        "mt5_account_abc": -1,
        "mt5_account_": -1,
        "mt5_reader_probe": None,
    }
    seen = {}
    # The bootstrap superuser over the local socket (trusted): only it may create roles.
    with psycopg.connect(host=str(pg.sockdir), port=pg.port, user="pgadmin", dbname="mt5farm", autocommit=True) as conn:
        for role in cases:
            conn.execute(f'CREATE ROLE "{role}" NOLOGIN')
            try:
                conn.execute(f'SET SESSION AUTHORIZATION "{role}"')
                row = conn.execute("SELECT mt5_session_login()").fetchone()
                seen[role] = row[0] if row else "no row"
            finally:
                conn.execute("RESET SESSION AUTHORIZATION")
                conn.execute(f'DROP ROLE "{role}"')
    assert seen == cases


def test_orders_deals_and_snapshots_are_written(start_service: Any, pg: PostgresServer) -> None:
    live = start_service(SimulatedTerminal(), database_url=pg.dsn, postgres_password=pg.password, snapshot_interval=0.5)
    live.wait_healthy()
    with live.client() as http:
        ok = http.post("/api/orders", json=ORDER, headers={"Idempotency-Key": "pg-1"})
        bad = http.post("/api/orders", json={**ORDER, "volume": 0.015})
        http.delete(f"/api/positions/{ok.json()['position']}")
        wait_until(
            lambda: counts(pg)[0] == 3 and counts(pg)[1] == 2 and counts(pg)[2] >= 2,
            timeout=15,
            what="orders, deals and snapshots in postgres",
        )
    rows = pg.query(
        "SELECT operation, http_status, retcode, idempotency_key, login, request->>'symbol' FROM mt5_order_requests ORDER BY id"
    )
    assert rows == [
        ("open", 201, 10009, "pg-1", LOGIN, "BTCUSD"),
        ("open", 422, 10014, None, LOGIN, "BTCUSD"),
        ("close", 200, 10009, None, LOGIN, None),
    ]
    assert bad.status_code == 422
    deals = pg.query("SELECT entry, symbol, login FROM mt5_deals WHERE type <> 2 ORDER BY ticket")
    assert deals == [(0, "BTCUSD", LOGIN), (1, "BTCUSD", LOGIN)]
    (balance,) = pg.query("SELECT balance FROM mt5_account_snapshots ORDER BY id LIMIT 1")[0]
    assert balance == 10_000


def test_postgres_outage_spools_and_flushes_in_order_without_duplicates(start_service: Any, pg: PostgresServer) -> None:
    live = start_service(SimulatedTerminal(), database_url=pg.dsn, postgres_password=pg.password, snapshot_interval=3600)
    live.wait_healthy()
    with live.client() as http:
        wait_until(lambda: counts(pg)[2] == 1, timeout=10, what="the first snapshot")
        pg.stop()
        try:
            tickets = []
            for i in range(5):
                response = http.post("/api/orders", json={**ORDER, "comment": f"n{i}"})
                assert response.status_code == 201  # trading goes on without postgres
                tickets.append(response.json()["order"])
            assert spool_pending(http) >= 5
        finally:
            pg.start()
        wait_until(lambda: spool_pending(http) == 0, timeout=30, what="the spool to drain")
    comments = pg.query("SELECT request->>'comment' FROM mt5_order_requests ORDER BY id")
    assert comments == [(f"n{i}",) for i in range(5)]
    assert counts(pg)[1] == 5  # one opening deal per order, each written once


def test_a_replayed_spool_is_not_written_twice(pg: PostgresServer, tmp_path: Path) -> None:
    async def run() -> None:
        pending: list[int] = []
        store = Store(tmp_path / "spool.sqlite3", LOGIN, "S", pg.dsn, pg.password, pending.append)
        await store.record_order("open", {"n": 1}, 201, {"retcode": 10009}, None)
        await store.record_snapshot(1.0, {"balance": 1.0}, 0, 0)
        await store.record_deals([{"ticket": 77, "order": 1, "time": 1, "symbol": "X"}])
        assert await store.record_deals([{"ticket": 77, "order": 1, "time": 1, "symbol": "X"}]) == 0  # the same deal read again
        # a crash after the Postgres commit but before the spool delete: replay the copy
        for suffix in ("", "-wal"):  # WAL mode: the records may still be in the -wal file
            shutil.copy(tmp_path / f"spool.sqlite3{suffix}", tmp_path / f"before{suffix}")
        assert await store.flush() == 3
        await store.close()
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"spool.sqlite3{suffix}").unlink(missing_ok=True)
        for suffix in ("", "-wal"):
            shutil.copy(tmp_path / f"before{suffix}", tmp_path / f"spool.sqlite3{suffix}")
        replay = Store(tmp_path / "spool.sqlite3", LOGIN, "S", pg.dsn, pg.password, pending.append)
        assert replay.spool.pending() == 3
        assert await replay.flush() == 3
        assert replay.spool.pending() == 0
        await replay.close()

    asyncio.run(run())
    assert pg.query("SELECT count(*) FROM mt5_order_requests")[0][0] == 1
    assert pg.query("SELECT count(*) FROM mt5_account_snapshots")[0][0] == 1
    assert pg.query("SELECT count(*) FROM mt5_deals")[0][0] == 1
