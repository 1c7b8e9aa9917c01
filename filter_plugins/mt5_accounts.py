"""The account model (what the roles deploy for each account): filters over mt5farm.accounts."""

from __future__ import annotations

from typing import Any

from mt5farm import accounts, ansible_filters


class FilterModule:
    """MT5 Farm account filters: resolved accounts and their secret files."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters(
            {
                "mt5_resolved_accounts": accounts.mt5_resolved_accounts,
                "mt5_account_secrets": accounts.mt5_account_secrets,
            }
        )
