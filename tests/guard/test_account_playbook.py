"""playbooks/account.yml (the mt5_linux entry point `account`) against this machine's real Docker engine.

Tiny busybox containers labelled as account containers, but with a scope of this run's own
(``_mt5_linux_account_scope``), so that neither the playbook nor the guard run here ever sees
another container of this machine (a live demo may run on it). mt5farm-account is the
package's guard.py under that name, the hold markers go to a temporary directory. The
inventory is a temporary one: localhost carrying the test logins, one of them disabled.
Everything made is removed at the end.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from farm_testing import busybox_image, docker, engine_problem, run_ansible, unavailable

import mt5farm.guard
from mt5farm import container_metrics

GUARD = Path(mt5farm.guard.__file__)
RUN = uuid.uuid4().hex[:8]
SCOPE = f"opstest{RUN}"
IMAGE = f"mt5opstest{RUN}/sleep:1"
LOGINS = (9100001, 9100002)
DISABLED = 9100003


_PROBLEM = engine_problem(root=True)
if _PROBLEM is not None:
    unavailable(_PROBLEM)


def name_of(login: int) -> str:
    return f"mt5opstest-{RUN}-{login}"


@pytest.fixture(scope="module")
def accounts():
    """Two running 'account' containers (restart policy unless-stopped) that print a line a second."""
    script = 'i=0; while true; do i=$((i+1)); echo "out $i"; echo "err $i" >&2; /bin/busybox sleep 1; done'
    busybox_image(IMAGE, f'CMD ["/bin/busybox", "sh", "-c", {json.dumps(script)}]')
    try:
        for login in LOGINS:
            labels = ["--label", f"mt5farm.scope={SCOPE}", "--label", f"mt5farm.login={login}", "--label", f"mt5farm.test-run={RUN}"]
            docker("run", "-d", "--name", name_of(login), "--restart", "unless-stopped", "--stop-timeout", "1", *labels, IMAGE)
        yield LOGINS
    finally:
        for container in docker("ps", "-aq", "--filter", f"label=mt5farm.test-run={RUN}").stdout.split():
            docker("rm", "-f", container, check=False)
        docker("rmi", "-f", IMAGE, check=False)


@pytest.fixture(scope="module")
def bed(tmp_path_factory, accounts):
    """The inventory and the extra vars that point the role at this run's scope and paths."""
    root = tmp_path_factory.mktemp("account-playbook")
    (root / "bin").mkdir()
    cli = root / "bin" / "mt5farm-account"
    cli.symlink_to(GUARD)
    inventory = {
        "all": {
            "children": {
                "mt5_linux": {"hosts": {"localhost": None}},
                "mt5_windows": {"hosts": {}},
            },
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        }
    }
    (root / "hosts.yml").write_text(json.dumps(inventory))
    (root / "host_vars").mkdir()
    host_accounts = [{"login": login, "server": "Test"} for login in accounts] + [{"login": DISABLED, "server": "Test", "enabled": False}]
    (root / "host_vars" / "localhost.yml").write_text(json.dumps({"mt5_accounts": host_accounts}))
    internals = {
        "_mt5_linux_guard_account_bin": str(cli),
        "_mt5_linux_guard_held_dir": str(root / "held"),
        "_mt5_linux_account_scope": SCOPE,
    }
    (root / "internals.json").write_text(json.dumps(internals))
    return root


def play(bed: Path, action: str, logins: str, *extra: str) -> tuple[int, dict[str, int], str]:
    done = run_ansible(
        [
            "-i",
            str(bed / "hosts.yml"),
            "-e",
            f"@{bed / 'internals.json'}",
            "-e",
            f"mt5_action={action}",
            "-e",
            f"mt5_logins={logins}",
            "playbooks/account.yml",
            *extra,
        ],
        timeout=300,
    )
    found = re.search(r"^localhost\s+:\s+(ok=.*)$", done.stdout, re.M)
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found.group(1))} if found else {}
    # The YAML callback folds long lines: one space for every run of white space.
    return done.returncode, counts, " ".join((done.stdout + done.stderr).split())


def state(login: int) -> dict:
    return json.loads(docker("inspect", name_of(login)).stdout)[0]


