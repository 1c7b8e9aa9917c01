"""The account containers' Docker specs, Linux and Windows (input of library/mt5_containers.py):
a filter over mt5farm.container_specs."""

from __future__ import annotations

from typing import Any

from mt5farm import ansible_filters, container_specs


class FilterModule:
    """MT5 Farm container-spec filter."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters({"mt5_container_specs": container_specs.mt5_container_specs})
