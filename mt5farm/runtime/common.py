"""Small helpers shared by the entrypoint and the program wrappers."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from . import IMAGE_JSON


def log(prog: str, message: str) -> None:
    print(f"{prog}: {message}", flush=True)


def load_image(path: str = IMAGE_JSON) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"{name}={raw!r}: use 0 or 1")


def display_number(display: str) -> int:
    return int(display.lstrip(":").split(".")[0])


def x_lock_paths(display: str, tmp: Path = Path("/tmp")) -> list[Path]:
    number = display_number(display)
    return [tmp / f".X{number}-lock", tmp / ".X11-unix" / f"X{number}"]


def clear_x_locks(display: str, tmp: Path = Path("/tmp")) -> list[Path]:
    """Remove an X server's lock and socket left by a previous run of this container.

    A restarted container keeps its /tmp; Xvfb refuses a display whose lock exists.
    """
    removed = []
    for path in x_lock_paths(display, tmp):
        if path.exists() or path.is_symlink():
            path.unlink()
            removed.append(path)
    return removed


def windows_exe_pids(name: str, proc: Path = Path("/proc")) -> list[int]:
    """PIDs of Wine processes running the Windows program ``name`` (by argv[0]'s basename)."""
    wanted = name.lower()
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue
        base = argv0.replace("\\", "/").rsplit("/", 1)[-1].lower()
        if base == wanted:
            pids.append(int(entry.name))
    return pids


def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def exec_command(argv: list[str]) -> None:
    sys.stdout.flush()
    os.execvp(argv[0], argv)
