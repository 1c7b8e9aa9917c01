"""WebSocket fan-out: every client has its own bounded queue and sender task.

:meth:`Hub.broadcast` never awaits a client: it encodes a message once and puts it in every
queue without blocking. A client whose queue is full is too slow (or dead): it is
disconnected with close code 1013 ("try again later") and the others are not delayed.
What a client sends is a quote subscription (:mod:`.quotes`), answered on the same queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from .quotes import QuoteFeed, Subscription, send_quotes

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 1013
CLOSE_GOING_AWAY = 1001


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


class Client:
    def __init__(self, ws: WebSocket, queue_size: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.dropped = asyncio.Event()
        self.close_code = CLOSE_GOING_AWAY
        self.close_reason = ""
        self.quotes = Subscription()

    def offer(self, text: str) -> bool:
        """Queue ``text``; False (and the client marked for disconnect) if the queue is full."""
        if self.dropped.is_set():
            return False
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            self.close_code, self.close_reason = CLOSE_TOO_SLOW, "client too slow: queue full"
            self.dropped.set()
            log.warning("disconnecting a WebSocket client: %s", self.close_reason)  # once: later offers return early
            return False

    def offer_message(self, message: dict[str, Any]) -> None:
        """Queue one message for this client alone."""
        self.offer(encode(message))


class Hub:
    """The set of connected clients and the fan-out to them."""

    def __init__(self, queue_size: int, on_count: Callable[[int], None], feed: QuoteFeed | None = None) -> None:
        self._clients: set[Client] = set()
        self._queue_size = queue_size
        self._on_count = on_count
        self.feed = feed

    @property
    def count(self) -> int:
        return len(self._clients)

    def add(self, ws: WebSocket, first_message: str) -> Client:
        """Register a client with its snapshot already queued (no await in between)."""
        client = Client(ws, self._queue_size)
        client.offer(first_message)
        self._clients.add(client)
        self._on_count(len(self._clients))
        return client

    def remove(self, client: Client) -> None:
        self._clients.discard(client)
        if self.feed is not None:
            self.feed.unsubscribe(client)
        self._on_count(len(self._clients))

    def broadcast(self, message: dict[str, Any]) -> None:
        if not self._clients:
            return
        text = encode(message)
        for client in list(self._clients):
            client.offer(text)

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "service stopping") -> None:
        for client in list(self._clients):
            client.close_code, client.close_reason = code, reason
            client.dropped.set()

    async def serve(self, client: Client) -> None:
        """Run one client until it leaves, is dropped, or the service stops."""
        sender = asyncio.create_task(self._send_loop(client))
        receiver = asyncio.create_task(self._receive_loop(client))
        dropped = asyncio.create_task(client.dropped.wait())
        quotes = asyncio.create_task(send_quotes(client))
        tasks = (sender, receiver, dropped, quotes)
        try:
            await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.remove(client)
            if client.dropped.is_set():
                try:
                    await asyncio.wait_for(client.ws.close(code=client.close_code, reason=client.close_reason), 1.0)
                except Exception:  # noqa: BLE001 - the peer may already be gone
                    pass

    @staticmethod
    async def _send_loop(client: Client) -> None:
        while True:
            text = await client.queue.get()
            await client.ws.send_text(text)

    async def _receive_loop(self, client: Client) -> None:
        try:
            while True:
                message = await client.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if self.feed is not None:
                    text = message.get("text") or (message.get("bytes") or b"").decode("utf-8", "replace")
                    client.offer_message(await self.feed.handle(client, text))
        except (WebSocketDisconnect, RuntimeError):
            return
