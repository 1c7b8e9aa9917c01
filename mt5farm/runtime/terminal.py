"""``mt5-terminal``: write the start ini, run terminal64.exe under Wine, exit when it dies.

supervisord runs this as the ``terminal`` program (Wine image). Each start writes the ini
from the account's secret files to the tmpfs (``/dev/shm/mt5farm/terminal.ini``, 0600),
waits for the X display, then starts::

    wine explorer /desktop=MT5,<W>x<H> C:\\MT5\\terminal64.exe /portable /config:Z:\\dev\\shm\\mt5farm\\terminal.ini

inside a Wine virtual desktop. It exits (and supervisord starts it again) when
terminal64.exe is gone; on SIGTERM it stops the terminal's processes. A LiveUpdate hand-off
(``terminal64.exe /update``) is neither a crash nor killed: see :class:`TerminalLoop`.

``mt5-terminal write-ini`` only writes the ini (used by the tests).
``mt5-wait-terminal -- CMD...`` waits until terminal64.exe runs (not its updater), then execs CMD: the bridge
starts after the terminal, so MetaTrader5.initialize() attaches to our portable terminal
rather than starting a second one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import SECRET_RUNTIME_DIR
from .common import display_number, exec_command, flag, load_image, log, wait_for
from .ini import IniError, read_secret, start_ini, write_private
from .programs import secrets_dir

PROG = "mt5-terminal"
INI_PATH = Path(SECRET_RUNTIME_DIR) / "terminal.ini"
TERMINAL_EXE = "terminal64.exe"
START_TIMEOUT = 120.0
POLL = 1.0
#: The argument of MetaTrader's LiveUpdate hand-off (``terminal64.exe /update``).
UPDATE_ARG = "/update"
#: After the terminal is gone: how long its updater (or the terminal it restarts) may take to
#: appear before the exit counts as a crash.
HANDOFF_WAIT = 15.0
#: The oldest a LiveUpdate hand-off may get: older, it counts as hung and is killed. A
#: replacement of the terminal's files takes seconds; Wine on a loaded host, a minute or two.
UPDATE_TIMEOUT = 600.0


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


@dataclass(frozen=True)
class WindowsProcess:
    """A Wine process running a Windows program, as /proc shows it."""

    pid: int
    name: str  # argv[0]'s basename, lower case: "terminal64.exe"
    args: tuple[str, ...]  # argv[1:]
    age: float | None  # seconds since it started; None when /proc does not say

    @property
    def updating(self) -> bool:
        """MetaTrader's LiveUpdate hand-off: ``terminal64.exe /update`` (any program given /update)."""
        return any(arg.lower() == UPDATE_ARG for arg in self.args)


def _age(entry: Path, uptime: float | None, ticks: int) -> float | None:
    if uptime is None:
        return None
    try:
        stat = (entry / "stat").read_text()
        # Field 22 (starttime, clock ticks after boot); the name in field 2 may hold spaces.
        started = int(stat[stat.rindex(")") + 2 :].split()[19]) / ticks
    except (OSError, ValueError, IndexError):
        return None
    return max(uptime - started, 0.0)


