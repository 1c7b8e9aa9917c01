"""Constants shared by the Windows tests (a module with a unique name: every test directory
has its own conftest.py, so `from conftest import ...` would pick the wrong one)."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
BASE_IMAGE = "mcr.microsoft.com/windows/servercore:ltsc2022"
# Values the test inventory holds that must never appear in anything recorded or rendered.
SECRETS = ("mock-broker-password-5a1f", "mock-broker-password-77c2", "mock-broker-password-disabled-90d", "windows-mock-api-key-0123456789")
