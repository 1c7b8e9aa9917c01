"""playbooks/endpoints.yml (the end of every site.yml run): the API key is printed only for an
inventory that declares itself a demo (``mt5_demo: true``), never because of what the key
looks like. Real ansible-playbook runs on a local-connection inventory; the play only prints.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
KEY = "prod-key-with-demo-in-it-0123456789"  # "demo" in a real site's key must not matter


def run_endpoints(tmp_path: Path, extra: str) -> str:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    platform:\n      hosts:\n        localhost:\n"
        "          ansible_connection: local\n"
        f"          ansible_python_interpreter: {sys.executable}\n"
        f"  vars:\n    mt5_api_key: {KEY}\n{extra}",
        encoding="utf-8",
    )
    done = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), "playbooks/endpoints.yml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("extra", ["", "    mt5_demo: false\n"], ids=["unset", "false"])
def test_a_key_containing_demo_is_not_printed_without_the_demo_flag(tmp_path: Path, extra: str) -> None:
    out = run_endpoints(tmp_path, extra)
    assert KEY not in out
    assert "the first line of mt5_api_key in your vault" in out


def test_a_declared_demo_prints_its_key(tmp_path: Path) -> None:
    out = run_endpoints(tmp_path, "    mt5_demo: true\n")
    assert f"API key: {KEY}" in out
