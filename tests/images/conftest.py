"""The image's runtime (``mt5farm.runtime``) and the mt5_image role's controller programs
(``mt5farm.build_context``, ``mt5farm.wheelhouse``, ``mt5farm.image_hash``) are imported
from the installed mt5farm package.

No bytecode is written next to them: the role hashes and packs the runtime's files (it
leaves ``*.pyc`` out, but a test run should not leave caches in the package either).
"""

import sys

sys.dont_write_bytecode = True
