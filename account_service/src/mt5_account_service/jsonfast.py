"""JSON for the large answers (bars, ticks): orjson when it is installed (the ``fast``
extra; the Linux images and the tests have it, 10,000 bars in ~2 ms instead of ~20), else
the json module. Both write compact JSON of dicts, lists, str, int, float, bool and None
alike; a NaN or infinity (never in MT5's records) becomes null with orjson, where the json
module would write a token no JSON parser reads."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the images and the tests install it
    orjson = None  # type: ignore[assignment]


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON, UTF-8."""
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":")).encode()
