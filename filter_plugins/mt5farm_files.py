"""Filters over files and lists the mt5farm package ships: thin shims over ``mt5farm``.

- ``'runtime/ini.py' | mt5farm_path``: absolute path of a file (or directory) inside the
  installed mt5farm package, for a role that copies it to a host or into an image;
- ``'windows' | mt5_service_packages``: the account service's pinned dependencies for
  Windows Python (exact ``name==version`` pins).
"""

from __future__ import annotations

from typing import Any

from mt5farm import ansible_filters
from mt5farm.paths import package_path
from mt5farm.service_packages import service_packages


class FilterModule:
    """The filters of this file, by name."""

    def filters(self) -> dict[str, Any]:
        return ansible_filters.filters({"mt5farm_path": package_path, "mt5_service_packages": service_packages})
