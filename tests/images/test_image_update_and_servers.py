"""Issue 12, faults 9 and 10 in the Wine image's runtime (no Docker: a temp data root and a
fake /proc stand in for the container's).

- fault 10: a rebuilt image's broker list (``config/servers.dat``) reaches an existing
  account volume, atomically, and the account's own files stay;
- fault 9: the terminal loop lets a LiveUpdate hand-off (``terminal64.exe /update``) finish
  instead of calling it a crash and killing the updater.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mt5farm.runtime import entrypoint
from mt5farm.runtime.entrypoint import prepare_data

BROKER_STAMP = ".mt5farm-broker-lists.json"  # what the image delivered last, on the volume

WINE = {"variant": "wine", "uid": os.getuid(), "terminal": {"included": True}, "terminal_data_dirs": ["config", "logs"]}


# --- fault 10: broker lists from a rebuilt image ---------------------------------------------------
@pytest.fixture
def volume(tmp_path: Path) -> tuple[dict, Path, Path]:
    """An image seed with servers.dat v1, and an account volume first prepared from it."""
    seed = tmp_path / "seed"
    (seed / "config").mkdir(parents=True)
    (seed / "config" / "servers.dat").write_bytes(b"servers v1: Broker-Demo")
    (seed / "config" / "common.ini").write_text("image's common.ini")
    data = tmp_path / "data"
    data.mkdir()
    image = {**WINE, "seed_dir": str(seed), "terminal_broker_lists": ["config/servers.dat"]}
    prepare_data(image, {"STATE_DIR": str(data / "service")}, data)
    config = data / "terminal" / "config"
    # The account's own files, written by its terminal after the first start.
    (config / "accounts.dat").write_bytes(b"the account's saved login")
    (config / "common.ini").write_text("the account's common.ini")
    return image, seed, data


def test_a_rebuilt_images_servers_dat_reaches_an_existing_volume_and_the_accounts_files_stay(volume):
    image, seed, data = volume
    config = data / "terminal" / "config"
    assert (config / "servers.dat").read_bytes() == b"servers v1: Broker-Demo"
    (seed / "config" / "servers.dat").write_bytes(b"servers v2: Broker-Demo, Broker-Live2")  # the rebuilt image

    changed = prepare_data(image, {"STATE_DIR": str(data / "service")}, data)

    assert changed == [str(config / "servers.dat")]
    assert (config / "servers.dat").read_bytes() == b"servers v2: Broker-Demo, Broker-Live2"
    assert (config / "servers.dat.mt5farm-previous").read_bytes() == b"servers v1: Broker-Demo"
    assert (config / "accounts.dat").read_bytes() == b"the account's saved login"
    assert (config / "common.ini").read_text() == "the account's common.ini"
    assert not [p.name for p in config.iterdir() if p.name.startswith(".")], "no temporary file is left behind"


def test_a_servers_dat_the_terminal_updated_is_kept_while_the_image_brings_nothing_new(volume):
    image, _, data = volume
    servers = data / "terminal" / "config" / "servers.dat"
    servers.write_bytes(b"servers v1 + access points the broker sent")  # the terminal's own update
    assert prepare_data(image, {"STATE_DIR": str(data / "service")}, data) == []
    assert servers.read_bytes() == b"servers v1 + access points the broker sent"
    stamp = json.loads((data / "terminal" / BROKER_STAMP).read_text())
    assert list(stamp) == ["config/servers.dat"]


def test_a_volume_from_before_the_refresh_gets_the_images_list_once(volume):
    image, seed, data = volume
    (data / "terminal" / BROKER_STAMP).unlink()  # prepared by an entrypoint that seeded once only
    (seed / "config" / "servers.dat").write_bytes(b"servers v2")
    env = {"STATE_DIR": str(data / "service")}
    assert prepare_data(image, env, data) == [str(data / "terminal" / "config" / "servers.dat")]
    assert prepare_data(image, env, data) == []


def test_a_failed_copy_leaves_the_old_list_whole(volume, monkeypatch):
    image, seed, data = volume
    (seed / "config" / "servers.dat").write_bytes(b"servers v2")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(entrypoint.os, "replace", broken_replace)
    with pytest.raises(OSError):
        prepare_data(image, {"STATE_DIR": str(data / "service")}, data)
    config = data / "terminal" / "config"
    assert (config / "servers.dat").read_bytes() == b"servers v1: Broker-Demo"
    assert not [p.name for p in config.iterdir() if p.name.startswith(".")]


# --- fault 9: the LiveUpdate hand-off, end to end with real processes ------------------------------
# A stand-in for `wine explorer ... terminal64.exe`: processes whose argv[0] is a Windows path, as
# Wine's are. It plays MetaTrader's LiveUpdate: the terminal runs, exits, after a gap the updater
# (`terminal64.exe /update`) runs and, when it was not killed, writes UPDATED and starts the
# terminal again.
FAKE_WINE = """\
import subprocess, sys, time
from pathlib import Path

