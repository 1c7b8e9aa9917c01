"""Serve a :class:`SimulatedTerminal` the way Windows Python serves ``MetaTrader5`` under Wine.

The production bridge is an RPyC *classic* server in the terminal's Windows Python, where
``import MetaTrader5`` is the real module. Here the same classic server runs with the
simulator installed as the ``MetaTrader5`` module, so the ``mt5linux`` client (and our
``mt5linux`` backend) talk to it exactly as they would to the real bridge.

Like the production bridge once the service's helper ran there, the module's ``initialize`` is
guarded (:func:`.bridge.guard_initialize`): one at a time, a second one beside it is refused.

A classic RPyC server executes whatever its clients send: bind it to loopback (or a
container-private address) only, as the production bridge must be.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from . import base
from .bridge import guard_initialize
from .simulator import SimulatedTerminal


def as_module(terminal: SimulatedTerminal) -> types.ModuleType:
    """A module object named ``MetaTrader5`` whose functions and constants are the simulator's
    (``initialize`` guarded: never two at once)."""
    module = types.ModuleType("MetaTrader5", "MT5 Farm simulator (a stand-in, not MetaTrader 5)")
    for name in dir(base):
        if name.isupper():
            setattr(module, name, getattr(base, name))
    for name in dir(terminal):
        if not name.startswith("_"):
            setattr(module, name, getattr(terminal, name))
    # Through __dict__: a ModuleType has no declared __version__ for the type checker.
    module.__dict__["__version__"] = "5.0.0-simulator"
    guard_initialize(module)
    return module


def make_server(terminal: SimulatedTerminal, host: str, port: int) -> Any:
    """A threaded RPyC classic server exposing ``terminal`` as the ``MetaTrader5`` module."""
    from rpyc.core.service import ClassicService
    from rpyc.utils.server import ThreadedServer

    sys.modules["MetaTrader5"] = as_module(terminal)
    return ThreadedServer(
        ClassicService,
        hostname=host,
        port=port,
        reuse_addr=True,
        protocol_config={"allow_all_attrs": True, "allow_pickle": False, "sync_request_timeout": 30},
    )
