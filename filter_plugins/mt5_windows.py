"""What runs around the account containers on a Windows host (firewall rules, Defender
exclusions, certificate names, image-build helpers): filters over mt5farm.windows."""

from __future__ import annotations

from typing import Any

from mt5farm import ansible_filters, image_hash, windows


class FilterModule:
    """MT5 Farm Windows filters."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters(
            {
                "mt5_windows_firewall_rules": windows.mt5_windows_firewall_rules,
                "mt5_windows_defender_paths": windows.mt5_windows_defender_paths,
                "mt5_windows_san": windows.mt5_windows_san,
                # The Linux image's tag function over the Windows image's inputs (one copy).
                "mt5_windows_input_hash": image_hash.mt5_image_input_hash,
                "mt5_windows_input_source": windows.mt5_windows_input_source,
                "mt5_windows_pair": windows.mt5_windows_pair,
                "mt5_windows_path": windows.mt5_windows_path,
            }
        )
