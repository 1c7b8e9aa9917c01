"""The image's runtime package, the role's filters and its controller scripts, importable.

No bytecode is written next to them: the role hashes and packs roles/mt5_image/files/rootfs.
The controller scripts get distinct module names (mt5_image_context, mt5_image_wheelhouse).
"""

import importlib.util
import sys
from pathlib import Path

sys.dont_write_bytecode = True

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "mt5_image"
for path in (ROLE / "files" / "rootfs" / "usr" / "local" / "lib" / "mt5farm", ROLE / "filter_plugins"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

for name in ("context", "wheelhouse"):
    module_name = f"mt5_image_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, ROLE / "files" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
