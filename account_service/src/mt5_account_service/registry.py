"""Redis registration: ``mt5:account:<login>`` -> this service's endpoint, with a TTL.

The key is refreshed every TTL/3 seconds, so it disappears within one TTL when the service
dies, and is deleted at once on a clean stop. The login is also kept in the set
``mt5:accounts``. Redis being down never stops the service: registration is retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ACCOUNTS_SET = "mt5:accounts"


def account_key(login: int) -> str:
    return f"mt5:account:{login}"


def registration(endpoint: str, server: str, backend: str, started: float) -> str:
    return json.dumps({"endpoint": endpoint, "server": server, "backend": backend, "started": started}, separators=(",", ":"))


def tls_options(url: str, ca_file: Path | None) -> dict[str, Any]:
    """redis-py's TLS keywords for ``url``: none for ``redis://``; for ``rediss://`` a verified
    server (certificate against ``ca_file``, else the system's CAs, and its name against the
    host dialled)."""
    if not url.startswith("rediss://"):
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if ca_file is not None:
        options["ssl_ca_certs"] = str(ca_file)
    return options


class Registry:
    def __init__(self, url: str, password: str | None, login: int, value: str, ttl: int, ca_file: Path | None = None) -> None:
        import redis.asyncio as aioredis

        self._client: Any = aioredis.Redis.from_url(
            url, password=password, socket_timeout=3, socket_connect_timeout=3, **tls_options(url, ca_file)
        )
        self._login, self._value, self._ttl = login, value, ttl
        self.registered = False

    async def heartbeat(self) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(account_key(self._login), self._value, ex=self._ttl)
            pipe.sadd(ACCOUNTS_SET, str(self._login))
            await pipe.execute()
        self.registered = True

    async def run(self) -> None:
        interval = max(self._ttl / 3.0, 1.0)
        while True:
            try:
                await self.heartbeat()
                await asyncio.sleep(interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down: retry, keep serving
                self.registered = False
                log.warning("redis registration failed, retrying: %s", exc)
                await asyncio.sleep(min(interval, 2.0))

    async def close(self) -> None:
        """Deregister (best effort, bounded) and close the client."""
        try:
            async with asyncio.timeout(3):
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.delete(account_key(self._login))
                    pipe.srem(ACCOUNTS_SET, str(self._login))
                    await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - shutting down: the key expires after REDIS_TTL anyway
            log.warning("could not deregister from redis: %s", exc)
        try:
            await self._client.aclose()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


def started_now() -> float:
    return round(time.time(), 3)
