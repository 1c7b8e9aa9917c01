"""What the repository's test suites share (importable: pytest.ini puts tests/ on the path).

``unavailable``: the one rule for a suite whose real component (Docker engine, Nginx, root,
busybox) is missing on this machine — it skips with the fix, except under CI (``CI`` set),
where it fails: a CI run must never pass by skipping (the account service's own suites,
a separate project, do the same in account_service/tests/mt5svc_testlib.py).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """Skip the calling test (or module, at import) for ``message``; under CI fail it instead."""
    if os.environ.get("CI"):
        pytest.fail(f"under CI this cannot be skipped: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)
