"""Density caps (how many accounts a host can carry): filters over mt5farm.density."""

from __future__ import annotations

from typing import Any

from mt5farm import ansible_filters, density


class FilterModule:
    """MT5 Farm density-cap filters."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters(
            {
                "mt5_size_gib": density.mt5_size_gib,
                "mt5_density_profile": density.mt5_density_profile,
                "mt5_host_services": density.mt5_host_services,
                "mt5_infrastructure_gib": density.mt5_infrastructure_gib,
                "mt5_density_cap": density.mt5_density_cap,
            }
        )
