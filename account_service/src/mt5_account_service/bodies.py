"""JSON request bodies read strictly: a key given twice is refused, never resolved.

``json.loads`` keeps the last of two equal keys, so ``{"volume": 0.01, "volume": 1}`` would be
an order for 1 lot while a reviewer, a log line or a proxy that keeps the first sees 0.01 (the
gate refuses a query parameter given twice for the same reason). Routes with a body use
:class:`StrictJSONRoute`: FastAPI's body parsing then answers a duplicate key, like any
other JSON error, with a 422 ``invalid_input`` naming it. A number too long for Python's
integer parser (4,300 digits) is a JSON error too, not a 400 without a reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f'the key "{key}" is given twice: send it once')
        out[key] = value
    return out


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses duplicate keys; every refusal a ``json.JSONDecodeError``."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError:
        raise
    except RecursionError:  # nested deeper than the parser's stack: a hostile body, never data
        doc = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        raise json.JSONDecodeError("nested too deeply", doc, 0) from None
    except ValueError as exc:  # a duplicate key, or a number past the int parser's limit
        doc = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        raise json.JSONDecodeError(str(exc), doc, 0) from None


class StrictJSONRequest(Request):
    """A request whose ``json()`` is :func:`loads_strict`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An APIRoute whose handler reads the body with :class:`StrictJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
