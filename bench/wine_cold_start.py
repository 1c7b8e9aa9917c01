#!/usr/bin/env python3
"""Cold start of the wine account image under an account's CPU limit (issue 12, fault 8).

What it is for: the watchdog's first-connect allowance (mt5farm.runtime.watchdog.FIRST_CONNECT,
the image's mt5_image_watchdog_first_connect, the role's mt5_linux_first_connect, which is also
Docker's healthcheck start_period) must cover a terminal's cold start on 0.5 CPU, or the
watchdog restarts a terminal that never got the chance to connect, in a loop. This measures it.

Each run is cold: a new container and a new, empty data volume, started the way the mt5_linux
role starts an account. The container spec comes from the role's own builder
(mt5farm.container_specs with mt5farm.accounts' Linux density profile: --cpus 0.5, 1.2 GiB,
768 MiB reserved) and the role's defaults (roles/mt5_linux/defaults/main.yml: the image's uid,
pids limit, poll interval, healthcheck with start_period = mt5_linux_first_connect,
WATCHDOG_FIRST_CONNECT), then: no capabilities, no-new-privileges, the secrets directory
read-only on /run/secrets/mt5, the volume on /data. Ports are not published and the default
bridge network is used (neither changes a start). Nothing is kept between runs but the host's
page cache (so run 1 may be slower: it is printed too).

The mark, by what the image holds (``--mode auto`` reads its /usr/share/mt5farm/image.json):

  prefix    no terminal in the image (the CI build: no operator inputs, a booted prefix only):
            ``wine cmd /c ver`` through the image's entrypoint; seconds from the container's
            start to the Windows version line, i.e. Wine's server up and the prefix booted;
  terminal  a terminal in the image: the account container itself (MT5_BACKEND=mt5linux);
            seconds to ``mt5-terminal: terminal64.exe is running`` (the terminal started) and,
            with a real account (--login, --server, --password-file), to the watchdog's first
            ``/health is ok`` (the first connect: what FIRST_CONNECT must cover). Without an
            account the terminal gets login 1 on a server name no broker has
            (MT5Farm-Bench-Offline) and a random password, so no broker sees a login.

Times come from Docker's own clock (State.StartedAt and the log lines' timestamps), not from
polling. Prints every run, the median, and one ``JSON {...}`` line.

Usage:  python bench/wine_cold_start.py IMAGE [--runs 3] [--mode auto|prefix|terminal]
            [--cpus 0.5] [--login N --server NAME --password-file FILE] [--timeout 900] [--dry-run]
Needs:  Docker, as root (the secrets are owned by the image's uid, as the role makes them);
        the repository root on PYTHONPATH (mt5farm) and PyYAML (the project's venv has both).
Loads a core on purpose: never run it beside a timed measurement. ``--dry-run`` prints the
docker commands of one run and calls nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mt5farm.accounts import mt5_resolved_accounts  # noqa: E402 - after the path above
from mt5farm.container_specs import mt5_container_specs  # noqa: E402
from mt5farm.runtime.watchdog import FIRST_CONNECT  # noqa: E402

ROLE_DEFAULTS = REPO / "roles" / "mt5_linux" / "defaults" / "main.yml"
PREFIX = "mt5bench-cold"
OFFLINE_SERVER = "MT5Farm-Bench-Offline"
#: The marks, as the image's programs print them (mt5farm.runtime.terminal, .watchdog) and as
#: Wine's ``cmd /c ver`` prints a version (tests/images/test_image_build.py checks the same).
MARKS = {
    "prefix booted": re.compile(r"Microsoft Windows \d+\.\d+\.\d+"),
    "terminal started": re.compile(r"mt5-terminal: terminal64\.exe is running"),
    "first connect": re.compile(r"mt5-watchdog: /health is ok"),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def role_defaults() -> dict[str, Any]:
    """The mt5_linux role's literal defaults this bench uses (the same file the role reads)."""
    defaults = yaml.safe_load(ROLE_DEFAULTS.read_text())
    keys = (
        "mt5_linux_container_uid",
        "mt5_linux_pids_limit",
        "mt5_linux_poll_interval",
        "mt5_linux_healthcheck",
        "mt5_linux_first_connect",
        "mt5_linux_stop_timeout",
    )
    missing = [key for key in keys if key not in defaults]
    if missing:
        sys.exit(f"bench: {ROLE_DEFAULTS} has no {', '.join(missing)}")
    return {key: defaults[key] for key in keys}


