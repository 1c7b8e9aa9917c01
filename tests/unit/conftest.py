"""Make the repository's filter plugins importable as plain modules (mt5_density, mt5_inventory)."""

import sys
from pathlib import Path

FILTER_PLUGINS = Path(__file__).resolve().parents[2] / "filter_plugins"
if str(FILTER_PLUGINS) not in sys.path:
    sys.path.insert(0, str(FILTER_PLUGINS))