def held(bed: Path, login: int) -> bool:
    """The guard's own decision, as the container metrics report it (mt5_container_held)."""
    return container_metrics.is_held(state(login), mt5farm.guard, bed / "held")


def guard_pass(bed: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(GUARD), "--scope", SCOPE, "--held-dir", str(bed / "held"), "--once"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_stop_holds_the_account_the_guard_leaves_it_stopped_and_start_clears_it(bed, accounts):
    first, second = accounts
    rc, counts, out = play(bed, "stop", f"{first},{second}", "--check", "--diff")
    assert rc == 0 and counts["changed"] == 1, out
    assert f"localhost: would stop {first}, {second}" in out
    assert state(first)["State"]["Running"] and not (bed / "held" / name_of(first)).exists(), "check mode changed nothing"

    rc, counts, out = play(bed, "stop", str(first))
    assert rc == 0 and counts["changed"] == 1, out
    assert state(first)["State"]["Status"] == "exited" and held(bed, first)
    assert state(second)["State"]["Running"], "only the named account"
    assert "held by mt5farm-account stop" in guard_pass(bed)
    time.sleep(1)
    assert state(first)["State"]["Status"] == "exited", "neither the guard nor Docker's restart policy (unless-stopped) started it"

    rc, counts, out = play(bed, "stop", str(first))
    assert rc == 0 and counts["changed"] == 0 and f"already stopped and held: {first}" in out, out

    rc, counts, out = play(bed, "start", str(first), "--check")
    assert rc == 0 and counts["changed"] == 1 and f"would start {first}" in out, out
    rc, counts, out = play(bed, "start", f"{first},{second}")
    assert rc == 0 and counts["changed"] == 1, out
    assert state(first)["State"]["Running"] and not (bed / "held" / name_of(first)).exists() and not held(bed, first)
    rc, counts, out = play(bed, "start", f"{first},{second}")
    assert rc == 0 and counts["changed"] == 0 and f"already running, not held: {first}, {second}" in out, out


def test_restart_restarts_and_leaves_no_hold(bed, accounts):
    first, _ = accounts
    play(bed, "stop", str(first))
    assert held(bed, first)
    rc, counts, out = play(bed, "restart", str(first))
    assert rc == 0 and counts["changed"] >= 1, out
    assert state(first)["State"]["Running"] and not (bed / "held" / name_of(first)).exists()
    before = state(first)["State"]["StartedAt"]
    rc, _, out = play(bed, "restart", str(first))
    assert rc == 0 and state(first)["State"]["StartedAt"] != before, out


def test_logs_prints_the_last_lines_of_each_account_under_a_header(bed, accounts):
    first, second = accounts
    time.sleep(2)  # a few lines on both streams
    rc, counts, out = play(bed, "logs", f"{first},{second}", "-e", "mt5_log_lines=3", "--check")
    assert rc == 0 and counts["changed"] == 0, out
    for login in (first, second):
        assert f"==== {name_of(login)} (login {login}, localhost, running): last 3 lines ====" in out
    header = out.index(f"==== {name_of(first)}")
    block = out[header : out.index(f"==== {name_of(second)}")]
    stamps = re.findall(r"(\d{4}-\d\d-\d\dT[\d:.]+Z) (?:out|err) \d+", block)
    assert len(stamps) == 3 and stamps == sorted(stamps), block  # the last 3 of both streams, in time order


def test_unknown_disabled_and_windows_logins_are_refused_before_any_host_is_touched(bed, accounts):
    first, _ = accounts
    rc, _, out = play(bed, "stop", f"{first},{DISABLED},424242")
    assert rc != 0
    assert "not in the inventory (no host's mt5_accounts lists them): 424242" in out
    assert f"disabled in the inventory (enabled: false; they have no container): {DISABLED}" in out
    assert "Act on the accounts on their hosts" not in out and state(first)["State"]["Running"]
    rc, _, out = play(bed, "halt", str(first))
    assert rc != 0 and "Usage: ansible-playbook playbooks/account.yml" in out
    rc, _, out = play(bed, "logs", str(first), "-e", "mt5_log_lines=99999999999")
    assert rc != 0 and "at most 100000" in out and "Act on the accounts on their hosts" not in out
