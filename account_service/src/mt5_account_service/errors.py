"""Errors of the API: one JSON shape for every refusal, the handlers that produce it, and
the OpenAPI ``responses`` that document it.

Every error body is ``{"error": <id>, "message": <a sentence>, "retcode": <MT5 retcode or
null>}``; every 429 carries ``Retry-After``; a 405 names every allowed method in ``Allow``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from .gateway import BackendError, BackendInvalidArgument, BackendUnavailable
from .models import PATTERN_RULES, ErrorOut

#: Seconds a client should wait after a 429 (the trade server's "too many requests").
RETRY_AFTER_SECONDS = 1

#: Error ids of the HTTP errors Starlette and the gate raise (by status); others are "http_error".
HTTP_ERROR_IDS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}

_ERROR_TEXT = {
    400: "bad request (e.g. an API key in the URL)",
    401: "missing or wrong API key",
    404: "not found",
    409: "conflict (market closed, price changed, Idempotency-Key in use, ...)",
    413: "request body larger than MAX_BODY_BYTES",
    422: "invalid input, or refused before or by the trade server",
    429: "too many requests: retry after Retry-After seconds",
    502: "the terminal or trade server answered with an error",
    503: "the terminal is not connected, or its data is not fresh",
    504: "the trade server did not answer in time",
}
_RETRY_AFTER_HEADER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}

#: Strict number fields refuse booleans and strings: say so, "valid number" alone puzzles.
_STRICT_TYPES = {
    "float_type": " (a JSON number: not a string, not true/false)",
    "int_type": " (a whole JSON number: not a string, not true/false)",
}
#: pydantic's datetime findings, said as what to write instead.
_TIME_TEXT = "a time: ISO 8601 (2026-12-01T00:00:00Z; without a zone, UTC) or Unix seconds"
_TIME_ERRORS = frozenset({"datetime_from_date_parsing", "datetime_parsing", "datetime_type", "datetime_object_invalid"})


class ApiError(Exception):
    """A refusal a route raises: answered as ``status`` with the error body (see module doc)."""

    def __init__(self, status: int, error: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.headers = dict(headers) if headers else None


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer (all ErrorOut); a 429
    also documents its Retry-After header."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        out[code] = {"model": ErrorOut, "description": _ERROR_TEXT[code]}
        if code == 429:
            out[code]["headers"] = _RETRY_AFTER_HEADER
    return out


# Every route answers 400 (key in URL) and 413 (body cap) from the gate.
#: The three snapshot reads (the gate answers them from the last poll).
SNAPSHOT_ERRORS = responses(400, 401, 413, 503)
#: Reads that ask the terminal and take parameters.
READ_ERRORS = responses(400, 401, 413, 422, 503)
#: Everything a trading route can answer besides its success.
TRADE_ERRORS = responses(400, 401, 404, 409, 413, 422, 429, 502, 503, 504)


def with_retry_after(status: int, headers: dict[str, str] | None = None) -> dict[str, str] | None:
    """``headers``, plus ``Retry-After`` when ``status`` is 429: every 429 tells the client
    when to come back (RFC 6585, RFC 9110)."""
    if status != 429:
        return headers
    return {**(headers or {}), "Retry-After": str(RETRY_AFTER_SECONDS)}


def error_response(
    status: int, error: str, message: str, retcode: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The error body as a JSON response (with Retry-After on a 429)."""
    return JSONResponse(
        {"error": error, "message": message, "retcode": retcode}, status_code=status, headers=with_retry_after(status, headers)
    )


_SEND_JSON = "send one JSON object with Content-Type: application/json"


def validation_message(exc: RequestValidationError) -> str:
    """One sentence for all of pydantic's findings: ``field.path: what is wrong; ...``."""
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        kind, ctx = str(err.get("type")), err.get("ctx") or {}
        if kind == "json_invalid":
            where = f" at character {loc[-1]}" if loc and loc[-1] != "0" else ""
            msg, loc = f"the body is not valid JSON ({ctx.get('error', 'JSON decode error')}{where}): {_SEND_JSON}", []
        elif loc == [] and kind == "missing":
            msg = f"the body is missing: {_SEND_JSON}"
        elif loc == [] and kind in ("model_attributes_type", "dict_type"):
            msg = f"the body is not a JSON object: {_SEND_JSON}"
        elif kind in _STRICT_TYPES:
            msg += _STRICT_TYPES[kind]
        elif kind in _TIME_ERRORS:
            msg = _TIME_TEXT
        elif kind == "string_pattern_mismatch":
            msg = PATTERN_RULES.get(str(ctx.get("pattern")), "not of the expected form (see the schema at /docs)")
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """Every method some route serves at this request's path, sorted and comma-separated
    (GET /api/orders and POST /api/orders are two routes, in two routers)."""
    methods: set[str] = set()
    # FastAPI keeps an included router as one entry of app.routes; iter_route_contexts
    # yields every route in it as served (path, methods), like the app's own routes.
    for route in iter_route_contexts(routes):
        if route.methods and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


# --- handlers: registered by create_app through FastAPI(exception_handlers=...) ---------------


async def api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.error, exc.message, headers=exc.headers)


async def invalid_input(_: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, "invalid_input", validation_message(exc))


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # exc.headers carries e.g. Allow on a 405 (RFC 9110 requires it) and Connection:
    # close on a 413; dropping them would break clients.
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # Starlette's Allow names only the first matching route
        headers["Allow"] = allowed_methods(request.app.routes, request.scope)
    return error_response(exc.status_code, HTTP_ERROR_IDS.get(exc.status_code, "http_error"), str(exc.detail), headers=headers)


async def backend_unavailable(_: Request, exc: BackendUnavailable) -> JSONResponse:
    return error_response(503, "backend_unavailable", f"the terminal is not reachable: {exc}")


async def backend_invalid_argument(_: Request, exc: BackendInvalidArgument) -> JSONResponse:
    return error_response(422, "invalid_argument", f"the terminal refused an argument of the request: {exc}")


async def backend_error(_: Request, exc: BackendError) -> JSONResponse:
    return error_response(502, "backend_error", f"the terminal returned an error: {exc}")


#: FastAPI picks the handler of the most specific class (BackendUnavailable is a BackendError).
#: The value type is FastAPI's own: it takes the exception as Any.
EXCEPTION_HANDLERS: dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    ApiError: api_error,
    RequestValidationError: invalid_input,
    StarletteHTTPException: http_error,
    BackendUnavailable: backend_unavailable,
    BackendInvalidArgument: backend_invalid_argument,
    BackendError: backend_error,
}
