"""The host guard is ``mt5farm.guard`` (installed on hosts as /usr/local/sbin/mt5farm-guard).

No bytecode is written next to it: the package's files are shipped as they are.
"""

import sys

sys.dont_write_bytecode = True
