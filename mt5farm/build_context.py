"""Pack an image's build context into one tar on the controller (run by the mt5_image role).

    python -m mt5farm.build_context OUT.tar CTX_PATH=SOURCE ...

SOURCE is a file or a directory (added recursively, without __pycache__ and *.pyc); files
keep their mode (the runtime scripts their executable bit). Entries are sorted, owned by
root and dated 1980-01-01, so the same inputs give the same tar. One tar is one transfer
and one unpack on the build host, instead of a module run per file.
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

MTIME = 315532800


def entries(ctx_path: str, source: Path) -> list[tuple[str, Path]]:
    if source.is_dir():
        found = []
        for path in sorted(source.rglob("*")):
            if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
                continue
            found.append((f"{ctx_path}/{path.relative_to(source).as_posix()}", path))
        return found
    if not source.is_file():
        raise SystemExit(f"context: {source} is neither a file nor a directory")
    return [(ctx_path, source)]


def add(archive: tarfile.TarFile, name: str, source: Path, dirs: set[str]) -> None:
    parts = name.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        directory = "/".join(parts[:depth])
        if directory not in dirs:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            archive.addfile(info)
            dirs.add(directory)
    info = tarfile.TarInfo(name)
    info.size = source.stat().st_size
    info.mode = source.stat().st_mode & 0o777
    info.mtime = MTIME
    with source.open("rb") as handle:
        archive.addfile(info, handle)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    planned: list[tuple[str, Path]] = []
    for mapping in argv[1:]:
        ctx_path, sep, source_text = mapping.partition("=")
        if not sep or not ctx_path.strip("/"):
            raise SystemExit(f"context: {mapping!r} is not CTX_PATH=SOURCE")
        planned += entries(ctx_path.strip("/"), Path(source_text))
    names = [name for name, _ in planned]
    if len(names) != len(set(names)):
        raise SystemExit("context: two sources map to the same path in the context")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    dirs: set[str] = set()
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, source in sorted(planned):
            add(archive, name, source, dirs)
    partial.rename(out)
    print(f"{len(planned)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
