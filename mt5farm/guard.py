#!/usr/bin/python3
"""MT5 Farm host guard: start account containers that are down, unless an operator held them.

Docker restarts a container whose main process exits, but not one stopped by `docker stop` or
`docker kill`: it counts both as a manual stop (restart policy `unless-stopped`), and nothing
would start the account again until the next converge. The guard closes that gap. Every
``--interval`` seconds (5) it lists the account containers through the docker CLI (those the
reconcile module labels ``mt5farm.scope=accounts`` and ``mt5farm.login``; no other container is
ever looked at) and starts each one that is ``exited`` or ``dead``. Running, restarting, paused
and created containers are left alone (a created one is being made by a converge).

An operator's stop is ``mt5farm-account stop <login>`` (this file, installed under that name
too): it records a hold marker ``<held dir>/<container>`` holding the container's id and its
``State.StartedAt``, then ``docker stop``s it. The guard honours a marker only while the
container's id and StartedAt still equal the recorded ones: once the container runs again by
any means (``mt5farm-account start``, a converge, ``docker start``), the marker is stale and a
later ``docker kill`` is recovered again; a stale marker is removed. ``mt5farm-account start``
removes the marker and starts the container.

Accounts the inventory disables or removes have no container (the converge removes it), so the
guard never starts them. Each action is one line on stdout (the journal under systemd):
login, container, what was seen, what was done.

Recovery bound: a container that goes down at T is seen by T + interval and started at once
(about a second for the listing and `docker start`); the container's own start brings /health
back a few seconds later (8 s allowed): T + 5 + 1 + 8 = T + 14 s with the default interval.
Measured: `docker kill` -> /health 200 in 5.7-8.1 s with the simulator image, interval 5 s.

Standard library only; needs the docker CLI and access to the engine (root).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SCOPE_LABEL = "mt5farm.scope"
LOGIN_LABEL = "mt5farm.login"
SCOPE = "accounts"
# mt5_containers creates a replacement under this suffix, then renames it (never started as such);
# during an image update it keeps the old container, stopped, under the other until the new one
# is healthy (started again only by a roll back).
NEXT_SUFFIX = "-mt5farm-next"
PREV_SUFFIX = "-mt5farm-prev"
HELD_DIR = Path(os.environ.get("MT5FARM_HELD_DIR", "/var/lib/mt5farm/held"))
DOCKER = os.environ.get("MT5FARM_DOCKER", "docker")
DOWN_STATES = ("exited", "dead")


def log(message: str) -> None:
    print(f"mt5farm-guard: {message}", flush=True)


# --- the docker CLI -----------------------------------------------------------------------


class DockerError(RuntimeError):
    pass


def docker(*args: str, timeout: float = 60) -> str:
    try:
        done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise DockerError(f"the docker command ({DOCKER}) is not installed") from None
    except subprocess.TimeoutExpired:
        raise DockerError(f"docker {args[0]} did not answer within {timeout:g} s") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise DockerError(lines[-1] if lines else f"docker {args[0]} exited with {done.returncode}")
    return done.stdout


def account_containers(scope: str = SCOPE, login: str | None = None) -> list[dict]:
    """`docker inspect` of every account container of the scope (optionally one login's)."""
    filters = ["--filter", f"label={SCOPE_LABEL}={scope}", "--filter", f"label={LOGIN_LABEL}" + (f"={login}" if login is not None else "")]
    ids = docker("ps", "-a", "-q", "--no-trunc", *filters).split()
    if not ids:
        return []
    try:
        return json.loads(docker("inspect", "--type", "container", *ids))
    except DockerError:
        # One was removed between the two calls (a converge): inspect them one by one.
        found = []
        for container_id in ids:
            try:
                found.extend(json.loads(docker("inspect", "--type", "container", container_id)))
            except DockerError:
                pass
        return found


# --- hold markers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    login: str
    scope: str
    status: str
    started_at: str
    finished_at: str
    exit_code: int

    @classmethod
    def from_inspect(cls, data: dict) -> Container:
        labels = (data.get("Config") or {}).get("Labels") or {}
        state = data.get("State") or {}
        return cls(
            id=data["Id"],
            name=data.get("Name", "").lstrip("/"),
            login=labels.get(LOGIN_LABEL, ""),
            scope=labels.get(SCOPE_LABEL, ""),
            status=state.get("Status", ""),
            started_at=state.get("StartedAt", ""),
            finished_at=state.get("FinishedAt", ""),
            exit_code=int(state.get("ExitCode") or 0),
        )


def marker_path(name: str, held_dir: Path) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"not a container name: {name!r}")
    return held_dir / name