def windows(seconds, *args):
    code = "import sys, time; time.sleep(float(sys.argv[1]))"
    return subprocess.Popen(["C:\\\\MT5\\\\terminal64.exe", "-c", code, str(seconds), *args], executable=sys.executable)

windows(3, "/portable").wait()
time.sleep(2)  # the old terminal has exited, its updater is not there yet
updater = windows(3, "/update")
if updater.wait() == 0:
    (Path(sys.argv[0]).parent / "UPDATED").write_text("the updater finished")
    windows(600, "/portable").wait()
"""

RUN_TERMINAL = """\
import json, sys
from pathlib import Path
import mt5farm.runtime.terminal as terminal

image = json.loads(Path(sys.argv[1]).read_text())
terminal.load_image = lambda: image
terminal.write_ini = lambda: Path(sys.argv[2])  # the ini's own tests are test_image_ini.py
sys.exit(terminal.main([]))
"""


def test_a_liveupdate_hand_off_is_left_to_finish_and_its_terminal_watched(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys
    import time

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wine = bin_dir / "wine"
    wine.write_text(f"#!{sys.executable}\n{FAKE_WINE}")
    wine.chmod(0o755)
    display = 4000 + os.getpid() % 1000
    x11 = Path("/tmp/.X11-unix")
    made_x11 = not x11.exists()
    x11.mkdir(mode=0o1777, exist_ok=True)
    (x11 / f"X{display}").write_text("")
    image = {"display": f":{display}", "screen": "800x600x24", "terminal": {"windows_path": "C:\\MT5\\terminal64.exe"}}
    (tmp_path / "image.json").write_text(json.dumps(image))
    ini = tmp_path / "terminal.ini"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    loop = subprocess.Popen(
        [sys.executable, "-c", RUN_TERMINAL, str(tmp_path / "image.json"), str(ini)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 40
        while not (bin_dir / "UPDATED").exists() and loop.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # the relaunched terminal is up; the loop goes on watching it
        assert loop.poll() is None, f"the terminal loop gave up during the update:\n{loop.communicate()[0]}"
        assert (bin_dir / "UPDATED").exists(), "the updater was killed before it finished"
        loop.send_signal(signal.SIGTERM)
        out = loop.communicate(timeout=30)[0]
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
        (x11 / f"X{display}").unlink(missing_ok=True)
        if made_x11:
            x11.rmdir()
    assert loop.returncode == 0, out
    assert "LiveUpdate in progress" in out and "runs again after the LiveUpdate" in out, out


# --- fault 9: the loop's rules, on a scripted process table -------------------------------------
class World:
    """A scripted process table and clock for TerminalLoop: ``events`` are (time, action)
    with actions ("start", pid, args) / ("exit", pid) / ("stop",); kills are recorded."""

    def __init__(self, events):
        self.now = 0.0
        self.events = sorted(events, key=lambda e: e[0])
        self.running = {}  # pid -> (args, started)
        self.kills = []
        self.launched = 0
        self.loop = None

    def _apply(self):
        while self.events and self.events[0][0] <= self.now:
            _, action, *rest = self.events.pop(0)
            if action == "start":
                self.running[rest[0]] = (tuple(rest[1]), self.now)
            elif action == "exit":
                self.running.pop(rest[0], None)
            elif action == "stop":
                self.loop.stop()

    def processes(self):
        from mt5farm.runtime.terminal import WindowsProcess

        self._apply()
        return [WindowsProcess(pid, "terminal64.exe", args, self.now - since) for pid, (args, since) in sorted(self.running.items())]

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self._apply()

    def kill(self, pid, sig):
        self.kills.append((pid, sig))
        self.running.pop(pid, None)

    def launch(self):
        self.launched += 1
        self.events.append((self.now + 1, "start", 100 + self.launched, ["/portable"]))
        self.events.sort(key=lambda e: e[0])
        return None

    def run(self):
        from mt5farm.runtime.terminal import TerminalLoop

        self.loop = TerminalLoop(
            self.launch, self.processes, self.clock, self.sleep, self.kill, lambda pgid, sig: None, lambda message: None
        )
        return self.loop.run()


def test_a_terminal_that_exits_with_no_update_following_is_a_crash_after_the_hand_off_wait():
    from mt5farm.runtime.terminal import HANDOFF_WAIT

    world = World([(10, "exit", 101)])
    assert world.run() == 1
    assert HANDOFF_WAIT <= world.now - 10 <= HANDOFF_WAIT + 2


def test_a_hung_updater_is_killed_once_it_is_update_timeout_old():
    from mt5farm.runtime.terminal import UPDATE_TIMEOUT

    world = World([(10, "exit", 101), (12, "start", 200, ["/update"])])
    assert world.run() == 1
    assert (200, 9) in world.kills  # SIGKILL
    assert UPDATE_TIMEOUT <= world.now - 12 <= UPDATE_TIMEOUT + 30


def test_stopping_during_an_update_leaves_the_updater_alone():
    world = World([(10, "exit", 101), (12, "start", 200, ["/update"]), (40, "stop")])
    assert world.run() == 0
    assert world.kills == [] and 200 in world.running


def test_a_start_during_an_update_waits_for_it_and_watches_the_terminal_it_starts():
    world = World([(0, "start", 200, ["/update"]), (30, "exit", 200), (31, "start", 300, ["/portable"]), (200, "stop")])
    assert world.run() == 0
    assert world.launched == 0  # the updater's terminal was adopted, no second one started
    assert (300, 15) in world.kills  # and stopped on SIGTERM like our own


def test_windows_processes_are_read_with_their_arguments_and_age(tmp_path):
    from mt5farm.runtime.terminal import terminals, updaters, windows_processes

    ticks = os.sysconf("SC_CLK_TCK")
    (tmp_path / "uptime").write_text("1000.00 500.00\n")
    for pid, argv, started in [
        ("11", b"C:\\MT5\\terminal64.exe\0/portable\0", 100),
        ("12", b"C:\\MT5\\terminal64.exe\0/update\0", 990),
        ("13", b"/usr/bin/python3\0-m\0x\0", 1),
    ]:
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(argv)
        (tmp_path / pid / "stat").write_text(f"{pid} (terminal 64.exe) S " + " ".join(["0"] * 18) + f" {started * ticks} 0 0\n")
    found = windows_processes(tmp_path)
    assert [(p.pid, p.args) for p in found] == [(11, ("/portable",)), (12, ("/update",))]
    assert [p.pid for p in terminals(found)] == [11] and [p.pid for p in updaters(found)] == [12]
    assert found[1].age == pytest.approx(10.0)


# --- fault 9: the image's terminal build (label, report, MT5_IMAGE_BUILD) ----------------------
def windows_program(version: tuple[int, int, int, int] | None = (5, 0, 0, 5200)) -> bytes:
    """A minimal 64-bit PE file; with ``version``, a .rsrc section holding VS_VERSIONINFO."""
    import struct

    section_rva, section_raw = 0x1000, 0x200
    rsrc = b""
    if version is not None:
        directory = struct.pack("<IIHHHH", 0, 0, 0, 0, 0, 1)
        info_key = "VS_VERSION_INFO\0".encode("utf-16-le")
        major, minor, patch, build = version
        fixed = struct.pack(
            "<13I",
            0xFEEF04BD,
            0x10000,
            major << 16 | minor,
            patch << 16 | build,
            major << 16 | minor,
            patch << 16 | build,
            0x3F,
            0,
            4,
            1,
            0,
            0,
            0,
        )
        info_head = 6 + len(info_key)
        info = struct.pack("<HHH", info_head + 2 + len(fixed), len(fixed), 0) + info_key + b"\0\0" + fixed
        rsrc = (
            directory
            + struct.pack("<II", 16, 0x80000000 | 0x18)  # RT_VERSION
            + directory
            + struct.pack("<II", 1, 0x80000000 | 0x30)  # name 1
            + directory
            + struct.pack("<II", 1033, 0x48)  # language: the data entry
            + struct.pack("<IIII", section_rva + 0x58, len(info), 0, 0)
            + info
        )
    optional = bytearray(240)
    struct.pack_into("<H", optional, 0, 0x20B)
    struct.pack_into("<I", optional, 108, 16)
    if rsrc:
        struct.pack_into("<II", optional, 112 + 2 * 8, section_rva, len(rsrc))
    section = struct.pack("<8sIIIIIIHHI", b".rsrc", len(rsrc), section_rva, len(rsrc), section_raw, 0, 0, 0, 0, 0x40000040)
    dos = bytearray(64)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 64)
    headers = bytes(dos) + b"PE\0\0" + struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 240, 0x22) + bytes(optional) + section
    return headers.ljust(section_raw, b"\0") + rsrc


def test_the_terminal_build_is_read_from_terminal64_exes_version_resource(tmp_path):
    import io
    import tarfile

    from mt5farm.runtime.peversion import NoVersion, archive_terminal, file_version

    assert str(file_version(io.BytesIO(windows_program((5, 0, 0, 5200))))) == "5.0.0.5200"
    with pytest.raises(NoVersion, match="no resources"):
        file_version(io.BytesIO(windows_program(None)))
    with pytest.raises(NoVersion, match="not a Windows program"):
        file_version(io.BytesIO(b"#!/bin/sh\n"))
    # A captured terminal directory, read in place on the controller (the image's label).
    exe = tmp_path / "MetaTrader 5" / "terminal64.exe"
    exe.parent.mkdir()
    exe.write_bytes(windows_program((5, 0, 0, 5260)))
    with tarfile.open(tmp_path / "terminal.tar", "w") as archive:
        archive.add(exe.parent, arcname="MetaTrader 5")
    assert archive_terminal(str(tmp_path / "terminal.tar")).build == 5260


def test_the_image_records_its_terminal_build_and_the_entrypoint_passes_it_to_the_service(tmp_path):
    from mt5farm.runtime.build import terminal_build
    from mt5farm.runtime.entrypoint import image_build_env

    image = {"terminal": {"unix_dir": str(tmp_path / "MT5")}}
    (tmp_path / "MT5").mkdir()
    assert terminal_build(image)[0] == ""  # no terminal64.exe: unknown, and said why
    (tmp_path / "MT5" / "terminal64.exe").write_bytes(windows_program((5, 0, 0, 5200)))
    build, line = terminal_build(image)
    assert (build, line) == ("5200", "terminal build: 5200 (terminal64.exe file version 5.0.0.5200)")
    report = tmp_path / "report"
    report.mkdir()
    (report / "terminal-build").write_text("5200\n")
    assert image_build_env({}, report) == {"MT5_IMAGE_BUILD": "5200"}
    assert image_build_env({"MT5_IMAGE_BUILD": "5100"}, report) == {}  # the container's own wins
    (report / "terminal-build").write_text("")
    assert image_build_env({}, report) == {}  # unknown: the service exports 0
