"""Redis registration against a real redis-server (password from the secret file)."""

from __future__ import annotations

import json
import time
from typing import Any

from mt5_account_service.backends.simulator import SimulatedTerminal
from mt5svc_testlib import LOGIN, RedisServer, wait_until

KEY = f"mt5:account:{LOGIN}"


def test_service_registers_with_ttl_and_deregisters_on_clean_stop(start_service: Any, redis_server: RedisServer) -> None:
    r = redis_server.client()
    live = start_service(
        SimulatedTerminal(), redis_url=redis_server.url, redis_password=redis_server.password, redis_ttl=3, advertise_url="10.0.0.5:18123"
    )
    value = wait_until(lambda: r.get(KEY), timeout=5, what="the registration key")
    entry = json.loads(value)
    assert entry["endpoint"] == "10.0.0.5:18123"
    assert entry["server"] == "MT5Farm-Simulator" and entry["backend"] == "simulator"
    assert abs(entry["started"] - time.time()) < 30
    assert 0 < r.ttl(KEY) <= 3
    assert str(LOGIN) in r.smembers("mt5:accounts")
    time.sleep(3.5)  # longer than the TTL: the heartbeat kept it alive
    assert r.get(KEY) == value
    live.stop()
    assert r.get(KEY) is None
    assert str(LOGIN) not in r.smembers("mt5:accounts")


def test_service_keeps_serving_when_redis_is_unreachable(start_service: Any) -> None:
    live = start_service(SimulatedTerminal(), redis_url="redis://127.0.0.1:1/0", redis_ttl=3)
    live.wait_healthy()
    with live.client() as http:
        assert http.get("/api/account").status_code == 200
