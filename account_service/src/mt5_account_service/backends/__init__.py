"""Backends: objects shaped like the ``MetaTrader5`` module (see :mod:`.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .mt5 import BackendImportError, load_metatrader5
from .simulator import SimulatedTerminal

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["BackendImportError", "make_backend"]


def make_backend(settings: Settings) -> Any:
    """The backend chosen by ``MT5_BACKEND``; optional packages are imported only here."""
    if settings.backend == "simulator":
        # The simulated account lives in STATE_DIR, so a restart keeps it (issue 12, fault 13).
        return SimulatedTerminal(balance=settings.simulator_balance, leverage=settings.simulator_leverage, state_dir=settings.state_dir)
    if settings.backend == "mt5linux":
        from .mt5linux import Mt5LinuxBackend

        return Mt5LinuxBackend(settings.mt5linux_host, settings.mt5linux_port)
    if settings.backend == "mt5":
        return load_metatrader5()
    raise ValueError(f"unknown backend {settings.backend!r}")
