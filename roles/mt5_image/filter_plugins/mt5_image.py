"""Filters of the mt5_image role: the image tag is a hash of every build input.

A thin shim over ``mt5farm.image_hash`` (the logic, its documentation and its tests).
"""

from __future__ import annotations

from typing import Any

from mt5farm.image_hash import mt5_image_input_hash, mt5_image_sha256


class FilterModule:
    """mt5_image_input_hash: the tag of an input set; mt5_image_sha256: sha256 hex of a rendered text."""

    def filters(self) -> dict[str, Any]:
        return {"mt5_image_input_hash": mt5_image_input_hash, "mt5_image_sha256": mt5_image_sha256}
