"""roles/mt5_linux, entry point guard, on this machine: check mode, converge, idempotence,
and the background loop it starts where neither systemd nor a cron daemon runs (this machine).

Every path the role writes is moved under a temporary directory with extra vars.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from farm_testing import unavailable

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")

# The role's `guard` entry point, as playbooks/accounts_started.yml runs it.
GUARD_PLAY = (
    "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.import_role: {name: mt5_linux, tasks_from: guard}\n"
)

if os.geteuid() != 0:
    unavailable("the role installs root-owned files (run as root)")


@pytest.fixture
def paths(tmp_path):
    values = {
        "_mt5_linux_guard_bin": str(tmp_path / "sbin" / "mt5farm-guard"),
        "_mt5_linux_guard_account_bin": str(tmp_path / "sbin" / "mt5farm-account"),
        "_mt5_linux_guard_held_dir": str(tmp_path / "lib" / "held"),
        "_mt5_linux_guard_unit_dir": str(tmp_path / "systemd"),
        "_mt5_linux_guard_cron_dir": str(tmp_path / "cron.d"),
        "_mt5_linux_guard_log": str(tmp_path / "guard.log"),
        "_mt5_linux_guard_pidfile": str(tmp_path / "guard.pid"),
        "_mt5_linux_guard_lock": str(tmp_path / "guard.lock"),
    }
    yield values
    # A guard the role started in the background must not outlive the test.
    subprocess.run(
        ["start-stop-daemon", "--stop", "--oknodo", "--retry", "5", "--remove-pidfile", "--pidfile", values["_mt5_linux_guard_pidfile"]],
        capture_output=True,
        check=False,
    )


def background_guard(paths: dict) -> str | None:
    """The command line of the guard running from the role's pidfile, or None."""
    try:
        pid = int(Path(paths["_mt5_linux_guard_pidfile"]).read_text().strip())
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None


def converge(tmp_path: Path, paths: dict, *extra: str, **variables) -> tuple[dict, str]:
    (tmp_path / "sbin").mkdir(exist_ok=True)
    playbook = tmp_path / "guard.yml"
    playbook.write_text(GUARD_PLAY)
    values = {"mt5_linux_image": "mt5farm/account:test", "mt5_linux_api_key": "k", "mt5_accounts": [], **paths, **variables}
    (tmp_path / "vars.json").write_text(json.dumps(values))
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="false", NO_COLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="yaml")
    done = subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            f"@{tmp_path / 'vars.json'}",
            str(playbook),
            *extra,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    counts = re.search(r"^localhost\s+:\s+(ok=.*)$", done.stdout, re.M).group(1)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}, done.stdout


@pytest.mark.skipif(Path("/run/systemd/system").exists(), reason="this host runs systemd: the Molecule scenario covers it")
def test_check_mode_converge_idempotence_and_disable(tmp_path, paths):
    check, _ = converge(tmp_path, paths, "--check")
    assert check["changed"] > 0
    assert not Path(paths["_mt5_linux_guard_bin"]).exists(), "check mode changed nothing"

    first, output = converge(tmp_path, paths)
    assert first["changed"] > 0
    guard = Path(paths["_mt5_linux_guard_bin"])
    assert guard.stat().st_mode & 0o777 == 0o755
    assert os.readlink(paths["_mt5_linux_guard_account_bin"]) == str(guard)
    cron = (Path(paths["_mt5_linux_guard_cron_dir"]) / "mt5farm-guard").read_text()
    assert re.search(rf"^\* \* \* \* \* root flock -n \S+ {re.escape(str(guard))} --interval 5 --for 60 ", cron, re.M), cron
    no_cron = subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode != 0
    if no_cron:  # neither systemd nor cron: the role runs the loop itself
        running = background_guard(paths)
        assert running and str(guard) in running and "--interval 5" in running, running
    usage = subprocess.run([sys.executable, paths["_mt5_linux_guard_account_bin"], "--help"], capture_output=True, text=True)
    assert "usage: mt5farm-account" in usage.stdout

    second, _ = converge(tmp_path, paths)
    assert second["changed"] == 0, "a second converge changes nothing"
    again, _ = converge(tmp_path, paths, "--check")
    assert again["changed"] == 0

    if no_cron:
        assert background_guard(paths) == running, "the same guard still runs"
    off, output = converge(tmp_path, paths, mt5_linux_guard_enabled=False)
    assert off["changed"] == (2 if no_cron else 1)
    assert not (Path(paths["_mt5_linux_guard_cron_dir"]) / "mt5farm-guard").exists()
    assert background_guard(paths) is None, "disabling stops the background guard"
    assert "mt5_linux_guard_enabled is false" in output
    assert converge(tmp_path, paths, mt5_linux_guard_enabled=False)[0]["changed"] == 0


def test_an_interval_below_one_second_is_refused(tmp_path, paths):
    (tmp_path / "sbin").mkdir()
    playbook = tmp_path / "guard.yml"
    playbook.write_text(GUARD_PLAY)
    (tmp_path / "vars.json").write_text(
        json.dumps({"mt5_linux_image": "i", "mt5_linux_api_key": "k", "mt5_accounts": [], "mt5_linux_guard_interval": 0, **paths})
    )
    done = subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"@{tmp_path / 'vars.json'}",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "mt5_linux_guard_interval is 0" in done.stdout
