"""Files of the installed ``mt5farm`` package, by their path inside it.

The roles ship some of the package's files to hosts and images as they are (the image
runtime, the host guard, the container metrics collector); ``mt5farm_path`` (filter
``filter_plugins/mt5farm_files.py``) gives a role the absolute path of such a file on the
controller, wherever the package is installed (editable: the repository's ``mt5farm/``).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mt5farm.errors import FarmError

PACKAGE_DIR = Path(__file__).resolve().parent


def package_path(relative: str) -> str:
    """Absolute path of a file or directory inside the package.

    ``relative`` is a POSIX path relative to the package's directory, e.g.
    ``"runtime/ini.py"`` or ``"runtime"``. Returns the absolute path as a string.

    Raises ``ValueError`` when ``relative`` is not a non-empty relative path that stays
    inside the package (no leading ``/``, no ``..``), or when nothing exists there.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise FarmError(f"mt5farm_path: expected a path inside the mt5farm package such as 'runtime/ini.py', got {relative!r}")
    parts = PurePosixPath(relative)
    if parts.is_absolute() or ".." in parts.parts:
        raise FarmError(f"mt5farm_path: {relative!r} is not a relative path inside the mt5farm package (no leading '/', no '..')")
    path = PACKAGE_DIR.joinpath(*parts.parts)
    if not path.exists():
        raise FarmError(f"mt5farm_path: {relative!r} is not in the mt5farm package ({PACKAGE_DIR}): no {path}")
    return str(path)
