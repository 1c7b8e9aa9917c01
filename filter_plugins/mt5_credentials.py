"""Per-account credentials derived from the site's vaulted secrets: a filter over mt5farm.credentials."""

from __future__ import annotations

from typing import Any

from mt5farm import ansible_filters, credentials


class FilterModule:
    """MT5 Farm credential derivation."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters({"mt5_account_credential": credentials.mt5_account_credential})
