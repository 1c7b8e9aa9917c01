"""playbooks/prune.yml (docker_host entry point prune) against this machine's real Docker engine.

Five tiny images (a static busybox, imported: no registry) in a repository of this run's own,
one of them used by a stopped container named as an update's old one (*-mt5farm-prev); the
playbook is pointed at that repository only (extra vars), so no other image of this machine
is ever considered. Everything made is removed at the end.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from pathlib import Path

import pytest
from farm_testing import busybox_image, docker, engine_problem, run_ansible, unavailable

RUN = uuid.uuid4().hex[:8]
REPOSITORY = f"mt5prunetest{RUN}/account"
TAGS = ["sim-1", "sim-2", "sim-3", "sim-4", "sim-5"]  # oldest first


_PROBLEM = engine_problem(root=True)
if _PROBLEM is not None:
    unavailable(_PROBLEM)


@pytest.fixture(scope="module")
def images():
    try:
        for number, tag in enumerate(TAGS):
            if number:
                time.sleep(1.05)  # Created has whole seconds: one apart, newest last
            busybox_image(f"{REPOSITORY}:{tag}", f"LABEL n={number}", 'CMD ["/bin/busybox", "true"]')
        # An image update's old container, stopped: its image (sim-2) must stay.
        docker("create", "--name", f"mt5prunetest-{RUN}-mt5farm-prev", "--label", f"mt5farm.test-run={RUN}", f"{REPOSITORY}:sim-2")
        yield REPOSITORY
    finally:
        for container in docker("ps", "-aq", "--filter", f"label=mt5farm.test-run={RUN}").stdout.split():
            docker("rm", "-f", container, check=False)
        for tag in TAGS:
            docker("rmi", "-f", f"{REPOSITORY}:{tag}", check=False)


def present() -> list[str]:
    out = docker("images", "--format", "{{.Tag}}", REPOSITORY).stdout.split()
    return sorted(out)


def prune(tmp_path: Path, *extra: str) -> tuple[int, str]:
    inventory = {"all": {"children": {"mt5_linux": {"hosts": {"localhost": None}}, "platform": {"hosts": {}}}}}
    (tmp_path / "hosts.yml").write_text(json.dumps(inventory))
    variables = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "docker_host_prune_repositories": [REPOSITORY],
        "docker_host_prune_archive_dirs": [str(tmp_path / "archives")],
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    done = run_ansible(["-i", str(tmp_path / "hosts.yml"), "-e", f"@{tmp_path / 'vars.json'}", "playbooks/prune.yml", *extra], timeout=300)
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def changed(out: str) -> int:
    return int(re.search(r"localhost : ok=\d+ changed=(\d+)", out).group(1))


def test_prune_keeps_what_runs_the_newest_and_n_previous_and_their_archives(tmp_path, images):
    archives = tmp_path / "archives"
    archives.mkdir()
    for name in ("sim-1.tar", "sim-3.tar", "sim-4.tar", "notes.txt"):
        (archives / name).write_text("x")

    rc, out = prune(tmp_path, "-e", "mt5_prune_keep=1", "--check", "--diff")
    assert rc == 0, out
    assert f"{REPOSITORY}: would remove {REPOSITORY}:sim-3, {REPOSITORY}:sim-1;" in out
    assert (
        f"kept {REPOSITORY}:sim-5 (newest), {REPOSITORY}:sim-4 (previous (kept for rollback)), {REPOSITORY}:sim-2 (in use by a container)"
        in out
    )
    assert present() == TAGS and len(list(archives.iterdir())) == 4, "check mode removed nothing"

    rc, out = prune(tmp_path, "-e", "mt5_prune_keep=1")
    assert rc == 0 and changed(out) > 0, out
    assert present() == ["sim-2", "sim-4", "sim-5"]
    assert sorted(p.name for p in archives.iterdir()) == ["notes.txt", "sim-4.tar"]

    rc, out = prune(tmp_path, "-e", "mt5_prune_keep=1")
    assert rc == 0 and changed(out) == 0, out

    rc, out = prune(tmp_path)  # the default: 2 previous
    assert rc == 0 and changed(out) == 0 and present() == ["sim-2", "sim-4", "sim-5"], out
