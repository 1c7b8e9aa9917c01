"""Filters over files and lists the mt5farm package ships: thin shims over ``mt5farm``.

- ``'runtime/ini.py' | mt5farm_path``: absolute path of a file (or directory) inside the
  installed mt5farm package, for a role that copies it to a host or into an image;
- ``'windows' | mt5_service_packages``: the account service's pinned dependencies for
  Windows Python (exact ``name==version`` pins).
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from mt5farm.paths import package_path
from mt5farm.service_packages import service_packages


def mt5farm_path(relative: Any) -> str:
    """Absolute path of ``relative`` inside the mt5farm package; fails when it is not there."""
    try:
        return package_path(relative)
    except ValueError as error:
        raise AnsibleFilterError(f"mt5farm_path: {error}") from error


def mt5_service_packages(os_name: Any) -> list[str]:
    """The account service's pinned dependencies for ``os_name`` (``windows``)."""
    try:
        return service_packages(os_name)
    except ValueError as error:
        raise AnsibleFilterError(f"mt5_service_packages: {error}") from error


class FilterModule:
    """The filters of this file, by name."""

    def filters(self) -> dict[str, Any]:
        return {"mt5farm_path": mt5farm_path, "mt5_service_packages": mt5_service_packages}
