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


def hold_and_stop(container: Container, held_dir: Path) -> None:
    """Record the operator's hold (the guard honours it), then `docker stop` the container."""
    by = os.environ.get("SUDO_USER") or os.environ.get("USER") or str(os.getuid())
    try:
        write_marker(container, held_dir, by)
    except OSError as error:
        raise SystemExit(f"mt5farm-account: cannot record the hold in {held_dir} ({error}): run it as root") from error
    try:
        docker("stop", container.name, timeout=180)
    except DockerError:
        remove_marker(container.name, held_dir)
        raise


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
            hold_and_stop(container, args.held_dir)
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


# --- backups of the accounts' data volumes -------------------------------------------------
#
# `mt5farm-account backup LOGIN...|--all` archives each account's data volume (terminal data,
# the service's idempotency store and Postgres spool) as BACKUP_DIR/<login>/<volume>-<UTC>.tar.gz
# (0600), keeps the newest --keep, and records the outcome in BACKUP_DIR/state.json, rendered
# for node exporter's textfile collector (mt5_backup_* metrics, the alert rules' input).
# Consistency: a running container is paused (`docker pause`: the kernel freezes every process
# of it, so nothing writes while tar reads) for the archive's creation only, then unpaused;
# SQLite's WAL files are in the copy, so the stores open as they were at the pause. The archive
# is then read back whole (gzip's checksum). `mt5farm-account restore LOGIN [--archive NAME]`
# holds and stops the container, empties the volume, extracts the archive (the newest by
# default) with its numeric owners and modes, compares the volume with it, and starts the
# container again unless an operator held it before.

BACKUP_DIR = Path(os.environ.get("MT5FARM_BACKUP_DIR", "/var/backups/mt5farm/accounts"))
BACKUP_TEXTFILE = "mt5_account_backups.prom"
DATA_MOUNT = "/data"  # where the account containers mount their data volume (mt5farm.container_specs)


@dataclass(frozen=True)
class Backup:
    """One archive made: its path, size (bytes), the seconds the account was paused and in all."""

    login: str
    path: Path
    size: int
    paused_seconds: float
    seconds: float


def archive_name(volume: str, when: datetime.datetime) -> str:
    """``<volume>-YYYYmmddTHHMMSSZ.tar.gz``: names sort by time."""
    return f"{volume}-{when.astimezone(datetime.UTC):%Y%m%dT%H%M%SZ}.tar.gz"


def archives_of(backup_dir: Path, login: str) -> list[Path]:
    """The account's archives, newest first."""
    folder = backup_dir / login
    return sorted(folder.glob("*.tar.gz"), reverse=True) if folder.is_dir() else []


