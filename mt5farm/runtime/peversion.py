"""The file version of a Windows program (its PE ``VS_VERSIONINFO`` resource), in pure Python.

The MT5 terminal's build is the last number of ``terminal64.exe``'s file version
(``5.0.0.5200`` is build 5200): what Help > About shows, and what
``terminal_info().build`` reports once it runs. The image build reads it without running the
terminal (a booted prefix cannot log in), the controller reads it from a captured terminal
directory before the build (the image's label ``farm.mt5.terminal-build``)::

    python3 -m mt5farm_runtime.peversion C:/path/terminal64.exe     # in the image
    python -m mt5farm.runtime.peversion --archive terminal.tar     # on the controller

Both print JSON: ``{"version": "5.0.0.5200", "build": 5200}``, or nulls and a ``reason`` when
the file has no version resource (then the build is unknown: the label says so, and the
service's ``mt5_image_terminal_build`` is 0, which the build-drift alert ignores).

Only the headers and the resource directory are read (seeks, not the whole file): a tar
member is read in place.
"""

from __future__ import annotations

import json
import struct
import sys
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

RT_VERSION = 16
FIXED_SIGNATURE = 0xFEEF04BD
VERSION_KEY = "VS_VERSION_INFO".encode("utf-16-le")
TERMINAL_EXE = "terminal64.exe"


class NoVersion(ValueError):
    """The file is not a PE program, or has no version resource; the message says which."""


@dataclass(frozen=True)
class FileVersion:
    major: int
    minor: int
    patch: int
    build: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}.{self.build}"


def _read(handle: IO[bytes], offset: int, size: int) -> bytes:
    handle.seek(offset)
    data = handle.read(size)
    if len(data) != size:
        raise NoVersion(f"truncated at offset {offset}")
    return data


def file_version(handle: IO[bytes]) -> FileVersion:
    """The fixed file version of the PE program open in ``handle`` (binary, seekable).

    Raises NoVersion when it is not a PE file or holds no ``VS_VERSIONINFO``.
    """
    if _read(handle, 0, 2) != b"MZ":
        raise NoVersion("not a Windows program (no MZ header)")
    (pe,) = struct.unpack("<I", _read(handle, 0x3C, 4))
    if _read(handle, pe, 4) != b"PE\0\0":
        raise NoVersion("not a PE program (no PE signature)")
    _, sections, _, _, _, optional_size, _ = struct.unpack("<HHIIIHH", _read(handle, pe + 4, 20))
    optional = pe + 24
    (magic,) = struct.unpack("<H", _read(handle, optional, 2))
    if magic not in (0x10B, 0x20B):
        raise NoVersion(f"unknown optional header magic {magic:#x}")
    directories = optional + (96 if magic == 0x10B else 112)
    (count,) = struct.unpack("<I", _read(handle, directories - 4, 4))
    if count <= 2:
        raise NoVersion("no resource directory")
    resource_rva, resource_size = struct.unpack("<II", _read(handle, directories + 2 * 8, 8))
    if not resource_rva or not resource_size:
        raise NoVersion("no resources")
    table = [struct.unpack("<8sIIII", _read(handle, optional + optional_size + 40 * i, 24)) for i in range(sections)]

    def offset_of(rva: int) -> int:
        for _, virtual_size, address, raw_size, raw in table:
            if address <= rva < address + max(virtual_size, raw_size):
                return rva - address + raw
        raise NoVersion(f"address {rva:#x} is in no section")

    root = offset_of(resource_rva)

    def entries(directory: int) -> list[tuple[int, int]]:
        named, ids = struct.unpack("<HH", _read(handle, root + directory + 12, 4))
        data = _read(handle, root + directory + 16, 8 * (named + ids))
        return [struct.unpack_from("<II", data, 8 * i) for i in range(named + ids)]

    def first_leaf(target: int) -> int:
        while target & 0x80000000:  # a subdirectory: take its first entry (name, then language)
            children = entries(target & 0x7FFFFFFF)
            if not children:
                raise NoVersion("an empty resource directory")
            target = children[0][1]
        return target

    versions = [target for name, target in entries(0) if name == RT_VERSION]
    if not versions:
        raise NoVersion("no version resource (RT_VERSION)")
    data_rva, data_size, _, _ = struct.unpack("<IIII", _read(handle, root + first_leaf(versions[0]), 16))
    info = _read(handle, offset_of(data_rva), min(data_size, 4096))
    key = info.find(VERSION_KEY)
    if key < 0:
        raise NoVersion("the version resource has no VS_VERSION_INFO")
    fixed = info.find(struct.pack("<I", FIXED_SIGNATURE), key)
    if fixed < 0 or fixed + 16 > len(info):
        raise NoVersion("VS_VERSION_INFO has no fixed file information")
    ms, ls = struct.unpack_from("<II", info, fixed + 8)
    return FileVersion(ms >> 16, ms & 0xFFFF, ls >> 16, ls & 0xFFFF)


def archive_terminal(path: str) -> FileVersion:
    """The version of the shallowest terminal64.exe in a tar (a captured terminal directory)."""
    with tarfile.open(path) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and PurePosixPath(m.name).name.lower() == TERMINAL_EXE]
        if not members:
            raise NoVersion(f"the archive has no {TERMINAL_EXE}")
        member = min(members, key=lambda m: len(PurePosixPath(m.name).parts))
        handle = archive.extractfile(member)
        if handle is None:
            raise NoVersion(f"{member.name} cannot be read from the archive")
        with handle:
            return file_version(handle)


def describe(read: Callable[[], FileVersion]) -> dict[str, object]:
    """JSON-ready: version and build, or nulls and the reason."""
    try:
        version = read()
    except (NoVersion, OSError, tarfile.TarError, struct.error) as exc:
        return {"version": None, "build": None, "reason": str(exc)}
    return {"version": str(version), "build": version.build}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--archive"] and len(args) == 2:
        result = describe(lambda: archive_terminal(args[1]))
    elif len(args) == 1:

        def read_file() -> FileVersion:
            with open(args[0], "rb") as handle:
                return file_version(handle)

        result = describe(read_file)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
