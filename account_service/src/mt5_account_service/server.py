"""uvicorn's httptools protocol with read deadlines.

uvicorn has no header-read timeout: a client that opens a connection and sends half a
request line (or nothing) holds it forever, and a few thousand such clients exhaust the
process's file descriptors (slowloris). Its keep-alive timeout only runs *between*
requests. This protocol starts a deadline when the connection opens and when a request
begins, moves it to the body deadline when the headers are complete, and clears it when the
request has been received; a connection that misses it is closed (408 when no response has
been started). The app's own processing time is not limited.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Seconds a client gets to send the request line and headers: a real client sends them
#: in one packet; 10 s is generous for a slow mobile link and short for a slowloris.
HEADER_TIMEOUT = 10.0
#: Seconds a client gets to send the body once the headers are in. Bodies are capped at
#: MAX_BODY_BYTES (64 KiB by default): 30 s is ~17 kbit/s, slower than any real client.
BODY_TIMEOUT = 30.0

#: Bytes a request line and its headers may take together (Nginx's own cap is 8 KiB per line;
#: a real client sends a few hundred bytes). Without it httptools buffers a header of any
#: size, so one anonymous request could stall and bloat the service (found: a 64 MB header
#: froze it past the watchdog's grace).
MAX_HEAD_BYTES = 32 * 1024


def _json_response(status: bytes, error: str, message: str) -> bytes:
    body = json.dumps({"error": error, "retcode": None, "message": message}).encode()
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + body
    )


_HEAD_TOO_LARGE = _json_response(
    b"431 Request Header Fields Too Large", "header_too_large", f"the request line and headers are larger than {MAX_HEAD_BYTES} bytes"
)
_TIMEOUT_BODY = json.dumps({"error": "request_timeout", "retcode": None, "message": "the request was not received in time"}).encode()
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _TIMEOUT_BODY
)


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring; the deadlines are class attributes (see :func:`protocol`)."""

    header_timeout = HEADER_TIMEOUT
    body_timeout = BODY_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None
    _in_headers = False
    _in_body = False
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if not self._in_body:  # a request line and headers: count them before httptools buffers
            end = data.find(b"\r\n\r\n")  # what follows the blank line is the body
            self._head_bytes += len(data) if end < 0 else end
            if self._head_bytes > MAX_HEAD_BYTES:
                self._disarm()
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.write(_HEAD_TOO_LARGE)
                    self.transport.close()
                return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers what httptools cannot parse (a bad method, version or framing) with
        text/plain; every answer of the API is JSON."""
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_json_response(b"400 Bad Request", "bad_request", f"the request is not valid HTTP/1.1: {msg}"))
            self.transport.close()

    def _arm(self, seconds: float, in_headers: bool) -> None:
        self._disarm()
        self._in_headers = in_headers
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        cycle = getattr(self, "cycle", None)
        started = cycle is not None and cycle.response_started and not self._in_headers
        if not started:
            transport.write(_TIMEOUT_RESPONSE)
        transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm(self.header_timeout, in_headers=True)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # not reset by a byte dribbled after connection_made
            self._arm(self.header_timeout, in_headers=True)

    def on_headers_complete(self) -> None:
        self._in_body, self._head_bytes = True, 0
        super().on_headers_complete()
        self._arm(self.body_timeout, in_headers=False)

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()
        self._disarm()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the WebSocket protocol has its own pings and timeouts
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol(header_timeout: float = HEADER_TIMEOUT, body_timeout: float = BODY_TIMEOUT) -> type[DeadlineHttpToolsProtocol]:
    """The protocol class to pass as ``uvicorn.run(http=...)`` with these deadlines."""
    return type("DeadlineHttpToolsProtocol", (DeadlineHttpToolsProtocol,), {"header_timeout": header_timeout, "body_timeout": body_timeout})
