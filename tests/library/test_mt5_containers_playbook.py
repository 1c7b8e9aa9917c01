"""mt5_containers run by ansible-playbook, as the mt5_linux role runs it.

Also under Debian 12's own python3 and python3-docker (SDK 5.0.3), which is what a farm host
runs the module with, when that interpreter is on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
SYSTEM_PYTHON = "/usr/bin/python3"

PLAYBOOK = """
- name: Reconcile account containers
  hosts: localhost
  gather_facts: false
  connection: local
  tasks:
    - name: Reconcile
      mt5_containers:
        containers: "{{ containers }}"
        scope: "{{ scope }}"
        batch_size: "{{ batch_size | default(omit) }}"
        health_timeout: "{{ health_timeout | default(omit) }}"
        wait_healthy: "{{ wait_healthy | default(omit) }}"
"""


def play(tmp_path: Path, variables: dict, *extra: str, callback: str = "ansible.posix.json", python: str = sys.executable):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps(dict(variables, ansible_python_interpreter=python)))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK=callback)
    if callback == "ansible.posix.json":
        env["ANSIBLE_CALLBACKS_ENABLED"] = callback  # profile_tasks would print into the JSON
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "localhost,", str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if callback != "ansible.posix.json":
        return done.returncode, done.stdout + done.stderr
    report = json.loads(done.stdout)
    return done.returncode, report["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_check_and_diff_through_ansible_then_apply_then_idempotent(farm, tmp_path: Path) -> None:
    variables = {"containers": [farm.spec(1), farm.spec(2)], "scope": farm.scope}
    code, output = play(tmp_path, variables, "--check", "--diff", callback="ansible.builtin.default")
    assert code == 0, output
    assert "+++ after" in output and f"+    {farm.name(1)}:" in output and "config_hash: " in output
    assert "changed=1" in output and farm.containers() == {}
    code, result = play(tmp_path, variables)
    assert code == 0, result
    assert result["created"] == [farm.name(1), farm.name(2)]
    code, result = play(tmp_path, variables)
    assert code == 0 and result["changed"] is False and result["unchanged"] == [farm.name(1), farm.name(2)]


def test_a_missing_image_fails_the_task_with_its_name(farm, tmp_path: Path) -> None:
    code, result = play(tmp_path, {"containers": [farm.spec(1, image="nowhere/nothing:0")], "scope": farm.scope})
    assert code == 2 and result["failed"] is True
    assert "image 'nowhere/nothing:0'" in result["msg"]


def test_without_the_docker_sdk_the_message_says_what_to_install(farm, tmp_path: Path) -> None:
    # -S: no site-packages, so no docker SDK (the module needs nothing else but the stdlib).
    wrapper = tmp_path / "python-without-sdk"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    wrapper.chmod(0o755)
    code, result = play(tmp_path, {"containers": [farm.spec(1)], "scope": farm.scope}, python=str(wrapper))
    assert code == 2, result
    assert "install python3-docker" in result["msg"]


def system_docker_sdk() -> str | None:
    if not os.path.exists(SYSTEM_PYTHON):
        return None
    done = subprocess.run([SYSTEM_PYTHON, "-c", "import docker; print(docker.__version__)"], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


@pytest.mark.skipif(system_docker_sdk() is None, reason="no python3-docker for /usr/bin/python3 here")
def test_debian_python3_docker_creates_rolls_and_removes(farm, tmp_path: Path) -> None:
    """The host-side SDK (Debian 12: python3-docker 5.0.3) through the whole cycle."""
    print("system docker SDK", system_docker_sdk())
    variables = {"containers": [farm.spec(1), farm.spec(2)], "scope": farm.scope, "wait_healthy": True, "health_timeout": 30}
    code, result = play(tmp_path, variables, python=SYSTEM_PYTHON)
    assert code == 0, result
    assert result["created"] == [farm.name(1), farm.name(2)]
    code, result = play(tmp_path, variables, python=SYSTEM_PYTHON)
    assert code == 0 and result["changed"] is False, result
    variables["containers"] = [farm.spec(1, version=2)]
    code, result = play(tmp_path, variables, python=SYSTEM_PYTHON)
    assert code == 0, result
    assert result["actions"] == {farm.name(1): "recreated", farm.name(2): "removed"}
    assert farm.containers()[farm.name(1)]["Image"] == farm.images[2][1]