def account_spec(image: str, login: int, server: str, cpus: float | None, secrets_root: Path, run_id: str) -> dict[str, Any]:
    """One account's container spec, built exactly as roles/mt5_linux/tasks/containers.yml builds it."""
    knobs = role_defaults()
    account: dict[str, Any] = {"login": login, "server": server, "backend": "mt5linux"}
    if cpus is not None:
        account["cpus"] = cpus
    resolved = mt5_resolved_accounts([account], "linux")
    settings = {
        "image": image,
        "bind_address": "127.0.0.1",
        "network": "bridge",
        "secrets_root": str(secrets_root),
        "uid": knobs["mt5_linux_container_uid"],
        "poll_interval": knobs["mt5_linux_poll_interval"],
        "healthcheck": {"start_period": int(knobs["mt5_linux_first_connect"]), **knobs["mt5_linux_healthcheck"]},
        "stop_timeout": knobs["mt5_linux_stop_timeout"],
        "pids_limit": knobs["mt5_linux_pids_limit"],
        "env": {"WATCHDOG_FIRST_CONNECT": str(knobs["mt5_linux_first_connect"])},
        "tls": False,
    }
    spec = mt5_container_specs(resolved, "linux", settings)[0]
    spec["name"] = spec["hostname"] = f"{PREFIX}-{run_id}"
    for mount in spec["mounts"]:
        if mount["type"] == "volume":
            mount["source"] = f"{PREFIX}-{run_id}-data"
    spec["labels"]["mt5bench.run"] = run_id
    return spec


