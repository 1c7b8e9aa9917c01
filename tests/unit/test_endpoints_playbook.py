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


@pytest.mark.parametrize("demo", [True, False], ids=["demo", "site"])
def test_the_fleet_page_is_printed_with_its_password_only_for_a_demo(tmp_path: Path, demo: bool) -> None:
    secret = "operator-secret-0123456789"
    out = run_endpoints(
        tmp_path,
        f"    mt5_demo: {str(demo).lower()}\n    mt5_operator_password: {secret}\n"
        "    platform_nginx_endpoints: {api: 'https://127.0.0.1', fleet: 'https://127.0.0.1/fleet/'}\n",
    )
    assert "Fleet page: https://127.0.0.1/fleet/ (user operator" in out
    assert "JSON for scripts: https://127.0.0.1/fleet/fleet.json" in " ".join(out.split())
    assert (secret in out) == demo
    assert demo or "mt5_operator_password in" in " ".join(out.split())


def test_no_fleet_line_when_the_page_is_off(tmp_path: Path) -> None:
    out = run_endpoints(tmp_path, "    platform_nginx_endpoints: {api: 'https://127.0.0.1', fleet: ''}\n")
    assert "Fleet page" not in out
