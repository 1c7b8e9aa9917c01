"""The one pure-ASGI layer in front of FastAPI: refuse early, cheaply, before any body is read.

For every HTTP request and WebSocket handshake, in this order:

1. a query parameter that looks like a credential (``?api_key=``, ``?token=``, ...) is 400
   ``key_in_url`` on every route: URLs end up in proxy and access logs, keys must not;
2. ``/api/*`` and ``/ws`` need an API key, ``/metrics`` an API key or the metrics token:
   401 *before* the body is read, so an anonymous client cannot make the service receive,
   buffer or parse anything; a read-only key (``api_key_read``) gets 403 ``read_only_key``
   for any method but GET/HEAD;
3. the body is capped (``MAX_BODY_BYTES``): 413 at once by Content-Length, and a chunked
   body is counted as it arrives and refused as soon as it passes the cap;
4. ``GET /api/account|positions|orders`` are answered here from the last poll's JSON
   (encoded once per poll): FastAPI routing would be most of their cost.

Everything here costs one scan of the request headers; a query string is parsed only when
there is one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException

if TYPE_CHECKING:
    from .service import Service

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Query parameter names (compared lowercased) that carry a credential in common APIs.
KEY_PARAMS = frozenset({"api_key", "apikey", "api-key", "key", "token", "access_token", "x-api-key", "authorization"})
SECTIONS = {"/api/account": "account", "/api/positions": "positions", "/api/orders": "orders"}

UNAUTHORIZED = "missing or wrong API key: send it in the X-API-Key header (or Authorization: Bearer <key>)"
METRICS_UNAUTHORIZED = (
    "/metrics needs a credential: the account's API key (X-API-Key), or the Prometheus metrics token (Authorization: Bearer <token>)"
)
#: The challenge of every 401 (RFC 9110 requires one).
WWW_AUTHENTICATE = 'Bearer realm="mt5-account"'
KEY_IN_URL = "send the key in the X-API-Key header; URLs end up in logs (refused query parameter: {name!r})"
#: What a read-only key may do (api_key_read): read and stream, never change anything.
READ_METHODS = frozenset({"GET", "HEAD"})
READ_ONLY = "this API key can read, not trade: {method} needs a trading key (api_key, not api_key_read)"


def error_body(error: str, message: str, retcode: int | None = None) -> bytes:
    return json.dumps({"error": error, "message": message, "retcode": retcode}).encode()


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body passes the cap. An HTTPException, so FastAPI's
    body reader re-raises it as it is and the app's handler answers 413 as JSON."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, body_too_large_message(limit), headers={"Connection": "close"})


def body_too_large_message(limit: int) -> str:
    return f"the request body is larger than {limit} bytes (MAX_BODY_BYTES)"


@dataclass(frozen=True)
class Heads:
    """What the gate needs from the request headers, found in one pass."""

    key: str | None  # X-API-Key, else the token of Authorization: Bearer
    content_length: int | None  # None: absent; -1: unreadable
    chunked: bool

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


def scan_headers(headers: list[tuple[bytes, bytes]]) -> Heads:
    """X-API-Key wins when it is non-empty; otherwise ``Authorization: Bearer <token>``,
    whose scheme is case-insensitive (RFC 7235). The same rule for REST, fast path and WS."""
    api_key = bearer = None
    length: int | None = None
    chunked = False
    for name, value in headers:
        if name == b"x-api-key":
            if api_key is None and value.strip():
                api_key = value.decode("latin-1").strip()
        elif name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if bearer is None and scheme.lower() == b"bearer" and token.strip():
                bearer = token.decode("latin-1").strip()
        elif name == b"content-length":
            length = int(value) if value.strip().isdigit() else -1
        elif name == b"transfer-encoding":
            chunked = chunked or b"chunked" in value.lower()
    return Heads(api_key if api_key is not None else bearer, length, chunked)


def keys_match(given: str | None, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key (no early exit)."""
    if not given:
        return False
    candidate = given.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode())
    return matched


def key_access(given: str | None, trade_keys: tuple[str, ...], read_keys: tuple[str, ...]) -> str | None:
    """``"trade"``, ``"read"`` or None (no configured key): both sets are compared in full,
    in constant time, whichever matches."""
    trades, reads = keys_match(given, trade_keys), keys_match(given, read_keys)
    return "trade" if trades else "read" if reads else None


def read_only_refused(access: str | None, scope: Mapping[str, Any]) -> bool:
    """Whether a read-only key asks for more than reading (an HTTP method other than GET/HEAD)."""
    return access == "read" and scope["type"] == "http" and scope["method"] not in READ_METHODS


