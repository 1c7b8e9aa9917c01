"""The guard against this machine's real Docker engine.

Tiny containers from a static busybox (imported from a tarball: no registry), labelled as the
reconcile labels account containers but with a scope of this run's own, so that the guard
never sees any other container of this machine. Everything made is removed at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from farm_testing import busybox_image, docker, engine_problem, unavailable

import mt5farm.guard

# The file the mt5_linux role installs, run as the script it is there.
GUARD = Path(mt5farm.guard.__file__)

RUN = uuid.uuid4().hex[:8]
SCOPE = f"guardtest{RUN}"
IMAGE = f"mt5guard{RUN}/sleep:1"
INTERVAL = 5


_PROBLEM = engine_problem()
if _PROBLEM is not None:
    unavailable(_PROBLEM)


@pytest.fixture(scope="module")
def image():
    busybox_image(IMAGE, 'CMD ["/bin/busybox", "sleep", "2147483647"]')
    yield IMAGE
    for container in docker("ps", "-aq", "--filter", f"label=mt5farm.test-run={RUN}").stdout.split():
        docker("rm", "-f", container, check=False)
    docker("rmi", "-f", IMAGE, check=False)


@pytest.fixture
def make(image):
    """make(name, login=..., scope=...) -> a running container, restart policy unless-stopped."""
    made = []

    def _make(suffix: str, login: str | None = None, scope: str | None = SCOPE) -> str:
        name = f"mt5guard-{RUN}-{suffix}"
        labels = ["--label", f"mt5farm.test-run={RUN}"]
        if scope is not None:
            labels += ["--label", f"mt5farm.scope={scope}"]
        if login is not None:
            labels += ["--label", f"mt5farm.login={login}"]
        docker("run", "-d", "--name", name, "--restart", "unless-stopped", "--stop-timeout", "1", *labels, image)
        made.append(name)
        return name

    yield _make
    for name in made:
        docker("rm", "-f", name, check=False)


@pytest.fixture
def held(tmp_path):
    return tmp_path / "held"


@pytest.fixture
def account_cli(tmp_path):
    """mt5farm-account: the same file under that name (as the role installs it)."""
    link = tmp_path / "bin" / "mt5farm-account"
    link.parent.mkdir()
    link.symlink_to(GUARD)
    return link


def state(name: str) -> dict:
    return json.loads(docker("inspect", name).stdout)[0]["State"]


def guard(held: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(GUARD), "--scope", SCOPE, "--held-dir", str(held), *args], capture_output=True, text=True, timeout=120
    )


def account(cli: Path, held: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(cli), "--scope", SCOPE, "--held-dir", str(held), *args], capture_output=True, text=True, timeout=180
    )


def test_a_killed_account_container_is_started_by_one_pass(make, held):
    name = make("killed", login="7001001")
    docker("kill", name)
    assert state(name)["Status"] == "exited", "docker kill counts as a manual stop: Docker does not restart it"
    time.sleep(1)
    assert state(name)["Status"] == "exited"
    done = guard(held, "--once")
    assert done.returncode == 0, done.stderr
    assert state(name)["Running"], done.stdout
    line = done.stdout.strip()
    assert line.startswith(f"mt5farm-guard: login 7001001 container {name}: exited (exit code 137") and line.endswith(
        "not held; started it"
    ), line


def test_an_operators_stop_is_honoured_until_the_container_runs_again(make, held, account_cli):
    name = make("held", login="7001002")
    done = account(account_cli, held, "stop", "7001002")
    assert done.returncode == 0, done.stderr
    assert "stopped and held" in done.stdout
    assert state(name)["Status"] == "exited"
    marker = json.loads((held / name).read_text())
    assert marker["started_at"] == state(name)["StartedAt"]
    first = guard(held, "--once")
    assert state(name)["Status"] == "exited", first.stdout
    assert "held by mt5farm-account stop" in first.stdout and "left stopped" in first.stdout
    assert account(account_cli, held, "status", "7001002").stdout.split() == ["7001002", name, "exited", "held"]
    # Started by other means (here docker start): the hold was for the earlier run.
    docker("start", name)
    docker("kill", name)
    second = guard(held, "--once")
    assert state(name)["Running"], second.stdout
    assert "its hold marker was for an earlier run (removed); started it" in second.stdout
    assert not (held / name).exists()


def test_mt5farm_account_start_removes_the_hold_and_starts(make, held, account_cli):
    name = make("restart", login="7001003")
    assert account(account_cli, held, "stop", "7001003").returncode == 0
    done = account(account_cli, held, "start", "7001003")
    assert done.returncode == 0 and "started (hold removed)" in done.stdout, done.stdout + done.stderr
    assert state(name)["Running"] and not (held / name).exists()
    missing = account(account_cli, held, "stop", "7009999")
    assert missing.returncode != 0 and "no account container for login 7009999" in missing.stdout + missing.stderr


def test_containers_without_the_farms_labels_are_never_touched(make, held):
    plain = make("plain")
    scope_only = make("scopeonly", scope=SCOPE)
    other_scope = make("otherscope", login="7001004", scope=SCOPE + "x")
    for name in (plain, scope_only, other_scope):
        docker("kill", name)
    done = guard(held, "--once")
    assert done.returncode == 0 and done.stdout == "", done.stdout
    for name in (plain, scope_only, other_scope):
        assert state(name)["Status"] == "exited", name


def test_recovery_time_with_the_loop_at_5_s(make, held):
    """docker kill -> running again, with the guard looping every 5 s (as installed)."""
    name = make("loop", login="7001005")
    loop = subprocess.Popen(
        [sys.executable, str(GUARD), "--scope", SCOPE, "--held-dir", str(held), "--interval", str(INTERVAL)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    figures = []
    try:
        time.sleep(1)
        # Once, mid-cycle: the scenario (molecule/fleet, recovery.yml) times a killed account
        # under the installed guard again, end to end.
        for attempt in range(1):
            time.sleep(2.5 * (attempt + 1))  # kill between two of the guard's passes
            killed = time.monotonic()
            docker("kill", name)
            while not state(name)["Running"]:
                assert time.monotonic() - killed < INTERVAL + 20, "not started again"
                time.sleep(0.1)
            figures.append(time.monotonic() - killed)
    finally:
        loop.terminate()
        output = loop.communicate(timeout=30)[0]
    assert loop.returncode == 0, output
    assert output.count("started it") == 1, output
    print(
        f"\ndocker kill -> running again with the guard every {INTERVAL} s: "
        f"{', '.join(f'{s:.1f}' for s in figures)} s (max {max(figures):.1f} s; bound {INTERVAL} s + docker start)"
    )
    assert max(figures) <= INTERVAL + 3
