"""bench/wine_cold_start.py without Docker: it starts the container the mt5_linux role would
(its defaults, the Linux density profile's CPUs), and reads its marks from Docker's clock.

Run as the bench runs it (a program of the repository) with ``--dry-run``, behind a ``docker``
stand-in that records any call: a dry run calls none.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from farm_testing import REPO

BENCH = REPO / "bench/wine_cold_start.py"
IMAGE = "mt5farm/account:wine-0123456789abcdef"


def load_bench():
    spec = importlib.util.spec_from_file_location("wine_cold_start", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dry_run(tmp_path: Path, *args: str) -> list[list[str]]:
    calls = tmp_path / "docker-calls"
    stand_in = tmp_path / "bin" / "docker"
    stand_in.parent.mkdir()
    stand_in.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    stand_in.chmod(0o755)
    env = dict(os.environ, PATH=f"{stand_in.parent}:{os.environ['PATH']}")
    done = subprocess.run([sys.executable, str(BENCH), IMAGE, "--dry-run", *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not calls.exists(), f"a dry run called docker: {calls.read_text()}"
    return [shlex.split(line) for line in done.stdout.splitlines()]


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_a_prefix_run_is_an_account_container_of_the_role_running_wine_cmd_ver(tmp_path):
    defaults = yaml.safe_load((REPO / "roles/mt5_linux/defaults/main.yml").read_text())
    volume, run = dry_run(tmp_path, "--mode", "prefix")
    assert volume[:3] == ["docker", "volume", "create"]
    assert run[:3] == ["docker", "run", "-d"] and run[-5:] == [IMAGE, "wine", "cmd", "/c", "ver"]
    assert option(run, "--cpus") == "0.5", "the Linux density profile's CPU limit"
    assert option(run, "--memory") == str(int(1.2 * 1024**3))
    assert option(run, "--user") == f"{defaults['mt5_linux_container_uid']}:{defaults['mt5_linux_container_uid']}"
    assert option(run, "--pids-limit") == str(defaults["mt5_linux_pids_limit"])
    assert option(run, "--health-start-period") == f"{defaults['mt5_linux_first_connect']}s"
    assert f"WATCHDOG_FIRST_CONNECT={defaults['mt5_linux_first_connect']}" in run
    assert option(run, "--cap-drop") == "ALL" and option(run, "--security-opt") == "no-new-privileges:true"
    mounts = [run[i + 1] for i, arg in enumerate(run) if arg == "--mount"]
    assert any(m.endswith("target=/run/secrets/mt5,readonly") for m in mounts) and any("target=/data" in m for m in mounts)


def test_a_terminal_run_starts_the_account_as_the_image_does_and_takes_a_cpu_limit(tmp_path):
    _, run = dry_run(tmp_path, "--mode", "terminal", "--cpus", "1")
    assert run[-1] == IMAGE, "no command: the image's entrypoint and supervisord"
    assert option(run, "--cpus") == "1" and "MT5_BACKEND=mt5linux" in run
    assert "MT5_SERVER=MT5Farm-Bench-Offline" in run, "no broker sees a login without a real account"


def test_a_dry_run_needs_a_mode(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH), IMAGE, "--dry-run"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--dry-run needs --mode" in done.stderr


def test_marks_are_timed_from_the_container_start_on_dockers_clock():
    bench = load_bench()
    started = bench.docker_time("2026-12-02T05:00:00.000000000Z")
    logs = "\n".join(
        [
            "2026-12-02T05:00:01.250000000Z mt5-entrypoint: wine image, backend mt5linux, login 1",
            "2026-12-02T05:00:41.500000000Z mt5-terminal: terminal64.exe is running",
            "2026-12-02T05:01:30.000000000Z mt5-watchdog: /health is ok",
            "2026-12-02T05:01:35.000000000Z mt5-watchdog: /health is ok",
        ]
    )
    found = bench.marks_in(logs, started, ["terminal started", "first connect"])
    assert found == pytest.approx({"terminal started": 41.5, "first connect": 90.0})
    ver = "2026-12-02T05:00:23.100000000Z Microsoft Windows 10.0.19045"
    assert bench.marks_in(ver, started, ["prefix booted"]) == pytest.approx({"prefix booted": 23.1})
    assert bench.docker_time("2026-12-02T07:00:00+02:00") == started


def test_docker_time_refuses_what_is_not_a_timestamp():
    with pytest.raises(ValueError):
        load_bench().docker_time("yesterday")