def run_command(spec: dict[str, Any], command: list[str]) -> list[str]:
    """``docker run -d`` arguments for ``spec`` (mt5farm.container_specs' shape), then ``command``."""
    args = ["docker", "run", "-d", "--name", spec["name"], "--hostname", spec["hostname"]]
    for key, value in sorted(spec["env"].items()):
        args += ["-e", f"{key}={value}"]
    for key, value in sorted(spec["labels"].items()):
        args += ["--label", f"{key}={value}"]
    for mount in spec["mounts"]:
        option = f"type={mount['type']},source={mount['source']},target={mount['target']}"
        args += ["--mount", option + (",readonly" if mount.get("read_only") else "")]
    args += ["--memory", str(spec["memory"]), "--memory-reservation", str(spec["memory_reservation"])]
    args += ["--cpus", f"{spec['nano_cpus'] / 1e9:g}", "--user", spec["user"], "--pids-limit", str(spec["pids_limit"])]
    args += ["--network", spec["network"], "--stop-timeout", str(spec["stop_timeout"])]
    for capability in spec["cap_drop"]:
        args += ["--cap-drop", capability]
    for option in spec["security_opt"]:
        args += ["--security-opt", option]
    check = spec["healthcheck"]
    test = check["test"]
    args += ["--health-cmd", shlex.join(test[1:]) if test[0] == "CMD" else str(test[-1])]
    for key in ("interval", "timeout", "start_period"):
        if check.get(key) is not None:
            args += [f"--health-{key.replace('_', '-')}", f"{check[key]}s"]
    if check.get("retries") is not None:
        args += ["--health-retries", str(check["retries"])]
    return [*args, spec["image"], *command]


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def docker_time(stamp: str) -> float:
    """Seconds since the epoch of Docker's RFC 3339 time with nanoseconds (``...T05:38:28.123456789Z``)."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", stamp.strip())
    if not match:
        raise ValueError(f"not a Docker timestamp: {stamp!r}")
    base, fraction, zone = match.groups()
    moment = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


def marks_in(log_text: str, started: float, wanted: list[str]) -> dict[str, float]:
    """Seconds from ``started`` to the first log line of each wanted mark (``docker logs --timestamps``)."""
    found: dict[str, float] = {}
    for line in log_text.splitlines():
        stamp, _, text = line.partition(" ")
        for name in wanted:
            if name not in found and MARKS[name].search(text):
                try:
                    found[name] = docker_time(stamp) - started
                except ValueError:
                    continue
    return found


def image_has_terminal(image: str) -> bool:
    done = docker("run", "--rm", "--entrypoint", "cat", image, "/usr/share/mt5farm/image.json")
    data = json.loads(done.stdout)
    if data.get("variant") != "wine":
        sys.exit(f"bench: {image} is the {data.get('variant')!r} image, not the wine one")
    return bool(data.get("terminal", {}).get("included"))


def write_secrets(root: Path, login: int, uid: int, password: str) -> None:
    """The account's secrets directory as the role writes it: files 0400, directory 0500, owned by the image's uid."""
    directory = root / str(login)
    directory.mkdir(parents=True)
    for name, value in (("api_key", secrets.token_hex(16)), ("password", password)):
        path = directory / name
        path.write_text(value + "\n")
        os.chown(path, uid, uid)
        path.chmod(0o400)
    os.chown(directory, uid, uid)
    directory.chmod(0o500)


def one_run(args: argparse.Namespace, mode: str, index: int, password: str) -> dict[str, float]:
    run_id = f"{uuid.uuid4().hex[:8]}-{index}"
    root = Path(tempfile.mkdtemp(prefix="mt5bench-cold-secrets-"))
    login = args.login or 1
    spec = account_spec(args.image, login, args.server or OFFLINE_SERVER, args.cpus, root, run_id)
    command = ["wine", "cmd", "/c", "ver"] if mode == "prefix" else []
    wanted = ["prefix booted"] if mode == "prefix" else ["terminal started"] + (["first connect"] if args.login else [])
    try:
        write_secrets(root, login, int(spec["user"].split(":")[0]), password)
        docker("volume", "create", "--label", f"mt5bench.run={run_id}", f"{PREFIX}-{run_id}-data")
        docker(*run_command(spec, command)[1:])
        started = docker_time(docker("inspect", "--format", "{{.State.StartedAt}}", spec["name"]).stdout)
        deadline = time.monotonic() + args.timeout
        found: dict[str, float] = {}
        while time.monotonic() < deadline:
            found = marks_in(docker("logs", "--timestamps", spec["name"], check=False).stdout, started, wanted)
            if len(found) == len(wanted):
                break
            running = docker("inspect", "--format", "{{.State.Running}}", spec["name"], check=False).stdout.strip()
            if running != "true":
                found = marks_in(docker("logs", "--timestamps", spec["name"], check=False).stdout, started, wanted)
                break
            time.sleep(0.5)
        if len(found) < len(wanted):
            tail = docker("logs", "--tail", "30", spec["name"], check=False)
            log(
                f"run {index}: saw only {found or 'no mark'} within {args.timeout:g} s; the container's last lines:\n{tail.stdout}{tail.stderr}"
            )
        return found
    finally:
        docker("rm", "-f", spec["name"], check=False)
        docker("volume", "rm", f"{PREFIX}-{run_id}-data", check=False)
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="the wine account image, e.g. mt5farm/account:wine-<hash> (playbooks/images.yml prints it)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=("auto", "prefix", "terminal"), default="auto")
    parser.add_argument("--cpus", type=float, default=None, help="CPU limit; default the Linux density profile's (0.5)")
    parser.add_argument("--login", type=int, default=None, help="a real account: also time the first connect")
    parser.add_argument("--server", default=None, help="its trade server (with --login)")
    parser.add_argument("--password-file", type=Path, default=None, help="its password, one line (with --login)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one run may take")
    parser.add_argument("--dry-run", action="store_true", help="print one run's docker commands; call nothing (needs --mode)")
    args = parser.parse_args(argv)
    if bool(args.login) != bool(args.server) or bool(args.login) != bool(args.password_file):
        parser.error("--login, --server and --password-file go together")
    password = args.password_file.read_text().strip() if args.password_file else secrets.token_urlsafe(16)

    if args.dry_run:
        if args.mode == "auto":
            parser.error("--dry-run needs --mode prefix or terminal (auto asks the image, which is a docker call)")
        spec = account_spec(args.image, args.login or 1, args.server or OFFLINE_SERVER, args.cpus, Path("/tmp/<secrets>"), "dry")
        print(shlex.join(["docker", "volume", "create", f"{PREFIX}-dry-data"]))
        print(shlex.join(run_command(spec, ["wine", "cmd", "/c", "ver"] if args.mode == "prefix" else [])))
        return 0

    if shutil.which("docker") is None:
        sys.exit("bench: the docker command is not installed")
    mode = args.mode if args.mode != "auto" else ("terminal" if image_has_terminal(args.image) else "prefix")
    spec = account_spec(args.image, 1, OFFLINE_SERVER, args.cpus, Path("/tmp"), "show")
    cpus, memory = spec["nano_cpus"] / 1e9, spec["memory"] / 1024**3
    log(f"{args.image}: mode {mode}, {args.runs} cold runs, --cpus {cpus:g}, memory {memory:.2f} GiB (mt5_linux defaults)")
    runs = []
    for index in range(1, args.runs + 1):
        found = one_run(args, mode, index, password)
        runs.append(found)
        print(f"run {index}: " + (", ".join(f"{name} {seconds:.1f} s" for name, seconds in found.items()) or "no mark"), flush=True)
    summary: dict[str, Any] = {"image": args.image, "mode": mode, "cpus": cpus, "memory_gib": round(memory, 3), "runs": runs}
    for name in MARKS:
        figures = [found[name] for found in runs if name in found]
        if figures and len(figures) == len(runs):
            summary[f"median {name}"] = round(statistics.median(figures), 1)
            print(f"median of {len(figures)}: {name} {statistics.median(figures):.1f} s", flush=True)
    print(f"(the watchdog's FIRST_CONNECT, mt5_linux_first_connect: {FIRST_CONNECT:g} s, {role_defaults()['mt5_linux_first_connect']} s)")
    print("JSON " + json.dumps(summary))
    return 0 if all(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
