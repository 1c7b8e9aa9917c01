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
