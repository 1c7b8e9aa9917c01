"""``mt5-terminal``: write the start ini, run terminal64.exe under Wine, exit when it dies.

supervisord runs this as the ``terminal`` program (Wine image). Each start writes the ini
from the account's secret files to the tmpfs (``/dev/shm/mt5farm/terminal.ini``, 0600),
waits for the X display, then starts::

    wine explorer /desktop=MT5,<W>x<H> C:\\MT5\\terminal64.exe /portable /config:Z:\\dev\\shm\\mt5farm\\terminal.ini

inside a Wine virtual desktop. It exits (and supervisord starts it again) when
terminal64.exe is gone; on SIGTERM it stops the terminal's processes.

``mt5-terminal write-ini`` only writes the ini (used by the tests).
``mt5-wait-terminal -- CMD...`` waits until terminal64.exe runs, then execs CMD: the bridge
starts after the terminal, so MetaTrader5.initialize() attaches to our portable terminal
rather than starting a second one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import SECRET_RUNTIME_DIR
from .common import display_number, exec_command, flag, load_image, log, wait_for, windows_exe_pids
from .ini import IniError, read_secret, start_ini, write_private
from .programs import secrets_dir

PROG = "mt5-terminal"
INI_PATH = Path(SECRET_RUNTIME_DIR) / "terminal.ini"
TERMINAL_EXE = "terminal64.exe"
START_TIMEOUT = 120.0


def unix_to_windows(path: Path) -> str:
    return "Z:" + str(path).replace("/", "\\")


def write_ini() -> Path:
    env = os.environ
    password = read_secret(Path(secrets_dir(env)), "password")
    if password is None:
        raise IniError(f"no broker password in {secrets_dir(env)}/password")
    login_raw = (env.get("MT5_LOGIN") or "").strip()
    if not login_raw.isdigit():
        raise IniError(f"MT5_LOGIN={login_raw!r} is not an account number")
    data = start_ini(int(login_raw), password, (env.get("MT5_SERVER") or "").strip(), flag(env, "MT5_EXPERTS_ENABLED", True))
    write_private(INI_PATH, data)
    return INI_PATH


def _stop(popen: subprocess.Popen) -> None:
    for pid in windows_exe_pids(TERMINAL_EXE):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    wait_for(lambda: not windows_exe_pids(TERMINAL_EXE), 8.0)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(popen.pid, sig)
        except ProcessLookupError:
            break
        if wait_for(lambda: popen.poll() is not None, 3.0):
            break
    for pid in windows_exe_pids(TERMINAL_EXE):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_terminal() -> int:
    image = load_image()
    try:
        ini = write_ini()
    except IniError as exc:
        log(PROG, f"cannot write the start ini: {exc}")
        return 2
    display = image.get("display", ":99")
    socket = Path("/tmp/.X11-unix") / f"X{display_number(display)}"
    if not wait_for(socket.exists, 30.0):
        log(PROG, f"the X display {display} did not come up in 30 s")
        return 1
    width, height = image.get("screen", "1280x800x24").split("x")[:2]
    command = [
        "wine",
        "explorer",
        f"/desktop=MT5,{width}x{height}",
        image["terminal"]["windows_path"],
        "/portable",
        f"/config:{unix_to_windows(ini)}",
    ]
    log(PROG, f"starting {image['terminal']['windows_path']} /portable in a {width}x{height} virtual desktop")
    popen = subprocess.Popen(command, start_new_session=True)
    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    spawned, seen = time.monotonic(), False
    while not stopping:
        time.sleep(1.0)
        running = bool(windows_exe_pids(TERMINAL_EXE))
        if running and not seen:
            log(PROG, f"{TERMINAL_EXE} is running")
        seen = seen or running
        if seen and not running:
            log(PROG, f"{TERMINAL_EXE} exited")
            break
        if not seen and time.monotonic() - spawned > START_TIMEOUT:
            log(PROG, f"{TERMINAL_EXE} did not start within {START_TIMEOUT:g} s")
            break
    _stop(popen)
    return 0 if stopping else 1


def wait_terminal(argv: Sequence[str]) -> int:
    if not argv:
        log("mt5-wait-terminal", "usage: mt5-wait-terminal -- COMMAND [ARGS...]")
        return 2
    if not wait_for(lambda: bool(windows_exe_pids(TERMINAL_EXE)), START_TIMEOUT, 1.0):
        log("mt5-wait-terminal", f"{TERMINAL_EXE} is not running after {START_TIMEOUT:g} s; not starting {argv[0]}")
        return 1
    exec_command(list(argv))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["write-ini"]:
        try:
            path = write_ini()
        except IniError as exc:
            log(PROG, f"cannot write the start ini: {exc}")
            return 2
        log(PROG, f"wrote {path}")
        return 0
    if args[:1] == ["wait"]:
        rest = args[1:]
        return wait_terminal(rest[1:] if rest[:1] == ["--"] else rest)
    return run_terminal()


if __name__ == "__main__":
    sys.exit(main())
