"""Image tags (a hash of every build input): filters over mt5farm.image_hash."""

from __future__ import annotations

from typing import Any

from mt5farm import ansible_filters, image_hash


class FilterModule:
    """MT5 Farm image-tag filters."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters(
            {
                "mt5_image_input_hash": image_hash.mt5_image_input_hash,
                "mt5_image_sha256": image_hash.mt5_image_sha256,
            }
        )
