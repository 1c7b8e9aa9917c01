"""The entrypoint's checks and the preparation of a new, empty account volume."""

import os

import pytest

from mt5farm.runtime.common import clear_x_locks, windows_exe_pids, x_lock_paths
from mt5farm.runtime.entrypoint import EntrypointError, check_environment, prepare_data, write_programs

WINE = {"variant": "wine", "uid": os.getuid(), "terminal": {"included": True}, "terminal_data_dirs": ["config", "logs", "MQL5/Files"]}


@pytest.fixture
def secrets(tmp_path):
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "api_key").write_text("k" * 32)
    return directory


def test_missing_login_is_refused(secrets):
    with pytest.raises(EntrypointError, match="MT5_LOGIN"):
        check_environment({"variant": "simulator"}, {"MT5_SECRETS_DIR": str(secrets)})


def test_missing_secrets_directory_is_refused(tmp_path):
    with pytest.raises(EntrypointError, match="secrets directory"):
        check_environment({"variant": "simulator"}, {"MT5_LOGIN": "1", "MT5_SECRETS_DIR": str(tmp_path / "nope")})


def test_missing_api_key_is_refused(tmp_path):
    with pytest.raises(EntrypointError, match="api_key"):
        check_environment({"variant": "simulator", "uid": 10001}, {"MT5_LOGIN": "1", "MT5_SECRETS_DIR": str(tmp_path)})


def test_wine_mt5linux_needs_password_and_server(secrets):
    env = {"MT5_LOGIN": "1", "MT5_SECRETS_DIR": str(secrets), "MT5_BACKEND": "mt5linux"}
    with pytest.raises(EntrypointError, match="password"):
        check_environment(WINE, env)
    (secrets / "password").write_text("pw")
    with pytest.raises(EntrypointError, match="MT5_SERVER"):
        check_environment(WINE, env)
    check_environment(WINE, {**env, "MT5_SERVER": "Broker-Live"})


def test_an_empty_volume_gets_its_directories_and_the_terminal_seed(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    seed = tmp_path / "seed"
    (seed / "config").mkdir(parents=True)
    (seed / "config" / "common.ini").write_text("seeded")
    image = {**WINE, "seed_dir": str(seed)}
    created = prepare_data(image, {"STATE_DIR": str(data / "service")}, data)
    assert (data / "service").is_dir()
    assert (data / "terminal" / "config" / "common.ini").read_text() == "seeded"
    assert (data / "terminal" / "logs").is_dir() and (data / "terminal" / "MQL5" / "Files").is_dir()
    assert len(created) == 4
    # A second start keeps what the account wrote.
    (data / "terminal" / "config" / "common.ini").write_text("the account's own")
    assert prepare_data(image, {"STATE_DIR": str(data / "service")}, data) == []
    assert (data / "terminal" / "config" / "common.ini").read_text() == "the account's own"


def test_a_volume_the_user_cannot_write_is_refused_with_advice(tmp_path):
    with pytest.raises(EntrypointError, match="mount the account's volume"):
        prepare_data(WINE, {}, tmp_path / "absent")


def test_programs_are_written_afresh(tmp_path):
    directory = tmp_path / "programs"
    write_programs([("a", "[program:a]\n"), ("b", "[program:b]\n")], directory)
    write_programs([("b", "[program:b]\n")], directory)
    assert sorted(p.name for p in directory.iterdir()) == ["b.conf"]


def test_stale_x_locks_are_cleared(tmp_path):
    lock, socket_path = x_lock_paths(":99", tmp_path)
    socket_path.parent.mkdir()
    lock.write_text("  4242\n")
    socket_path.write_text("")
    assert clear_x_locks(":99", tmp_path) == [lock, socket_path]
    assert not lock.exists() and not socket_path.exists()
    assert clear_x_locks(":99", tmp_path) == []


def test_windows_programs_are_found_by_their_argv0(tmp_path):
    for pid, argv in {
        "11": b"C:\\MT5\\terminal64.exe\0/portable\0",
        "12": b"C:\\windows\\system32\\explorer.exe\0/desktop=MT5\0C:\\MT5\\terminal64.exe\0",
        "13": b"/usr/bin/python3\0",
    }.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(argv)
    (tmp_path / "self").mkdir()
    assert windows_exe_pids("terminal64.exe", tmp_path) == [11]
