"""Dependencies of the routes, as ``Annotated`` aliases.

``ServiceDep`` is the app's :class:`~mt5_account_service.service.Service`. :func:`api_key`
guards a whole router (``APIRouter(dependencies=[Depends(api_key)])``): no route needs the
key's value, only that it is valid. Neither adds anything to the OpenAPI schema: they read
the connection, not a declared parameter.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, WebSocketException
from starlette.requests import HTTPConnection
from starlette.status import WS_1008_POLICY_VIOLATION

from .errors import ApiError
from .gate import READ_ONLY, UNAUTHORIZED, WWW_AUTHENTICATE, key_access, read_only_refused, scan_headers
from .service import Service


def get_service(conn: HTTPConnection) -> Service:
    """The service that ``create_app`` put on ``app.state.svc``."""
    svc: Service = conn.app.state.svc
    return svc


ServiceDep = Annotated[Service, Depends(get_service)]


#: Each route's query parameter names (by route object), found once.
_QUERY_NAMES: dict[int, frozenset[str]] = {}


def route_query_names(route: Any) -> frozenset[str]:
    """The query parameters ``route`` declares (its dependencies' included)."""
    key = id(route)
    if key not in _QUERY_NAMES:
        names: set[str] = set()
        pending = [getattr(route, "dependant", None)]
        while pending:
            dependant = pending.pop()
            if dependant is not None:
                names.update(p.alias for p in dependant.query_params)
                pending.extend(dependant.dependencies)
        _QUERY_NAMES[key] = frozenset(names)
    return _QUERY_NAMES[key]


def known_query(conn: HTTPConnection) -> None:
    """ApiError 422 for a query parameter the route does not take: a misspelled or
    unsupported one (``DELETE /api/positions?symbol=X&volume=0.01``) is refused, never
    silently dropped so that the request does something else than its sender meant."""
    if not conn.scope.get("query_string"):
        return
    route = conn.scope.get("route")
    if route is None:
        return
    taken = route_query_names(route)
    unknown = sorted(set(conn.query_params) - taken)
    if unknown:
        takes = ", ".join(sorted(taken)) or "none"
        raise ApiError(422, "invalid_input", f"{unknown[0][:40]}: not a query parameter of this route (it takes: {takes})")


def api_key(conn: HTTPConnection, svc: ServiceDep) -> str:
    """The caller's API key (X-API-Key, else Authorization: Bearer), one of the configured keys;
    a read-only one (``api_key_read``) for GET/HEAD and the WebSocket only (else 403).

    The gate has already refused a request without a valid key (401, before the body is
    read) for every path it guards (``/api/*``, ``/ws``); checking again here keeps a route
    safe if it is ever served outside those paths. Raises :class:`ApiError` 401 (HTTP) or
    closes the WebSocket handshake with 1008 (policy violation).
    """
    given = scan_headers(conn.scope["headers"]).key
    access = key_access(given, svc.settings.api_keys, svc.settings.read_api_keys)
    if given is None or access is None:
        if conn.scope["type"] == "websocket":
            raise WebSocketException(WS_1008_POLICY_VIOLATION, "unauthorized")
        raise ApiError(401, "unauthorized", UNAUTHORIZED, headers={"WWW-Authenticate": WWW_AUTHENTICATE})
    if read_only_refused(access, conn.scope):
        raise ApiError(403, "read_only_key", READ_ONLY.format(method=conn.scope["method"]))
    return given
