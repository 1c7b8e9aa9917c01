"""The image's runtime package and the role's filters, importable as plain modules.

No bytecode is written next to them: the role hashes and packs roles/mt5_image/files/rootfs.
"""

import sys
from pathlib import Path

sys.dont_write_bytecode = True

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "mt5_image"
for path in (ROLE / "files" / "rootfs" / "usr" / "local" / "lib" / "mt5farm", ROLE / "filter_plugins", ROLE / "files"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
