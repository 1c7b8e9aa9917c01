"""Build a wheelhouse on the controller for an image's Python (run by the mt5_image role).

No pip over HTTPS runs inside the image builds (a container has no CA bundle), so every
wheel an image installs is fetched here, pinned, and copied into the build context:

    python -m mt5farm.wheelhouse --dest DIR --python-version 3.13 --platform manylinux_2_28_x86_64 ... \
        [--project ./account_service --extras mt5linux] [--constraint FILE] [REQUIREMENT ...]

- ``--project``: the local project is built into a wheel (pure Python) with
  ``SOURCE_DATE_EPOCH`` fixed, from a clean copy of its tracked sources (nothing is written
  into the project), so the same sources give the same wheel bytes;
- its dependencies and the REQUIREMENTs are downloaded as binary wheels for the target
  (``pip download --only-binary=:all: --python-version --platform --implementation --abi``),
  pinned by ``--constraint``;
- the result goes to ``DIR/<key>/`` with a ``manifest.json`` ({file: sha256}); ``key`` is a
  hash of every input (sources, constraints, arguments), so an unchanged input is a cache hit
  and nothing is downloaded.

Prints one JSON object: {"changed", "key", "path", "files": {name: sha256}}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RECIPE = "mt5farm-wheelhouse-1"
SKIP_DIRS = {"__pycache__", "build", "dist", ".pytest_cache", ".hypothesis", ".git", ".venv", "tests"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")
# 1980-01-01: the earliest time a zip entry can hold.
SOURCE_DATE_EPOCH = "315532800"
KEEP = 3


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def project_files(project: Path) -> list[Path]:
    """The project's source files, relative, sorted (no caches, build output or tests)."""
    found = []
    for root, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(SKIP_SUFFIXES))
        for name in files:
            if not name.endswith(SKIP_SUFFIXES):
                found.append((Path(root) / name).relative_to(project))
    return sorted(found)


def input_key(args: argparse.Namespace) -> str:
    digest = hashlib.sha256(RECIPE.encode())
    fields = {
        "python_version": args.python_version,
        "abi": args.abi,
        "implementation": args.implementation,
        "platforms": args.platform,
        "extras": args.extras,
        "requirements": args.requirements,
        "index_url": args.index_url or "",
        "no_deps": args.no_deps,
    }
    digest.update(json.dumps(fields, sort_keys=True).encode())
    for constraint in args.constraint:
        digest.update(b"constraint\0" + Path(constraint).read_bytes())
    if args.project:
        project = Path(args.project)
        for rel in project_files(project):
            digest.update(b"file\0" + str(rel).encode() + b"\0" + bytes.fromhex(sha256_file(project / rel)))
    return digest.hexdigest()[:16]


def pip(args: argparse.Namespace, *pip_args: str, env: dict[str, str] | None = None) -> None:
    command = [args.python, "-m", "pip", "--disable-pip-version-check", "--no-input", *pip_args]
    if args.index_url:
        command += ["--index-url", args.index_url]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"wheelhouse: {' '.join(command[:6])} ... failed (exit {done.returncode})")


def build(args: argparse.Namespace, out: Path) -> None:
    requirements = list(args.requirements)
    with tempfile.TemporaryDirectory(prefix="mt5farm-wheelhouse-") as tmp:
        if args.project:
            source = Path(tmp) / "source"
            for rel in project_files(Path(args.project)):
                (source / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(args.project) / rel, source / rel)
            env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH)
            pip(args, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source), env=env)
            wheels = sorted(out.glob("*.whl"))
            if len(wheels) != 1:
                raise SystemExit(f"wheelhouse: building {args.project} gave {len(wheels)} wheels")
            extras = f"[{args.extras}]" if args.extras else ""
            requirements.insert(0, f"{wheels[0]}{extras}")
        if requirements:
            target = [
                "--only-binary=:all:",
                "--python-version",
                args.python_version,
                "--implementation",
                args.implementation,
                "--abi",
                args.abi,
            ]
            for platform in args.platform:
                target += ["--platform", platform]
            for constraint in args.constraint:
                target += ["--constraint", constraint]
            if args.no_deps:
                target.append("--no-deps")
            pip(args, "download", "--quiet", "--dest", str(out), *target, *requirements)
    non_wheels = [p.name for p in out.iterdir() if p.suffix != ".whl"]
    if non_wheels:
        raise SystemExit(f"wheelhouse: not wheels: {non_wheels}")


def prune(dest: Path, keep: str) -> None:
    """Keep the newest KEEP wheelhouses (and always ``keep``)."""
    houses = sorted(
        (p for p in dest.iterdir() if (p / "manifest.json").is_file() and p.name != keep),
        key=lambda p: (p / "manifest.json").stat().st_mtime,
        reverse=True,
    )
    for old in houses[KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", required=True, help="cache directory; the wheelhouse goes to DEST/<key>")
    parser.add_argument("--python", default=sys.executable, help="interpreter whose pip is used")
    parser.add_argument("--python-version", required=True)
    parser.add_argument("--abi", default=None)
    parser.add_argument("--implementation", default="cp")
    parser.add_argument("--platform", action="append", required=True)
    parser.add_argument("--project", default=None)
    parser.add_argument("--extras", default="")
    parser.add_argument("--constraint", action="append", default=[])
    parser.add_argument("--index-url", default="")
    parser.add_argument(
        "--no-deps",
        action="store_true",
        help="download exactly the REQUIREMENTs (for Windows targets: pip evaluates "
        "environment markers such as sys_platform on this machine, not the target)",
    )
    parser.add_argument("requirements", nargs="*")
    args = parser.parse_args(argv)
    args.abi = args.abi or "cp" + args.python_version.replace(".", "")

    dest = Path(args.dest).expanduser()
    key = input_key(args)
    house = dest / key
    changed = False
    if not (house / "manifest.json").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=dest))
        try:
            build(args, staging)
            files = {p.name: sha256_file(p) for p in sorted(staging.glob("*.whl"))}
            (staging / "manifest.json").write_text(json.dumps(files, indent=2, sort_keys=True) + "\n")
            if house.exists():
                shutil.rmtree(house)
            staging.rename(house)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        changed = True
        prune(dest, key)
    files = json.loads((house / "manifest.json").read_text())
    print(json.dumps({"changed": changed, "key": key, "path": str(house), "files": files}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
