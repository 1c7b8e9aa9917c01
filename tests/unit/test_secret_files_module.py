"""library/mt5_secret_files.py, run by ansible-playbook as the mt5_linux role runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
SECRET = "Pw-must-never-be-printed-7731"

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  connection: local
  tasks:
    - name: Write secrets
      mt5_secret_files:
        root: "{{ root }}"
        owner: "{{ uid }}"
        group: "{{ gid }}"
        accounts: "{{ accounts }}"
      register: result
    - name: Show the result
      ansible.builtin.copy:
        content: "{{ result | to_json }}"
        dest: "{{ root }}/../result.json"
        mode: "0600"
"""


def converge(tmp_path: Path, accounts: dict, *extra: str) -> tuple[dict, str]:
    root = tmp_path / "secrets"
    root.mkdir(mode=0o700, exist_ok=True)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    variables = {
        "root": str(root),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "accounts": accounts,
        "ansible_python_interpreter": sys.executable,
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    run = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "localhost,", str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}", "--diff", "-v", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result_file = tmp_path / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return result, run.stdout + run.stderr


def test_writes_one_private_directory_per_account(tmp_path: Path) -> None:
    result, output = converge(tmp_path, {"1001": {"password": SECRET, "api_key": "k1"}, "1002": {"api_key": "k2"}})
    assert result["changed_accounts"] == ["1001", "1002"]
    account = tmp_path / "secrets" / "1001"
    assert (account / "password").read_text() == SECRET
    assert oct(account.stat().st_mode & 0o777) == "0o500"
    assert oct((account / "password").stat().st_mode & 0o777) == "0o400"
    assert SECRET not in output


def test_a_second_run_changes_nothing_and_a_new_value_changes_one_account(tmp_path: Path) -> None:
    accounts = {"1001": {"password": SECRET}, "1002": {"password": "other"}}
    converge(tmp_path, accounts)
    result, _ = converge(tmp_path, accounts)
    assert result["changed"] is False
    accounts["1002"]["password"] = "rotated"
    result, output = converge(tmp_path, accounts)
    assert result["changed_accounts"] == ["1002"]
    assert "rotated" not in output


def test_removed_accounts_and_files_are_pruned(tmp_path: Path) -> None:
    converge(tmp_path, {"1001": {"password": SECRET, "vnc_password": "v"}, "1002": {"password": "x"}})
    result, _ = converge(tmp_path, {"1001": {"password": SECRET}})
    assert result["removed_accounts"] == ["1002"]
    assert result["changed_accounts"] == ["1001"]
    assert sorted(p.name for p in (tmp_path / "secrets").iterdir()) == ["1001"]
    assert not (tmp_path / "secrets" / "1001" / "vnc_password").exists()


def test_check_mode_reports_without_writing(tmp_path: Path) -> None:
    _result, output = converge(tmp_path, {"1001": {"password": SECRET}}, "--check")
    assert not (tmp_path / "secrets" / "1001").exists()
    assert "1001: ., password" in output  # the names-only diff
    assert SECRET not in output


@pytest.mark.parametrize("key", ["../escape", "a/b", ".."])
def test_path_like_names_are_refused(tmp_path: Path, key: str) -> None:
    (tmp_path / "secrets").mkdir(mode=0o700)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    variables = {
        "root": str(tmp_path / "secrets"),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "accounts": {key: {"password": SECRET}},
        "ansible_python_interpreter": sys.executable,
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    run = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "localhost,", str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode != 0
    assert "must be plain names" in run.stdout
    assert SECRET not in run.stdout + run.stderr