def token_matches_digest(given: str | None, digests: tuple[str, ...]) -> bool:
    """True when sha256(given) is one of ``digests``; compared in constant time."""
    if not given or not digests:
        return False
    candidate = hashlib.sha256(given.encode()).hexdigest().encode()
    matched = False
    for digest in digests:
        matched |= hmac.compare_digest(candidate, digest.encode())
    return matched


def key_in_query(query_string: bytes) -> str | None:
    """The first query parameter whose name is a credential name, or None."""
    for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name.strip().lower() in KEY_PARAMS:
            return name
    return None


def repeated_in_query(query_string: bytes) -> str | None:
    """The first query parameter given more than once, or None. FastAPI would take the last
    one (``?volume=0.01&volume=0.02`` closes 0.02 lots): an ambiguous trading input is refused,
    never guessed."""
    seen: set[str] = set()
    for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return name
        seen.add(name)
    return None


def needs_key(path: str) -> bool:
    return path == "/ws" or path == "/api" or path.startswith("/api/")


class Gate:
    """See the module docstring. ``routes`` maps the fast-path paths to their FastAPI routes
    (still declared for the schema), so request metrics label them like any other route."""

    def __init__(self, app: Any, svc: Service, routes: dict[str, Any]) -> None:
        self.app, self.svc, self.routes = app, svc, routes
        settings = svc.settings
        self._keys, self._digests = settings.api_keys, settings.metrics_token_sha256
        self._read_keys = settings.read_api_keys
        self._cap = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        heads = scan_headers(scope["headers"])
        query = scope.get("query_string")
        name = key_in_query(query) if query else None
        if name is not None:
            await refuse(scope, receive, send, heads, 400, "key_in_url", KEY_IN_URL.format(name=name))
            return
        access = key_access(heads.key, self._keys, self._read_keys)
        if needs_key(path) and access is None:
            await refuse(scope, receive, send, heads, 401, "unauthorized", UNAUTHORIZED)
            return
        if needs_key(path) and read_only_refused(access, scope):
            await refuse(scope, receive, send, heads, 403, "read_only_key", READ_ONLY.format(method=scope["method"]))
            return
        repeated = repeated_in_query(query) if query else None
        if repeated is not None:
            await refuse(scope, receive, send, heads, 422, "invalid_input", f"{repeated}: given more than once in the query; send it once")
            return
        if path == "/metrics" and not (access is not None or token_matches_digest(heads.key, self._digests)):
            await refuse(scope, receive, send, heads, 401, "unauthorized", METRICS_UNAUTHORIZED)
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        if heads.content_length is not None and (heads.content_length > self._cap or heads.content_length < 0):
            status, error, message = (
                (400, "bad_request", "Content-Length is not a number")
                if heads.content_length < 0
                else (413, "body_too_large", body_too_large_message(self._cap))
            )
            await refuse(scope, receive, send, heads, status, error, message)
            return
        section = SECTIONS.get(path) if scope["method"] == "GET" else None
        if section is not None:
            scope["route"] = self.routes.get(path)
            await self._snapshot(section, send)
            return
        if heads.has_body:
            await self._capped(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _snapshot(self, section: str, send: Send) -> None:
        poller = self.svc.poller
        if poller.fresh_snapshot() is None:
            status, body = 503, error_body("backend_unavailable", f"no fresh account data: {poller.health()[1]}")
        else:
            status, body = 200, poller.cached_json(section)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the body through while counting it; past the cap, raise BodyTooLarge from
        ``receive`` (the chunk that crossed it is dropped, nothing more is read)."""
        cap, seen, started = self._cap, 0, False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise BodyTooLarge(cap)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # a route that read the body outside FastAPI's reader
            if started:
                raise
            await respond(send, 413, error_body("body_too_large", str(exc.detail)), close=True)


async def respond(
    send: Send, status: int, body: bytes, close: bool = False, extra: list[tuple[bytes, bytes]] | None = None, prefix: str = "http"
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    if close:  # the body was not read: do not let the client keep the connection
        headers.append((b"connection", b"close"))
    await send({"type": f"{prefix}.response.start", "status": status, "headers": headers})
    await send({"type": f"{prefix}.response.body", "body": body})


async def refuse(scope: Scope, receive: Receive, send: Send, heads: Heads, status: int, error: str, message: str) -> None:
    """Answer an error as JSON without reading the body. A WebSocket handshake gets the same
    HTTP answer through the ASGI denial-response extension (uvicorn has it); without it, the
    handshake is closed (the server then answers 403)."""
    body = error_body(error, message)
    extra = [(b"www-authenticate", WWW_AUTHENTICATE.encode())] if status == 401 else []
    if scope["type"] == "http":
        await respond(send, status, body, close=heads.has_body, extra=extra)
        return
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        await respond(send, status, body, extra=extra, prefix="websocket.http")
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": error})
