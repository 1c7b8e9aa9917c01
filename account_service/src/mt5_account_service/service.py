"""What one app instance owns, and its background work.

:func:`build_service` wires the backend gateway, poller, WebSocket hub, metrics registry and
the optional stores into one :class:`Service`; :func:`running` starts its workers and stops
them again (the app's lifespan). The routes reach the service through
:data:`mt5_account_service.deps.ServiceDep`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import __version__
from .backends import make_backend
from .config import Settings
from .gateway import Gateway, Snapshot
from .idempotency import IdempotencyStore
from .login_guard import LoginGuard
from .metrics import Metrics
from .poller import Poller
from .quotes import QuoteFeed
from .ws import Hub

if TYPE_CHECKING:  # imported when configured only: they pull in the Postgres and Redis clients
    from .registry import Registry
    from .store import Store

log = logging.getLogger(__name__)

#: How often the stores are pruned (idempotency keys past their TTL, old snapshots), seconds.
MAINTENANCE_INTERVAL = 3600.0


@dataclass
class Service:
    """Everything one app instance owns."""

    settings: Settings
    metrics: Metrics
    hub: Hub
    gateway: Gateway
    poller: Poller
    idempotency: IdempotencyStore
    store: Store | None = None
    registry: Registry | None = None
    #: One trade at a time reaches the terminal (its checks read the state the last one left).
    trade_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Set when the deals should be read again (positions/orders changed, or a trade was sent).
    deals_due: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class TicketWatch:
    """The poller's ``on_snapshot``: sets ``due`` whenever the set of open positions and
    pending orders differs from the last snapshot's (and on the first snapshot)."""

    def __init__(self, due: asyncio.Event) -> None:
        self.due = due
        self._tickets: frozenset[int] | None = None

    def __call__(self, snap: Snapshot, changes: dict[str, Any] | None) -> None:
        # Orders are negated so a position and an order with the same ticket differ.
        tickets = frozenset(snap.positions) | frozenset(-t for t in snap.orders)
        if self._tickets != tickets:
            self._tickets = tickets
            self.due.set()


def build_service(settings: Settings, backend: Any | None) -> Service:
    """The service for ``settings``; ``backend`` overrides MT5_BACKEND (tests pass a
    SimulatedTerminal). Nothing runs until :func:`running`."""
    metrics = Metrics()
    hub = Hub(settings.ws_queue_size, metrics.ws_clients.set)
    gateway = Gateway(backend if backend is not None else make_backend(settings), settings)
    hub.feed = QuoteFeed(gateway)
    deals_due = asyncio.Event()
    poller = Poller(
        gateway,
        hub,
        metrics,
        settings.poll_interval,
        settings.stale_after,
        on_snapshot=TicketWatch(deals_due),
        login_guard=LoginGuard(settings.state_dir, settings.secrets_dir / "password"),
    )
    svc = Service(
        settings, metrics, hub, gateway, poller, IdempotencyStore(settings.state_dir / "idempotency.sqlite3"), deals_due=deals_due
    )
    if settings.database_url:
        from .store import RECORD_TABLES, Store

        for table in RECORD_TABLES:  # exported at 0 from the start, so increase() sees the first one
            metrics.db_conflicts.labels(table)
        svc.store = Store(
            settings.state_dir / "pg-spool.sqlite3",
            settings.login,
            settings.server,
            settings.database_url,
            settings.postgres_password,
            metrics.db_spool_pending.set,
            ca_file=settings.tls_ca_file,
            on_conflict=lambda table: metrics.db_conflicts.labels(table).inc(),
        )
    if settings.redis_url:
        from .registry import Registry, registration, started_now

        svc.registry = Registry(
            settings.redis_url,
            settings.redis_password,
            settings.login,
            registration(settings.endpoint, settings.server, settings.backend, started_now()),
            settings.redis_ttl,
            ca_file=settings.tls_ca_file,
        )
    return svc


@asynccontextmanager
async def running(svc: Service) -> AsyncIterator[None]:
    """Run the service's workers (poller, maintenance, Postgres flusher and recorder, Redis
    registration) while the block runs; then stop them and close every connection."""
    settings = svc.settings
    svc.metrics.info.labels(str(settings.login), settings.server, settings.backend, __version__).set(1)
    svc.metrics.backend_connected.set(0)
    svc.metrics.image_terminal_build.set(settings.image_build or 0)
    svc.tasks.append(asyncio.create_task(svc.poller.run(), name="poller"))
    svc.tasks.append(asyncio.create_task(maintenance_loop(svc), name="maintenance"))
    if svc.hub.feed is not None:
        svc.tasks.append(asyncio.create_task(svc.hub.feed.run(), name="quotes"))
    if svc.store is not None:
        svc.tasks.append(asyncio.create_task(svc.store.run(), name="pg-flusher"))
        svc.tasks.append(asyncio.create_task(record_loop(svc, svc.store), name="recorder"))
    if svc.registry is not None:
        svc.tasks.append(asyncio.create_task(svc.registry.run(), name="redis"))
    # Everything loaded so far lives as long as the process: keep it out of the
    # collector's way, so full collections under load stay short.
    gc.collect()
    gc.freeze()
    log.info("account service started: login=%s backend=%s port=%s", settings.login, settings.backend, settings.service_port)
    try:
        yield
    finally:
        svc.poller.stop()
        svc.hub.close_all()
        for task in svc.tasks:
            task.cancel()
        await asyncio.gather(*svc.tasks, return_exceptions=True)
        if svc.registry is not None:
            await svc.registry.close()
        if svc.store is not None:
            await svc.store.close()
        await svc.gateway.close()
        svc.idempotency.close()
        log.info("account service stopped")


async def maintenance_loop(svc: Service) -> None:
    """Every MAINTENANCE_INTERVAL: drop idempotency keys past their TTL and this account's
    snapshots past SNAPSHOT_RETENTION_DAYS, so neither grows without bound. The first run
    is one interval after start (the idempotency store prunes itself when it opens)."""
    while True:
        await asyncio.sleep(MAINTENANCE_INTERVAL)
        try:
            removed = await asyncio.to_thread(svc.idempotency.prune)
            if removed:
                log.info("pruned %d expired idempotency keys", removed)
        except Exception as exc:  # noqa: BLE001 - try again next time
            log.warning("pruning idempotency keys failed: %s", exc)
        if svc.store is not None:
            await svc.store.prune_snapshots(svc.settings.snapshot_retention_days)


async def record_loop(svc: Service, store: Store) -> None:
    """Account snapshots every SNAPSHOT_INTERVAL; deals whenever positions/orders change."""
    interval = svc.settings.snapshot_interval
    next_snapshot = time.monotonic()
    while True:
        try:
            try:
                await asyncio.wait_for(svc.deals_due.wait(), timeout=max(next_snapshot - time.monotonic(), 0.05))
            except TimeoutError:
                pass
            snap = svc.poller.fresh_snapshot()
            if snap is None:
                await asyncio.sleep(min(interval, 1.0))
                continue
            periodic = time.monotonic() >= next_snapshot
            if periodic:
                next_snapshot = time.monotonic() + interval
                await store.record_snapshot(snap.taken_at, snap.account, len(snap.positions), len(snap.orders))
            if periodic or svc.deals_due.is_set():
                svc.deals_due.clear()
                now = time.time()
                lo, hi = store.deals_window(now)
                deals = await svc.gateway.call("history_deals_get", lo, hi)
                await store.record_deals(deals)
                await asyncio.to_thread(store.mark_deals_scanned, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep recording after any hiccup
            log.warning("recording snapshot/deals failed: %s", exc)
            await asyncio.sleep(1.0)
