"""The platform services' view of the whole inventory (routes, scrape targets, wiring, API keys,
dashboards): filters over mt5farm.platform."""

from __future__ import annotations

from typing import Any

from mt5farm import ansible_filters, platform


class FilterModule:
    """MT5 Farm platform filters: the inventory as routes, scrape targets, wiring and keys."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters(
            {
                "mt5_platform_accounts": platform.mt5_platform_accounts,
                "mt5_platform_account_targets": platform.mt5_platform_account_targets,
                "mt5_platform_node_targets": platform.mt5_platform_node_targets,
                "mt5_fleet_status_accounts": platform.mt5_fleet_status_accounts,
                "mt5_platform_url": platform.mt5_platform_url,
                "mt5_platform_api_keys": platform.mt5_platform_api_keys,
                "mt5_platform_nginx_connections": platform.mt5_platform_nginx_connections,
                "mt5_grafana_dashboard": platform.mt5_grafana_dashboard,
                "mt5_postgres_account_roles": platform.mt5_postgres_account_roles,
            }
        )
