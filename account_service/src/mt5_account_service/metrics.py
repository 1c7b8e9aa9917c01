"""Prometheus metrics of one service instance (its own registry, owned by the app).

Names are a contract with the monitoring role: see the README's metrics table.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Fine around 1-200 ms so that p95 over 200 ms (the PRD's alert) is exact enough.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
POLL_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Metrics:
    """Every metric the service exports, registered in a private registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mt5_api_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"], registry=r
        )
        self.request_duration = Histogram(
            "mt5_api_request_duration_seconds",
            "HTTP request latency by route and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ws_clients = Gauge("mt5_ws_clients", "Connected WebSocket clients", registry=r)
        self.poll_duration = Histogram(
            "mt5_poll_duration_seconds", "Duration of one backend snapshot poll", buckets=POLL_BUCKETS, registry=r
        )
        self.backend_connected = Gauge("mt5_backend_connected", "1 when the backend (terminal) is connected", registry=r)
        self.trade_allowed = Gauge(
            "mt5_trade_allowed",
            "1 when the terminal and the account allow trading (AutoTrading on, Python API trading on, not an investor login)",
            registry=r,
        )
        self.auth_failed = Gauge(
            "mt5_auth_failed", "1 while the service has stopped logging in because the trade server refused the login", registry=r
        )
        self.terminal_build = Gauge(
            "mt5_terminal_build", "Build of the running MT5 terminal (terminal_info().build; 0 until the first poll)", registry=r
        )
        self.image_terminal_build = Gauge(
            "mt5_image_terminal_build",
            "Build of the MT5 terminal the image was built with (MT5_IMAGE_BUILD; 0: unknown). "
            "Differs from mt5_terminal_build after a LiveUpdate",
            registry=r,
        )
        self.server_time_offset = Gauge(
            "mt5_server_time_offset_seconds",
            "Seconds the trade server's clock is ahead of UTC (learned from quotes or configured; 0 while unknown)",
            registry=r,
        )
        self.last_poll = Gauge("mt5_last_poll_timestamp_seconds", "Unix time of the last successful poll", registry=r)
        self.balance = Gauge("mt5_account_balance", "Account balance", registry=r)
        self.equity = Gauge("mt5_account_equity", "Account equity", registry=r)
        self.margin_level = Gauge("mt5_account_margin_level", "Margin level in percent (0 without open positions)", registry=r)
        self.open_positions = Gauge("mt5_open_positions", "Open positions", registry=r)
        self.pending_orders = Gauge("mt5_pending_orders", "Pending orders", registry=r)
        self.orders = Counter("mt5_orders_total", "Trade requests by result", ["result"], registry=r)
        self.db_spool_pending = Gauge("mt5_db_spool_pending", "Records spooled locally, not yet written to Postgres", registry=r)
        self.db_conflicts = Counter(
            "mt5_db_conflicts_total",
            "Records that arrived with the key of a row already in Postgres but other content (the row is kept, the record"
            " goes to mt5_record_conflicts)",
            ["table"],
            registry=r,
        )
        self.info = Gauge(
            "mt5_account_info", "Static facts about this service (always 1)", ["login", "server", "backend", "version"], registry=r
        )
        self._children: dict[tuple[str, str], Any] = {}
        self._counters: dict[tuple[str, str, int], Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.request_duration.labels(route, method)
        child.observe(seconds)
        counter_key = (route, method, status)
        counter = self._counters.get(counter_key)
        if counter is None:
            counter = self._counters[counter_key] = self.requests.labels(route, method, str(status))
        counter.inc()

    def observe_account(self, account: dict[str, Any], positions: int, orders: int) -> None:
        self.balance.set(float(account.get("balance") or 0.0))
        self.equity.set(float(account.get("equity") or 0.0))
        self.margin_level.set(float(account.get("margin_level") or 0.0))
        self.open_positions.set(positions)
        self.pending_orders.set(orders)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Pure ASGI middleware: count and time every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            # path_format drops converters: /api/symbols/{symbol}, not {symbol:path}.
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(template, scope["method"], status, time.perf_counter() - start)
