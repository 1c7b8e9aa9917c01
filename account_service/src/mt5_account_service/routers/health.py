"""``/health`` for Docker's healthcheck (open: it shows no balance) and ``/metrics`` for
Prometheus (the gate lets only the API key or the metrics token through)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ..deps import ServiceDep
from ..errors import responses
from ..models import HealthOut

#: Prometheus' text exposition format.
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter()


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}, **responses(400, 413)})
async def health(svc: ServiceDep) -> JSONResponse:
    # 200 when the terminal is connected and the last poll is fresh, else 503 with the same
    # body. (No docstring: FastAPI would publish it as the operation's description.)
    # Trading can be off while everything else is healthy (AutoTrading off, an investor
    # login): the status stays ok (reads work, nothing to restart) and trade_allowed says so.
    healthy, reason = svc.poller.health()
    age = svc.poller.last_poll_age()
    blocked = svc.poller.trading_block() if svc.poller.connected else None
    body = {
        "status": "ok" if healthy else "degraded",
        "connected": svc.poller.connected,
        "last_poll_age": None if age is None else round(age, 3),
        "reason": reason,
        "trade_allowed": None if not svc.poller.connected or svc.poller.snapshot is None else blocked is None,
        "trade_reason": blocked,
        "auth_failed": svc.poller.auth_failed,
        "server_time_offset": svc.gateway.server_clock.offset,
        "server_time_offset_source": svc.gateway.server_clock.source,
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(svc: ServiceDep) -> Response:
    """The gate lets only the API key or the metrics token through (balance is here)."""
    return Response(svc.metrics.render(), media_type=PROMETHEUS_TEXT)
