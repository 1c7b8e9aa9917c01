"""The terminal's start ini: MT5's encoding, the account's values, the password kept private."""

import os
import stat
from pathlib import Path

import pytest

from mt5farm.runtime.ini import BOM, IniError, mount_type, read_secret, start_ini, write_private


def decode(data: bytes) -> str:
    assert data.startswith(BOM), "MT5 tells UTF-16 from its byte-order mark"
    return data[len(BOM) :].decode("utf-16-le")


def test_ini_is_utf16le_with_bom_and_crlf_line_ends():
    data = start_ini(12345678, "pw", "Broker-Live", True)
    assert data[:2] == b"\xff\xfe"
    text = decode(data)
    assert "\r\n" in text
    assert "\n" not in text.replace("\r\n", "")
    # UTF-16LE: every ASCII character is followed by a zero byte.
    assert data[2:4] == b"[\x00"


def test_ini_has_the_common_and_experts_sections_in_order():
    text = decode(start_ini(12345678, "pw", "Broker-Live", True))
    assert text.split("\r\n") == [
        "[Common]",
        "Login=12345678",
        "Password=pw",
        "Server=Broker-Live",
        "",
        "[Experts]",
        "AllowLiveTrading=1",
        "Enabled=1",
        "",
    ]


def test_experts_disabled_turns_off_both_switches():
    text = decode(start_ini(1, "pw", "S", False))
    assert "AllowLiveTrading=0\r\n" in text and "Enabled=0\r\n" in text


def test_non_ascii_password_and_server_survive_the_encoding():
    text = decode(start_ini(7, "pässwörd€;=", "Брокер-Demo", True))
    assert "Password=pässwörd€;=\r\n" in text
    assert "Server=Брокер-Demo\r\n" in text


@pytest.mark.parametrize(
    "login, password, server, fragment",
    [
        (0, "pw", "S", "positive whole number"),
        (-5, "pw", "S", "positive whole number"),
        (True, "pw", "S", "positive whole number"),
        (1, "", "S", "password is empty"),
        (1, "pw\nLogin=2", "S", "line break"),
        (1, "pw\r", "S", "line break"),
        (1, "pw", "", "server name"),
        (1, "pw", "A\nB", "server name"),
    ],
)
def test_values_that_cannot_go_into_an_ini_line_are_refused(login, password, server, fragment):
    with pytest.raises(IniError, match=fragment):
        start_ini(login, password, server, True)


def test_refusal_messages_never_contain_the_password():
    secret = "hunter2\nLogin=1"
    with pytest.raises(IniError) as caught:
        start_ini(1, secret, "S", True)
    assert "hunter2" not in str(caught.value)


def test_secret_is_read_from_its_file_without_surrounding_whitespace(tmp_path):
    (tmp_path / "password").write_text("  s3cret \n")
    assert read_secret(tmp_path, "password") == "s3cret"
    assert read_secret(tmp_path, "missing") is None
    (tmp_path / "blank").write_text("\n")
    assert read_secret(tmp_path, "blank") is None


def test_private_file_is_0600_in_a_0700_directory_and_replaced_atomically(tmp_path):
    target = tmp_path / "shm" / "mt5farm" / "terminal.ini"
    write_private(target, b"first", require_tmpfs=False)
    write_private(target, b"second", require_tmpfs=False)
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["terminal.ini"], "no temporary file left behind"


def test_private_file_is_refused_outside_a_tmpfs(tmp_path, monkeypatch):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n")
    import mt5farm.runtime.ini as ini

    monkeypatch.setattr(ini, "mount_type", lambda path: mount_type(path, str(mounts)))
    with pytest.raises(IniError, match="not on a tmpfs"):
        write_private(tmp_path / "dir" / "terminal.ini", b"x")
    assert not (tmp_path / "dir" / "terminal.ini").exists()


def test_mount_type_takes_the_longest_matching_mount_point(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("overlay / overlay rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\ntmpfs /dev tmpfs rw 0 0\n/dev/vda /data ext4 rw 0 0\n")
    assert mount_type(Path("/dev/shm/mt5farm"), str(mounts)) == "tmpfs"
    assert mount_type(Path("/data/service"), str(mounts)) == "ext4"
    assert mount_type(Path("/datax"), str(mounts)) == "overlay"
    assert mount_type(Path("/"), str(mounts)) == "overlay"


@pytest.mark.skipif(
    not os.path.isdir("/dev/shm") or mount_type(Path("/dev/shm")) != "tmpfs", reason="this machine's /dev/shm is not a tmpfs"
)
def test_private_file_on_this_machines_dev_shm(tmp_path):
    target = Path("/dev/shm") / f"mt5farm-test-{os.getpid()}" / "terminal.ini"
    try:
        write_private(target, start_ini(1, "pw", "S", True))
        assert decode(target.read_bytes()).startswith("[Common]\r\n")
    finally:
        target.unlink(missing_ok=True)
        target.parent.rmdir()
