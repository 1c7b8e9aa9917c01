"""TLS between the farm's hosts (whether it is on, each host's certificate names): filters over mt5farm.pki."""

from __future__ import annotations

from typing import Any

from mt5farm import ansible_filters, pki


class FilterModule:
    """MT5 Farm TLS filters."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters(
            {
                "mt5_tls_enabled": pki.mt5_tls_enabled,
                "mt5_pki_names": pki.mt5_pki_names,
            }
        )
