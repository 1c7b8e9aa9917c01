"""The host guard (roles/mt5_linux/files/mt5farm-guard), importable as a module.

The file has no .py suffix (it is installed as a command); no bytecode is written next to it.
"""

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

sys.dont_write_bytecode = True

REPO = Path(__file__).resolve().parents[2]
GUARD = REPO / "roles" / "mt5_linux" / "files" / "mt5farm-guard"

if "mt5farm_guard" not in sys.modules:
    _loader = importlib.machinery.SourceFileLoader("mt5farm_guard", str(GUARD))
    _spec = importlib.util.spec_from_loader("mt5farm_guard", _loader)
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["mt5farm_guard"] = _module
    _loader.exec_module(_module)