def windows_processes(proc: Path = Path("/proc")) -> list[WindowsProcess]:
    """Every Wine process running a ``.exe`` (by argv[0]), with its arguments and age."""
    try:
        uptime: float | None = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        uptime = None
    ticks = os.sysconf("SC_CLK_TCK")
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [part.decode(errors="replace") for part in (entry / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        name = argv[0].replace("\\", "/").rsplit("/", 1)[-1].lower()
        if name.endswith(".exe"):
            args = tuple(arg for arg in argv[1:] if arg)
            found.append(WindowsProcess(int(entry.name), name, args, _age(entry, uptime, ticks)))
    return sorted(found, key=lambda p: p.pid)


def terminals(processes: Sequence[WindowsProcess]) -> list[WindowsProcess]:
    """The running terminals: terminal64.exe, not the LiveUpdate hand-off."""
    return [p for p in processes if p.name == TERMINAL_EXE and not p.updating]


def updaters(processes: Sequence[WindowsProcess]) -> list[WindowsProcess]:
    return [p for p in processes if p.updating]


class TerminalLoop:
    """Start the terminal (or adopt one that runs), watch it, return when it is gone.

    **LiveUpdate.** MetaTrader updates itself: the terminal downloads a new build, exits, a
    ``terminal64.exe /update`` replaces the files, then starts the terminal again. The loop
    used to call the first poll without a terminal a crash and kill every terminal64.exe,
    the updater included, leaving a half-replaced terminal. Now:

    - a terminal that is gone is a crash only if, within ``HANDOFF_WAIT`` seconds, neither an
      updater nor a terminal shows up (the old terminal exits before its updater starts);
    - while an updater runs, the loop waits for it, at most until it is ``UPDATE_TIMEOUT``
      seconds old (a hung updater is killed, and the next start is a fresh one), then up to
      ``START_TIMEOUT`` for the terminal it starts, which it goes on watching;
    - stopping (supervisord's SIGTERM: a container stop, or the watchdog restarting the
      terminal) never kills an updater younger than ``UPDATE_TIMEOUT``: it is left to finish,
      and the next start waits for it and adopts the terminal it starts.

    The image also keeps LiveUpdate from starting (its update hosts resolve to nothing in the
    container, roles/mt5_linux): an update that gets through anyway runs to its end, and
    ``mt5_terminal_build`` against ``mt5_image_terminal_build`` says so (docs/images.md).

    The process table, the clock, sleeping, starting and signalling are parameters, so the
    tests drive the loop through an update without Wine.
    """

    def __init__(
        self,
        launch: Callable[[], subprocess.Popen | None],
        processes: Callable[[], list[WindowsProcess]] = windows_processes,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        kill: Callable[[int, int], None] = os.kill,
        killpg: Callable[[int, int], None] = os.killpg,
        say: Callable[[str], None] = lambda message: log(PROG, message),
    ) -> None:
        self._launch = launch
        self._processes = processes
        self._clock = clock
        self._sleep = sleep
        self._kill = kill
        self._killpg = killpg
        self._say = say
        self.stopping = False
        self.popen: subprocess.Popen | None = None

    def stop(self) -> None:
        self.stopping = True

    def _wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = self._clock() + timeout
        while not self.stopping:
            if predicate():
                return True
            if self._clock() >= deadline:
                return False
            self._sleep(POLL)
        return False

    def _await_update(self) -> bool:
        """Wait while a LiveUpdate hand-off runs; False when it hung (and was killed)."""
        running = updaters(self._processes())
        if not running:
            return True
        oldest = max((p.age or 0.0) for p in running)
        self._say(
            f"LiveUpdate in progress ({', '.join(f'pid {p.pid}' for p in running)}: {running[0].name} "
            f"{' '.join(running[0].args)}): waiting for it, at most {max(UPDATE_TIMEOUT - oldest, 0):.0f} s more"
        )
        if self._wait(lambda: not updaters(self._processes()), max(UPDATE_TIMEOUT - oldest, 0.0)):
            self._say("the LiveUpdate hand-off finished")
            return True
        if self.stopping:
            return True
        self._say(f"the LiveUpdate hand-off is still running after {UPDATE_TIMEOUT:g} s: killing it, then starting afresh")
        for process in updaters(self._processes()):
            self._signal(process.pid, signal.SIGKILL)
        return False

    def _handed_off(self) -> bool:
        processes = self._processes()
        return bool(updaters(processes) or terminals(processes))

    def _signal(self, pid: int, sig: int) -> None:
        try:
            self._kill(pid, sig)
        except ProcessLookupError:
            pass

    def run(self) -> int:
        updating = bool(updaters(self._processes()))
        if not self._await_update():
            self._stop()
            return 1
        if updating:  # the updater starts the terminal as it ends: give it the hand-off's time
            self._wait(lambda: bool(terminals(self._processes())), HANDOFF_WAIT)
        if self.stopping:
            return 0
        adopted = terminals(self._processes())
        if adopted:
            self._say(f"{TERMINAL_EXE} already runs (pid {adopted[0].pid}, started by a LiveUpdate or an earlier start): watching it")
        else:
            self.popen = self._launch()
        spawned, seen = self._clock(), bool(adopted)
        while not self.stopping:
            self._sleep(POLL)
            processes = self._processes()
            if updaters(processes):
                if not self._await_update():
                    break
                if self.stopping:
                    break
                if self._wait(lambda: bool(terminals(self._processes())), START_TIMEOUT):
                    self._say(f"{TERMINAL_EXE} runs again after the LiveUpdate: watching it")
                    seen = True
                    continue
                if not self.stopping:
                    self._say(f"no {TERMINAL_EXE} within {START_TIMEOUT:g} s after the LiveUpdate")
                break
            running = bool(terminals(processes))
            if running and not seen:
                self._say(f"{TERMINAL_EXE} is running")
            seen = seen or running
            if seen and not running:
                # A crash, or the moment between the old terminal's exit and its updater's start.
                if self._wait(self._handed_off, HANDOFF_WAIT):
                    continue
                if not self.stopping:
                    self._say(f"{TERMINAL_EXE} exited (no LiveUpdate followed within {HANDOFF_WAIT:g} s)")
                break
            if not seen and self._clock() - spawned > START_TIMEOUT:
                self._say(f"{TERMINAL_EXE} did not start within {START_TIMEOUT:g} s")
                break
        self._stop()
        return 0 if self.stopping else 1

    def _stop(self) -> None:
        """Stop the terminal's processes, but never a LiveUpdate hand-off that may still finish."""
        young = [p for p in updaters(self._processes()) if p.age is None or p.age < UPDATE_TIMEOUT]
        if young:
            self._say(
                f"leaving the LiveUpdate hand-off (pid {', '.join(str(p.pid) for p in young)}) to finish: "
                "the next start waits for it and watches the terminal it starts"
            )
            return
        for process in terminals(self._processes()):
            self._signal(process.pid, signal.SIGTERM)
        self._wait_quietly(lambda: not terminals(self._processes()), 8.0)
        popen = self.popen
        if popen is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    self._killpg(popen.pid, sig)
                except ProcessLookupError:
                    break
                if self._wait_quietly(lambda: popen.poll() is not None, 3.0):
                    break
        for process in self._processes():
            if process.name == TERMINAL_EXE:
                self._signal(process.pid, signal.SIGKILL)

    def _wait_quietly(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Like _wait, also while stopping (the stop itself needs to wait)."""
        deadline = self._clock() + timeout
        while not predicate():
            if self._clock() >= deadline:
                return False
            self._sleep(0.5)
        return True


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

    def launch() -> subprocess.Popen:
        log(PROG, f"starting {image['terminal']['windows_path']} /portable in a {width}x{height} virtual desktop")
        return subprocess.Popen(command, start_new_session=True)

    loop = TerminalLoop(launch)

    def on_term(signum, frame):
        loop.stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    return loop.run()


def wait_terminal(argv: Sequence[str]) -> int:
    if not argv:
        log("mt5-wait-terminal", "usage: mt5-wait-terminal -- COMMAND [ARGS...]")
        return 2
    if not wait_for(lambda: bool(terminals(windows_processes())), START_TIMEOUT, 1.0):
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
