#!/usr/bin/python3
"""The MT5 Farm containers' memory, limit, restarts, state and health, for node exporter.

    mt5farm-container-metrics --textfile-dir DIR [--every SECONDS]

Writes ``DIR/mt5_containers.prom`` (node exporter's textfile collector, Prometheus text
format) for every container labelled ``mt5farm.scope`` (accounts and platform services): its
memory, limit, restarts, state, health, start time and image, and for an account whether an
operator holds it stopped (``mt5farm-account stop``; whether a hold marker is current is the
guard's own decision, read from the guard program the mt5_linux role installs,
``--guard``, so the metric and the guard cannot disagree).
Memory is read from each container's cgroup, as ``docker stats`` shows it: usage minus
inactive file cache (cgroup v1 and v2, cgroupfs and systemd drivers). Installed by the
monitoring role as /usr/local/sbin/mt5farm-container-metrics and run by its systemd timer
(or cron) with the textfile directory as argument: one pass, then exit (an error ends it,
exit status 1). Where neither systemd nor a cron daemon runs, the role starts it in the
background with ``--every SECONDS``: a pass every SECONDS (start to start) until SIGTERM; a
pass that fails is logged (each new error once, and when passes succeed again) and the next
one tries again.

Runs on the host's own Python 3 (3.10 or later) with the Docker SDK (Debian's
python3-docker); everything but ``main`` is pure and unit-tested (tests/monitoring).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.machinery
import importlib.util
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

OUT_NAME = "mt5_containers.prom"
CGROUP = Path("/sys/fs/cgroup")
PROC = Path("/proc")
SCOPE_LABEL = "mt5farm.scope"
LOGIN_LABEL = "mt5farm.login"
ACCOUNT_SCOPE = "accounts"
# The host guard and mt5farm-account (mt5farm/guard.py, installed by the mt5_linux role).
GUARD = Path("/usr/local/sbin/mt5farm-guard")
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")

# name -> (type, help), in the order they are written.
METRICS: dict[str, tuple[str, str]] = {
    "mt5_container_memory_working_set_bytes": ("gauge", "Memory in use (usage minus inactive file cache)."),
    "mt5_container_memory_limit_bytes": ("gauge", "Memory limit of the container (absent without one)."),
    "mt5_container_restart_count": ("counter", "Restarts of the container by Docker since it was created."),
    "mt5_container_running": ("gauge", "1 when the container runs."),
    "mt5_container_healthy": ("gauge", "1 when its healthcheck passes, 0 when not (absent without one)."),
    "mt5_container_held": (
        "gauge",
        "1 when an operator stopped the account with mt5farm-account stop and the hold is current (accounts only).",
    ),
    "mt5_container_started_timestamp_seconds": (
        "gauge",
        "When the container last started (State.StartedAt), Unix seconds (absent if never).",
    ),
    "mt5_container_info": ("gauge", "Always 1; the image label is the image reference the container was created from."),
}

# One sample: (metric name, label text without braces, value).
Sample = tuple[str, str, float]


def working_set(usage: int, stat_text: str, inactive_key: str) -> float:
    """Bytes in use: ``usage`` minus the ``inactive_key`` line of a memory.stat text, at least 0.

    Raises ``ValueError`` when memory.stat has a malformed line or a non-integer value.
    """
    stat = dict(row.split() for row in stat_text.splitlines())
    return float(max(usage - int(stat.get(inactive_key, 0)), 0))


def cgroup_memory(pid: int, proc: Path = PROC, cgroup_root: Path = CGROUP) -> float | None:
    """Working set of the cgroup of ``pid``, in bytes, or None when it cannot be read.

    Reads ``<proc>/<pid>/cgroup``: the cgroup v2 line (empty controller list) gives
    ``memory.current`` and ``inactive_file``; a v1 line with the ``memory`` controller gives
    ``memory/…/memory.usage_in_bytes`` and ``total_inactive_file``.
    """
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            base = cgroup_root / path.lstrip("/")
            usage_file, inactive_key = base / "memory.current", "inactive_file"
        elif "memory" in controllers.split(","):
            base = cgroup_root / "memory" / path.lstrip("/")
            usage_file, inactive_key = base / "memory.usage_in_bytes", "total_inactive_file"
        else:
            continue
        try:
            return working_set(int(usage_file.read_text()), (base / "memory.stat").read_text(), inactive_key)
        except (OSError, ValueError):
            continue
    return None


def escape(value: str) -> str:
    """A Prometheus label value, escaped (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_text(name: str, labels: Mapping[str, str]) -> str:
    """``container="…",scope="…",service="…",login="…"`` of a container from its Docker labels.

    ``service`` is the ``mt5farm.service`` label, or ``account`` for a container with an
    ``mt5farm.login`` label (an account container), else empty.
    """
    tags = {
        "container": name,
        "scope": labels.get(SCOPE_LABEL, ""),
        "service": labels.get("mt5farm.service", "account" if labels.get("mt5farm.login") else ""),
        "login": labels.get("mt5farm.login", ""),
    }
    return ",".join(f'{key}="{escape(value)}"' for key, value in tags.items())


def unix_seconds(timestamp: str) -> float | None:
    """Docker's RFC 3339 time (``2026-12-02T10:48:07.123456789Z``) as Unix seconds, or None
    for an empty or unparsable one and for Docker's zero time (``0001-01-01T00:00:00Z``: never)."""
    match = _ISO.fullmatch(timestamp or "")
    if not match or match[1].startswith("0001-"):
        return None
    whole = datetime.datetime.fromisoformat(match[1] + ("+00:00" if match[3] == "Z" else match[3]))
    return whole.timestamp() + float(f"0.{match[2] or 0}")


def is_account(labels: Mapping[str, str]) -> bool:
    """An account container: the accounts scope and a login label (what the guard looks at)."""
    return labels.get(SCOPE_LABEL) == ACCOUNT_SCOPE and bool(labels.get(LOGIN_LABEL))


def is_held(attrs: Mapping[str, Any], guard: ModuleType | None, held_dir: Path) -> bool:
    """True when the guard would leave this container stopped: its hold marker in ``held_dir``
    is current for it (the guard's ``read_marker`` and ``holds``, given the guard module).
    Without the guard program no hold is honoured: False."""
    if guard is None or not attrs.get("Id"):
        return False
    container = guard.Container.from_inspect(dict(attrs))
    try:
        marker = guard.read_marker(container.name, held_dir)
    except ValueError:  # not a name a marker can have
        return False
    return bool(guard.holds(marker, container))


def load_guard(path: Path) -> ModuleType | None:
    """The guard program at ``path`` as a module (it has no .py suffix), or None when absent."""
    if not path.is_file():
        return None
    sys.dont_write_bytecode = True  # nothing written next to /usr/local/sbin/mt5farm-guard
    loader = importlib.machinery.SourceFileLoader("mt5farm_guard", str(path))
    spec = importlib.util.spec_from_loader("mt5farm_guard", loader)
    if spec is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module


def container_samples(
    name: str, labels: Mapping[str, str], attrs: Mapping[str, Any], memory: Callable[[int], float | None], held: bool | None = None
) -> list[Sample]:
    """The samples of one container from its name, labels and ``docker inspect`` data.

    ``memory(pid)`` gives the working set of a running container's main process (bytes) or
    None. A limit of 0 (none), a missing healthcheck, an unreadable working set or a
    container that never started give no sample for that metric. ``held``: whether an
    operator's hold is current for it (``is_held``), None for no sample (not an account).
    ``mt5_container_info`` carries one more label, ``image`` (``Config.Image``).
    """
    text = label_text(name, labels)
    state = attrs.get("State", {})
    running = bool(state.get("Running"))
    samples: list[Sample] = [
        ("mt5_container_running", text, 1 if running else 0),
        ("mt5_container_restart_count", text, attrs.get("RestartCount", 0)),
    ]
    limit = attrs.get("HostConfig", {}).get("Memory") or 0
    if limit:
        samples.append(("mt5_container_memory_limit_bytes", text, limit))
    if running:
        usage = memory(int(state.get("Pid") or 0))
        if usage is not None:
            samples.append(("mt5_container_memory_working_set_bytes", text, usage))
    health = (state.get("Health") or {}).get("Status")
    if health:
        samples.append(("mt5_container_healthy", text, 1 if health == "healthy" else 0))
    if held is not None:
        samples.append(("mt5_container_held", text, 1 if held else 0))
    started = unix_seconds(str(state.get("StartedAt") or ""))
    if started is not None:
        samples.append(("mt5_container_started_timestamp_seconds", text, started))
    image = str((attrs.get("Config") or {}).get("Image") or "")
    samples.append(("mt5_container_info", f'{text},image="{escape(image)}"', 1))
    return samples


def render(samples: Iterable[Sample]) -> str:
    """The textfile: for each metric of METRICS, its HELP and TYPE lines, then its samples
    in the order given (values as whole numbers); ends with a newline.

    Raises ``KeyError`` for a sample of a metric not in METRICS.
    """
    by_metric: dict[str, list[tuple[str, float]]] = {name: [] for name in METRICS}
    for name, labels, value in samples:
        by_metric[name].append((labels, value))
    lines = []
    for name, (kind, help_text) in METRICS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{{{labels}}} {value:.0f}" for labels, value in by_metric[name]]
    return "\n".join(lines) + "\n"


def write_textfile(out: Path, text: str) -> None:
    """Replace ``out`` with ``text`` atomically (a temporary file in its directory), mode 0644:
    node exporter never reads a half-written file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".mt5_containers.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:  # an error, or SIGTERM in loop mode: no temporary file left behind
        Path(tmp).unlink(missing_ok=True)
        raise


def log(message: str) -> None:
    print(f"mt5farm-container-metrics: {message}", flush=True)


def collect(textfile_dir: Path, guard_path: Path, held_dir: Path | None) -> None:
    """One pass: every labelled container's samples, written to ``textfile_dir/OUT_NAME``.

    The guard program is read at every pass (a converge may have replaced it since the last);
    ``held_dir`` None means the guard's own. Errors (the Docker engine, the file) propagate.
    """
    guard = load_guard(guard_path)
    held = held_dir or (guard.HELD_DIR if guard is not None else Path("/var/lib/mt5farm/held"))
    # Imported here: the Docker SDK is the host's (python3-docker), the pure parts need none.
    import docker

    client = docker.from_env(timeout=20)
    try:
        samples: list[Sample] = []
        for container in client.containers.list(all=True, filters={"label": SCOPE_LABEL}):
            is_held_now = is_held(container.attrs, guard, held) if is_account(container.labels) else None
            samples += container_samples(container.name, container.labels, container.attrs, cgroup_memory, is_held_now)
    finally:
        client.close()
    write_textfile(textfile_dir / OUT_NAME, render(samples))


def run_every(
    every: float,
    one_pass: Callable[[], object],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
    say: Callable[[str], object] = log,
) -> None:
    """Call ``one_pass`` every ``every`` seconds, start to start (at once again after a pass
    longer than that), forever: only ``BaseException``s that are not ``Exception``s end it
    (SystemExit from the SIGTERM handler ``main`` installs, KeyboardInterrupt).

    A pass that raises is said (``say``) with its error, once while the same error repeats,
    and once more when a pass succeeds again; the next pass comes at its time all the same.
    (The guard and the fleet status generator have loops of their own: the three programs
    are installed apart, on different hosts or in a container, with the standard library
    only, so none can import another's.)
    """
    failing: str | None = None
    while True:
        started = clock()
        try:
            one_pass()
        except Exception as error:  # noqa: BLE001 - any failure of one pass: the next one tries again
            text = f"{type(error).__name__}: {error}"
            if text != failing:
                say(f"a pass failed, trying again every {every:g} s: {text}")
            failing = text
        else:
            if failing is not None:
                say("a pass succeeded again")
            failing = None
        left = every - (clock() - started)
        if left > 0:
            sleep(left)


def _seconds(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value}: a positive number of seconds")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mt5farm-container-metrics", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--textfile-dir", type=Path, required=True, help=f"node exporter's textfile directory (writes {OUT_NAME} there)")
    parser.add_argument("--guard", type=Path, default=GUARD, help=f"the host guard program, whose holds it reports (default {GUARD})")
    parser.add_argument(
        "--held-dir", type=Path, default=None, help="the guard's hold markers (default: the guard's own, /var/lib/mt5farm/held)"
    )
    parser.add_argument("--every", type=_seconds, default=None, help="a pass every SECONDS until SIGTERM (default: one pass, then exit)")
    args = parser.parse_args(argv)
    if args.every is None:
        collect(args.textfile_dir, args.guard, args.held_dir)
        return 0
    # start-stop-daemon --stop sends SIGTERM: end at once, whatever the pass was doing.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log(f"writing {args.textfile_dir / OUT_NAME} every {args.every:g} s")
    run_every(args.every, lambda: collect(args.textfile_dir, args.guard, args.held_dir))
    return 0  # not reached: run_every ends only by an exception


if __name__ == "__main__":
    sys.exit(main())