def read_marker(name: str, held_dir: Path) -> dict | None:
    try:
        data = json.loads(marker_path(name, held_dir).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as stale
    return data if isinstance(data, dict) else {}


def write_marker(container: Container, held_dir: Path, by: str) -> Path:
    held_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = marker_path(container.name, held_dir)
    data = {
        "container": container.name,
        "id": container.id,
        "login": container.login,
        "started_at": container.started_at,
        "by": by,
        # datetime.UTC is 3.11+; the guard also runs on hosts with Python 3.10 (Ubuntu 22.04).
        "held_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(data, sort_keys=True) + "\n")
    os.replace(temporary, path)
    return path


def remove_marker(name: str, held_dir: Path) -> bool:
    try:
        marker_path(name, held_dir).unlink()
        return True
    except FileNotFoundError:
        return False


def holds(marker: dict | None, container: Container) -> bool:
    """A marker holds this container only for the run it was written in."""
    if not marker:
        return False
    return marker.get("id") == container.id and marker.get("started_at") == container.started_at


# --- the guard ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    action: str  # "start", "held", "none"
    saw: str
    stale_marker: bool = False


def judge(container: Container, marker: dict | None, scope: str = SCOPE) -> Verdict:
    """What to do with one container: pure, from its inspect data and its hold marker."""
    if container.scope != scope or not container.login:
        return Verdict("none", "not an account container of this farm")
    if container.name.endswith(NEXT_SUFFIX):
        return Verdict("none", "a replacement being made by a converge")
    if container.name.endswith(PREV_SUFFIX):
        return Verdict("none", "the old container an image update keeps until the new one is healthy")
    if container.status not in DOWN_STATES:
        return Verdict("none", container.status)
    saw = f"{container.status} (exit code {container.exit_code}, since {container.finished_at})"
    if holds(marker, container):
        return Verdict("held", saw)
    return Verdict("start", saw, stale_marker=marker is not None)


def _docker_start(name: str) -> None:
    docker("start", name, timeout=120)


class Guard:
    def __init__(
        self,
        held_dir: Path = HELD_DIR,
        scope: str = SCOPE,
        list_fn: Callable[[], list[dict]] | None = None,
        start_fn: Callable[[str], None] | None = None,
    ) -> None:
        self.held_dir = held_dir
        self.scope = scope
        self.list_fn = list_fn or (lambda: account_containers(scope))
        self.start_fn = start_fn or _docker_start
        self.reported: dict[str, str] = {}  # container -> what was last said about it (no repeats)
        self.engine_error: str | None = None

    def _say_once(self, name: str, message: str) -> None:
        if self.reported.get(name) != message:
            self.reported[name] = message
            log(message)

    def check(self) -> list[tuple[str, str]]:
        """One pass: [(container, action)] of what was done."""
        try:
            found = [Container.from_inspect(data) for data in self.list_fn()]
        except DockerError as error:
            if str(error) != self.engine_error:
                log(f"cannot list the account containers: {error}; retrying every pass")
                self.engine_error = str(error)
            return []
        if self.engine_error:
            log("the docker engine answers again")
            self.engine_error = None
        done = []
        for container in found:
            marker = read_marker(container.name, self.held_dir)
            verdict = judge(container, marker, self.scope)
            who = f"login {container.login} container {container.name}"
            if verdict.action == "none":
                self.reported.pop(container.name, None)
                continue
            if verdict.action == "held" and marker is not None:  # judge holds only with a marker
                self._say_once(
                    container.name,
                    f"{who}: {verdict.saw}; held by mt5farm-account stop "
                    f"({marker.get('by', '?')} at {marker.get('held_at', '?')}): left stopped",
                )
                done.append((container.name, "held"))
                continue
            if verdict.stale_marker:
                remove_marker(container.name, self.held_dir)
            stale = "; its hold marker was for an earlier run (removed)" if verdict.stale_marker else ""
            try:
                self.start_fn(container.name)
            except DockerError as error:
                self._say_once(container.name, f"{who}: {verdict.saw}{stale}; docker start failed: {error}")
                done.append((container.name, "failed"))
                continue
            self.reported.pop(container.name, None)
            log(f"{who}: {verdict.saw}, not held{stale}; started it")
            done.append((container.name, "started"))
        return done


def run_guard(args: argparse.Namespace) -> int:
    guard = Guard(held_dir=args.held_dir, scope=args.scope)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    began = time.monotonic()
    if not args.once:
        log(
            f"watching the containers labelled {SCOPE_LABEL}={args.scope} and {LOGIN_LABEL} every {args.interval:g} s; "
            f"holds in {args.held_dir}" + (f"; for {args.duration:g} s" if args.duration else "")
        )
    while True:
        started = time.monotonic()
        guard.check()
        if args.once or stopping:
            return 0
        if args.duration and started + args.interval - began >= args.duration:
            return 0
        while time.monotonic() - started < args.interval and not stopping:
            time.sleep(min(0.5, max(0.0, args.interval - (time.monotonic() - started))))
        if stopping:
            return 0


# --- mt5farm-account ------------------------------------------------------------------------


def _one_container(login: str, scope: str) -> Container:
    if not login.isdigit():
        raise SystemExit(f"mt5farm-account: {login!r} is not a login (digits)")
    found = [Container.from_inspect(data) for data in account_containers(scope, login)]
    found = [c for c in found if not c.name.endswith(NEXT_SUFFIX)]
    if not found:
        raise SystemExit(f"mt5farm-account: no account container for login {login} on this host (a disabled or removed account has none)")
    if len(found) > 1:
        raise SystemExit(f"mt5farm-account: several containers for login {login}: {', '.join(c.name for c in found)}")
    return found[0]


def run_account(args: argparse.Namespace) -> int:
    try:
        if args.command == "status":
            rows = [Container.from_inspect(data) for data in account_containers(args.scope, args.login)]
            for c in sorted(rows, key=lambda c: c.name):
                marker = read_marker(c.name, args.held_dir)
                hold = "held" if holds(marker, c) else ("stale hold" if marker is not None else "")
                print(f"{c.login}\t{c.name}\t{c.status}\t{hold}".rstrip())
            return 0
        container = _one_container(args.login, args.scope)
        who = f"login {container.login} container {container.name}"
        if args.command == "stop":
            by = os.environ.get("SUDO_USER") or os.environ.get("USER") or str(os.getuid())
            try:
                write_marker(container, args.held_dir, by)
            except OSError as error:
                raise SystemExit(f"mt5farm-account: cannot record the hold in {args.held_dir} ({error}): run it as root") from error
            try:
                docker("stop", container.name, timeout=180)
            except DockerError:
                remove_marker(container.name, args.held_dir)
                raise
            print(
                f"mt5farm-account: {who}: stopped and held; the guard leaves it stopped until "
                f"`mt5farm-account start {container.login}` (or a converge) starts it"
            )
            return 0
        removed = remove_marker(container.name, args.held_dir)
        docker("start", container.name, timeout=120)
        print(f"mt5farm-account: {who}: started{' (hold removed)' if removed else ''}")
        return 0
    except DockerError as error:
        print(f"mt5farm-account: {error}", file=sys.stderr)
        return 1


# --- command lines --------------------------------------------------------------------------


def _positive(value: str) -> float:
    number = float(value)
    if number < 1:
        raise argparse.ArgumentTypeError("at least 1 second")
    return number


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    prog = prog or Path(sys.argv[0]).name
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--held-dir", type=Path, default=HELD_DIR, help=f"hold markers (default {HELD_DIR})")
    common.add_argument("--scope", default=SCOPE, help=f"the {SCOPE_LABEL} label value (default {SCOPE})")
    if prog == "mt5farm-account":
        parser = argparse.ArgumentParser(
            prog=prog, parents=[common], description="Stop an account so that the guard leaves it stopped, or start it again."
        )
        sub = parser.add_subparsers(dest="command", required=True)
        sub.add_parser("stop", help="hold and stop the account's container").add_argument("login")
        sub.add_parser("start", help="remove the hold and start the account's container").add_argument("login")
        sub.add_parser("status", help="account containers, their state and holds").add_argument("login", nargs="?")
        return run_account(parser.parse_args(argv))
    parser = argparse.ArgumentParser(
        prog="mt5farm-guard", parents=[common], description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interval", type=_positive, default=5.0, help="seconds between two passes (default 5)")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument(
        "--for", dest="duration", type=_positive, default=None, help="exit after this many seconds (a cron entry starts it every minute)"
    )
    return run_guard(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