def volume_and_image(name: str) -> tuple[str, str, bool]:
    """The container's data volume, its image id, and whether it runs (not paused)."""
    data = json.loads(docker("inspect", "--type", "container", name))[0]
    volumes = [m["Name"] for m in data.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Destination") == DATA_MOUNT]
    if not volumes:
        raise DockerError(f"{name} has no data volume at {DATA_MOUNT}")
    state = data.get("State") or {}
    return volumes[0], data["Image"], bool(state.get("Running")) and not state.get("Paused")


def tar_in_image(image: str, volume: str, folder: Path, script: str, *args: str, readonly: bool) -> None:
    """Run ``script`` (sh -c) in ``image`` as root, without network, the volume at /mnt/volume
    and ``folder`` at /mnt/backups: the account image has tar, and is on every farm host."""
    docker(
        "run", "--rm", "--network", "none", "--user", "0:0", "--entrypoint", "sh",
        "--mount", f"type=volume,src={volume},dst=/mnt/volume" + (",readonly" if readonly else ""),
        "--mount", f"type=bind,src={folder},dst=/mnt/backups",
        image, "-c", script, "sh", *args, timeout=3600,
    )  # fmt: skip


def backup_account(container: Container, backup_dir: Path, keep: int) -> Backup:
    """Archive one account's data volume (paused while tar reads it), then keep the newest ``keep``."""
    begin = time.monotonic()
    volume, image, running = volume_and_image(container.name)
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = backup_dir / container.login
    folder.mkdir(mode=0o700, exist_ok=True)
    name = archive_name(volume, datetime.datetime.now(datetime.UTC))
    partial = folder / f"{name}.partial"
    paused_at = time.monotonic()
    if running:
        docker("pause", container.name)
    try:
        tar_in_image(image, volume, folder, 'umask 077 && tar --numeric-owner -C /mnt/volume -czpf "/mnt/backups/$1" .',
                     partial.name, readonly=True)  # fmt: skip
    except DockerError:
        partial.unlink(missing_ok=True)
        raise
    finally:
        if running:
            docker("unpause", container.name)
    paused = time.monotonic() - paused_at
    try:  # read back whole: gzip's checksum and tar's headers
        tar_in_image(image, volume, folder, 'tar -tzf "/mnt/backups/$1" >/dev/null', partial.name, readonly=True)
    except DockerError:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(folder / name)
    for old in archives_of(backup_dir, container.login)[keep:]:
        old.unlink()
    return Backup(container.login, folder / name, (folder / name).stat().st_size, paused, time.monotonic() - begin)


def restore_account(container: Container, backup_dir: Path, archive: str | None, held_dir: Path) -> Path:
    """Put an archive (by name, default the newest) back into the account's volume; returns its path.

    The container is held and stopped for it, and started again unless it was held already."""
    found = archives_of(backup_dir, container.login)
    chosen = (backup_dir / container.login / archive) if archive else (found[0] if found else None)
    if chosen is None or not chosen.is_file() or chosen.parent != backup_dir / container.login:
        names = ", ".join(p.name for p in found[:5]) or "none"
        raise SystemExit(
            f"mt5farm-account: no archive {archive or ''} for login {container.login} in {backup_dir / container.login} (newest: {names})"
        )
    volume, image, _ = volume_and_image(container.name)
    was_held = holds(read_marker(container.name, held_dir), container)
    hold_and_stop(container, held_dir)
    script = (
        'find /mnt/volume -mindepth 1 -delete && tar --numeric-owner -C /mnt/volume -xzpf "/mnt/backups/$1"'
        ' && tar --numeric-owner -C /mnt/volume -dzf "/mnt/backups/$1"'
    )
    try:
        tar_in_image(image, volume, chosen.parent, script, chosen.name, readonly=False)
    except DockerError as error:
        raise DockerError(
            f"restoring {chosen.name} into {volume} failed ({error}); login {container.login} stays held and stopped, its volume "
            f"possibly partial: restore again (another archive: --archive) before `mt5farm-account start {container.login}`"
        ) from error
    if not was_held:
        remove_marker(container.name, held_dir)
        docker("start", container.name, timeout=120)
    return chosen


def record_backups(backup_dir: Path, done: Sequence[Backup], failed: Sequence[str], logins: Sequence[str], now: float) -> dict:
    """state.json updated: per login {since, last_success, last_failed, size, seconds, paused_seconds}.

    ``since`` is when backups began for the login (its first record): a login never backed up
    counts its backup age from there."""
    path = backup_dir / "state.json"
    state: dict = json.loads(path.read_text()) if path.is_file() else {}
    for login in logins:
        state.setdefault(login, {"since": now, "last_success": 0, "last_failed": 0})
    for backup in done:
        state[backup.login].update(
            last_success=now,
            last_failed=0,
            size=backup.size,
            seconds=round(backup.seconds, 3),
            paused_seconds=round(backup.paused_seconds, 3),
        )
    for login in failed:
        state[login]["last_failed"] = 1
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(path)
    return state


def backup_metrics(state: dict) -> str:
    """The textfile: per login the time of its last good backup (or since backups began), whether
    the last attempt failed, and the last archive's size and times."""
    lines = []
    for name, help_text, key in (
        (
            "mt5_backup_last_success_timestamp_seconds",
            "Last good backup (kind account: a data volume; kind postgres: the database), Unix time; before the first, when backups began.",
            None,
        ),
        ("mt5_backup_last_failed", "1 when the last backup attempt failed.", "last_failed"),
        ("mt5_backup_last_size_bytes", "Size of the account's newest archive.", "size"),
        ("mt5_backup_last_paused_seconds", "How long the last backup paused the account.", "paused_seconds"),
    ):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for login, entry in sorted(state.items()):
            value = max(entry.get("last_success") or 0, entry.get("since") or 0) if key is None else entry.get(key)
            if value is not None:
                lines.append(f'{name}{{kind="account",login="{login}"}} {value}')
    return "\n".join(lines) + "\n"


def write_backup_metrics(textfile_dir: Path | None, state: dict) -> None:
    if textfile_dir is None or not textfile_dir.is_dir():
        return
    tmp = textfile_dir / f".{BACKUP_TEXTFILE}.tmp"
    tmp.write_text(backup_metrics(state))
    tmp.chmod(0o644)
    tmp.replace(textfile_dir / BACKUP_TEXTFILE)


def run_backups(args: argparse.Namespace) -> int:
    """`backup`, `restore`, `backups` and `backup-metrics` of mt5farm-account."""
    if args.command == "restore":
        restored = restore_account(_one_container(args.login, args.scope), args.backup_dir, args.archive, args.held_dir)
        print(f"mt5farm-account: login {args.login}: restored from {restored}")
        return 0
    everyone = sorted((Container.from_inspect(d) for d in account_containers(args.scope)), key=lambda c: c.login)
    everyone = [c for c in everyone if not c.name.endswith((NEXT_SUFFIX, PREV_SUFFIX))]
    if args.command == "backups":
        for c in everyone if args.login is None else [_one_container(args.login, args.scope)]:
            for path in archives_of(args.backup_dir, c.login):
                print(f"{c.login}\t{path.name}\t{path.stat().st_size}")
        return 0
    targets = everyone if args.command == "backup-metrics" or args.all else [_one_container(login, args.scope) for login in args.logins]
    done: list[Backup] = []
    failed: list[str] = []
    for container in targets if args.command == "backup" else []:
        try:
            backup = backup_account(container, args.backup_dir, args.keep)
        except (DockerError, OSError) as error:
            failed.append(container.login)
            print(f"mt5farm-account: login {container.login}: backup failed: {error}", file=sys.stderr)
            continue
        done.append(backup)
        print(
            f"mt5farm-account: login {backup.login}: {backup.path} ({backup.size} bytes, paused {backup.paused_seconds:.1f} s, {backup.seconds:.1f} s in all)"
        )
    state = record_backups(args.backup_dir, done, failed, [c.login for c in targets], time.time())
    write_backup_metrics(args.textfile_dir, state)
    return 1 if failed else 0


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
        backups = argparse.ArgumentParser(add_help=False)
        backups.add_argument("--backup-dir", type=Path, default=BACKUP_DIR, help=f"archives and state.json (default {BACKUP_DIR})")
        backups.add_argument(
            "--textfile-dir", type=Path, default=None, help="node exporter's textfile directory, for the mt5_backup_* metrics"
        )
        backup = sub.add_parser("backup", parents=[backups], help="archive the accounts' data volumes (each paused while it is read)")
        backup.add_argument("logins", nargs="*")
        backup.add_argument("--all", action="store_true", help="every account container of this host")
        backup.add_argument("--keep", type=int, default=7, help="archives kept per account, newest first (default 7)")
        restore = sub.add_parser("restore", parents=[backups], help="put an archive back into the account's data volume")
        restore.add_argument("login")
        restore.add_argument("--archive", default=None, help="file name of the archive (default the newest)")
        sub.add_parser("backups", parents=[backups], help="the archives kept, per account").add_argument("login", nargs="?")
        sub.add_parser("backup-metrics", parents=[backups], help="rewrite the mt5_backup_* metrics (new accounts begin their backup age)")
        args = parser.parse_args(argv)
        if args.command == "backup" and args.all == bool(args.logins):
            parser.error("backup: give logins or --all (not both)")
        if args.command == "backup" and args.keep < 1:
            parser.error("backup: --keep must be at least 1")
        if args.command in ("backup", "restore", "backups", "backup-metrics"):
            try:
                return run_backups(args)
            except DockerError as error:
                print(f"mt5farm-account: {error}", file=sys.stderr)
                return 1
        return run_account(args)
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
