"""What the repository's test suites share (importable: pytest.ini puts tests/ on the path).

``run_ansible``: an Ansible program of this virtualenv, run from the repository root.

``unavailable``: the one rule for a suite whose real component (Docker engine, Nginx, root,
busybox) is missing on this machine — it skips with the fix, except under CI (``CI`` set),
where it fails: a CI run must never pass by skipping (the account service's own suites,
a separate project, do the same in account_service/tests/mt5svc_testlib.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """Skip the calling test (or module, at import) for ``message``; under CI fail it instead."""
    if os.environ.get("CI"):
        pytest.fail(f"under CI this cannot be skipped: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)


REPO = Path(__file__).resolve().parents[1]


def run_ansible(
    args: Sequence[str], *, program: str = "ansible-playbook", timeout: int = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run one of this virtualenv's Ansible programs from the repository root, as a user would.

    ``args``: its command line after the program name; ``env``: extra environment variables
    (e.g. ``ANSIBLE_STDOUT_CALLBACK="json"``) over the repository's ``ansible.cfg`` without
    colour. Never raises for a non-zero exit: the caller asserts on ``returncode`` and the output.
    """
    environment = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", **env)
    binary = Path(sys.executable).with_name(program)
    return subprocess.run([str(binary), *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout, check=False)
