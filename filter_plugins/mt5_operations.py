"""Everyday operator commands: the named accounts' hosts (playbooks/account.yml) and the images a host
may drop (playbooks/prune.yml): filters over mt5farm.operations and mt5farm.image_prune."""

from __future__ import annotations

from typing import Any

from mt5farm import ansible_filters, image_prune, operations


class FilterModule:
    """MT5 Farm operator command filters."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters(
            {
                "mt5_account_targets": operations.mt5_account_targets,
                "mt5_prune_images": image_prune.mt5_prune_images,
                "mt5_prune_archives": image_prune.mt5_prune_archives,
            }
        )
