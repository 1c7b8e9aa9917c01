"""The image tag: a hash of every build input, stable for the same inputs, changed by any change."""

import argparse
import copy
import hashlib
import tarfile

import pytest

from mt5farm import build_context as context
from mt5farm import wheelhouse
from mt5farm.errors import FarmError
from mt5farm.image_hash import mt5_image_input_hash, mt5_image_sha256

BASE = {
    "variant": "simulator",
    "base_image_id": "sha256:" + "a" * 64,
    "files": {
        "Dockerfile": hashlib.sha256(b"FROM x").hexdigest(),
        "image.json": hashlib.sha256(b"{}").hexdigest(),
        "rootfs/usr/local/bin/mt5-entrypoint": "1" * 64,
        "wheels/linux/fastapi-0.165.0-py3-none-any.whl": "2" * 64,
        "inputs/terminal.tar": "3" * 64,
    },
    "modes": {"rootfs/usr/local/bin/mt5-entrypoint": "0755"},
}


def test_the_tag_is_16_hex_digits_and_stable():
    tag = mt5_image_input_hash(BASE)
    assert len(tag) == 16 and int(tag, 16) >= 0
    assert mt5_image_input_hash(copy.deepcopy(BASE)) == tag


def test_the_order_inputs_were_gathered_in_does_not_matter():
    shuffled = {
        "modes": BASE["modes"],
        "files": dict(reversed(list(BASE["files"].items()))),
        "base_image_id": BASE["base_image_id"],
        "variant": "simulator",
    }
    assert mt5_image_input_hash(shuffled) == mt5_image_input_hash(BASE)


def _changed(path, value):
    inputs = copy.deepcopy(BASE)
    target = inputs
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return inputs


@pytest.mark.parametrize(
    "path, value",
    [
        (("variant",), "wine"),
        (("base_image_id",), "sha256:" + "b" * 64),
        (("files", "Dockerfile"), hashlib.sha256(b"FROM y").hexdigest()),
        (("files", "image.json"), "4" * 64),
        (("files", "rootfs/usr/local/bin/mt5-entrypoint"), "5" * 64),
        (("files", "wheels/linux/fastapi-0.165.0-py3-none-any.whl"), "6" * 64),
        (("files", "inputs/terminal.tar"), "7" * 64),
        (("files", "inputs/mql5/Experts/new.ex5"), "8" * 64),
        (("modes", "rootfs/usr/local/bin/mt5-entrypoint"), "0644"),
    ],
)
def test_any_changed_input_changes_the_tag(path, value):
    assert mt5_image_input_hash(_changed(path, value)) != mt5_image_input_hash(BASE)


def test_a_removed_input_changes_the_tag():
    inputs = copy.deepcopy(BASE)
    del inputs["files"]["inputs/terminal.tar"]
    assert mt5_image_input_hash(inputs) != mt5_image_input_hash(BASE)


def test_a_file_moved_in_the_context_changes_the_tag():
    inputs = copy.deepcopy(BASE)
    inputs["files"]["inputs/mt5setup.exe"] = inputs["files"].pop("inputs/terminal.tar")
    assert mt5_image_input_hash(inputs) != mt5_image_input_hash(BASE)


@pytest.mark.parametrize(
    "inputs, fragment",
    [
        ("nope", "expected a mapping"),
        ({"variant": "x", "files": {"a": "1" * 64}}, "base_image_id"),
        ({**BASE, "files": {}}, "non-empty"),
        ({**BASE, "files": {"Dockerfile": "not-a-digest"}}, "Dockerfile"),
        ({**BASE, "files": {"Dockerfile": "A" * 64}}, "lowercase"),
        ({**BASE, "base_image_id": "mt5farm/base:debian13"}, "image id"),
    ],
)
def test_bad_inputs_are_refused_with_the_filter_name(inputs, fragment):
    with pytest.raises(FarmError, match="mt5_image_input_hash") as caught:
        mt5_image_input_hash(inputs)
    assert fragment in str(caught.value)


def test_rendered_text_is_hashed_as_the_utf8_file_it_becomes():
    assert mt5_image_sha256("FROM x\n") == hashlib.sha256(b"FROM x\n").hexdigest()
    with pytest.raises(FarmError):
        mt5_image_sha256(b"bytes")


def _key_args(project, **overrides):
    values = dict(
        python_version="3.13",
        abi="cp313",
        implementation="cp",
        platform=["manylinux_2_28_x86_64"],
        extras="mt5linux",
        requirements=[],
        index_url="",
        no_deps=False,
        constraint=[],
        project=str(project),
    )
    values.update(overrides)
    return argparse.Namespace(**values)


def test_wheelhouse_key_follows_the_service_sources_and_ignores_caches(tmp_path):
    project = tmp_path / "svc"
    (project / "src" / "pkg" / "__pycache__").mkdir(parents=True)
    (project / "tests").mkdir()
    (project / "pyproject.toml").write_text("[project]\nname='x'\n")
    (project / "src" / "pkg" / "mod.py").write_text("A = 1\n")
    key = wheelhouse.input_key(_key_args(project))
    (project / "src" / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (project / "tests" / "test_x.py").write_text("def test(): pass\n")
    assert wheelhouse.input_key(_key_args(project)) == key, "caches and tests are not build inputs"
    (project / "src" / "pkg" / "mod.py").write_text("A = 2\n")
    assert wheelhouse.input_key(_key_args(project)) != key
    (project / "src" / "pkg" / "mod.py").write_text("A = 1\n")
    assert wheelhouse.input_key(_key_args(project)) == key
    assert wheelhouse.input_key(_key_args(project, python_version="3.12")) != key
    constraint = tmp_path / "c.txt"
    constraint.write_text("numpy==2.5.5\n")
    with_pins = wheelhouse.input_key(_key_args(project, constraint=[str(constraint)]))
    constraint.write_text("numpy==2.5.6\n")
    assert wheelhouse.input_key(_key_args(project, constraint=[str(constraint)])) != with_pins


def test_context_tar_is_the_same_for_the_same_inputs_and_skips_bytecode(tmp_path):
    rootfs = tmp_path / "rootfs" / "usr" / "local" / "bin"
    rootfs.mkdir(parents=True)
    (rootfs / "tool").write_text("#!/bin/sh\n")
    (rootfs / "tool").chmod(0o755)
    (rootfs / "__pycache__").mkdir()
    (rootfs / "__pycache__" / "x.pyc").write_bytes(b"\0")
    wheel = tmp_path / "a-1-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    args = [f"rootfs={tmp_path / 'rootfs'}", f"wheels/linux/{wheel.name}={wheel}"]
    assert context.main([str(tmp_path / "one.tar"), *args]) == 0
    assert context.main([str(tmp_path / "two.tar"), *args]) == 0
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    with tarfile.open(tmp_path / "one.tar") as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert "rootfs/usr/local/bin/tool" in members
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in members)
    assert members["rootfs/usr/local/bin/tool"].mode == 0o755, "executable bits survive"
    assert members["rootfs/usr"].mode == 0o755, "directories are world-readable: COPY rootfs/ / applies their modes"
    assert all(m.uid == 0 and m.mtime == context.MTIME for m in members.values())
