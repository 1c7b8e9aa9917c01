"""Accounts moving between Linux farm hosts (which data volume comes from where): filters over mt5farm.moves."""

from __future__ import annotations

from typing import Any

from mt5farm import ansible_filters, moves


class FilterModule:
    """MT5 Farm account move filters."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters({"mt5_account_moves": moves.mt5_account_moves})
