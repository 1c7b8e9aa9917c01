"""``/ws``: the live stream of the account (see :mod:`mt5_account_service.ws` for the hub)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, WebSocket

from ..deps import ServiceDep, api_key
from ..ws import encode

router = APIRouter(dependencies=[Depends(api_key)])


@router.websocket("/ws")
async def ws(websocket: WebSocket, svc: ServiceDep) -> None:
    """A ``snapshot`` message on connect, then ``update`` messages with only what
    changed, ``status`` messages when the terminal connection drops or returns, and ``tick``
    messages of the symbols the client subscribes to (:mod:`mt5_account_service.quotes`).
    The gate has checked the API key before the handshake."""
    await websocket.accept()
    client = svc.hub.add(websocket, encode(svc.poller.snapshot_message()))
    await svc.hub.serve(client)
