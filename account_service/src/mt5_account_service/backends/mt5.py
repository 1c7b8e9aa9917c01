"""Backend ``mt5``: the official ``MetaTrader5`` module (Windows hosts only)."""

from __future__ import annotations

import importlib
from typing import Any


class BackendImportError(RuntimeError):
    """A backend's Python package is not installed."""


def load_metatrader5() -> Any:
    """Import the official module; it is the backend itself (same functions, same shapes)."""
    try:
        return importlib.import_module("MetaTrader5")
    except ImportError as exc:
        raise BackendImportError(
            "MT5_BACKEND=mt5 needs the official MetaTrader5 package, which exists only for "
            "Windows: pip install 'mt5-account-service[mt5]' on the Windows host, or choose "
            "MT5_BACKEND=mt5linux (Linux + Wine) or MT5_BACKEND=simulator"
        ) from exc
