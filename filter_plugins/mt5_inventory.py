"""Inventory validation (every account of every host, all problems at once): filters over mt5farm.inventory.

Both accept Ansible 2.19's lazy markers: a password such as "{{ vault_x['123'] }}" whose
vault was not loaded reaches them as an undefined marker and becomes a problem message.
"""

from __future__ import annotations

from typing import Any

from mt5farm import ansible_filters, inventory


class FilterModule:
    """MT5 Farm inventory validation filters."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters(
            {
                "mt5_inventory_report": inventory.mt5_inventory_report,
                "mt5_inventory_problems": inventory.mt5_inventory_problems,
            },
            lazy_markers=("mt5_inventory_report", "mt5_inventory_problems"),
        )
