"""``mt5-entrypoint``: prepare the account's container, then run supervisord in the foreground.

1. check the environment and the secret files (names only; no secret is ever printed);
2. prepare ``/data`` (the account's volume, possibly new and empty): the service's state
   directory and, in the Wine image, the terminal's per-account data directories (seeded
   from the image on first use; the terminal directory in the image links to them), and
   the broker lists (``config/servers.dat``) refreshed from the image when it brings a new
   one (:func:`refresh_broker_lists`);
3. clear stale X locks (Wine image), write the supervisord programs for this account;
4. exec supervisord, with ``MT5_IMAGE_BUILD`` (the terminal build the image was built with,
   from its build report) in the environment its programs inherit, unless already set.

With arguments (``docker run IMAGE wine cmd /c ver``) it runs them instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import PROGRAMS_DIR, REPORT_DIR, RUNTIME_DIR, SUPERVISOR_CONF
from .common import clear_x_locks, exec_command, load_image, log
from .programs import ConfigurationError, plan, secrets_dir

PROG = "mt5-entrypoint"
#: The terminal's broker lists in its data directory, when image.json names none: the list of
#: trade servers (and their access points) the ini's ``Server=`` is looked up in.
BROKER_LISTS = ("config/servers.dat",)
#: On the volume, beside the terminal's directories: the sha256 of each broker list as the
#: image last delivered it.
BROKER_STAMP = ".mt5farm-broker-lists.json"


class EntrypointError(RuntimeError):
    """The container cannot start as configured; the message says what to change."""


def check_environment(image: Mapping, env: Mapping[str, str]) -> None:
    raw = (env.get("MT5_LOGIN") or "").strip()
    if not raw.isdigit() or int(raw) <= 0:
        raise EntrypointError(f"MT5_LOGIN={raw!r}: set it to the account number (a positive whole number)")
    secrets = Path(secrets_dir(env))
    if not secrets.is_dir():
        raise EntrypointError(f"the secrets directory {secrets} is missing: mount the account's secret files there")
    api_key = secrets / "api_key"
    if not os.access(api_key, os.R_OK):
        raise EntrypointError(f"{api_key} is missing or not readable by uid {os.getuid()} (owner {image.get('uid')}, mode 0400)")
    backend = (env.get("MT5_BACKEND") or "").strip()
    if backend in ("mt5linux", "mt5") and image["variant"] == "wine":
        if not os.access(secrets / "password", os.R_OK):
            raise EntrypointError(f"MT5_BACKEND={backend} needs the broker password in {secrets / 'password'}")
        if not (env.get("MT5_SERVER") or "").strip():
            raise EntrypointError(f"MT5_BACKEND={backend} needs MT5_SERVER (the broker's trade server)")


def prepare_data(image: Mapping, env: Mapping[str, str], data_root: Path = Path("/data")) -> list[str]:
    """Create the account's data directories on a possibly new volume, refresh the broker
    lists from the image (:func:`refresh_broker_lists`); returns what it created or replaced."""
    created: list[str] = []
    state = Path(env.get("STATE_DIR") or str(data_root / "service"))
    if not data_root.is_dir() or not os.access(data_root, os.W_OK):
        raise EntrypointError(
            f"{data_root} is missing or not writable by uid {os.getuid()}: mount the account's volume there "
            f"(a new named volume takes its owner {image.get('uid')} from the image)"
        )
    for directory in [state]:
        if not directory.is_dir():
            directory.mkdir(mode=0o750, parents=True)
            created.append(str(directory))
    if image["variant"] == "wine" and image.get("terminal", {}).get("included"):
        terminal_root = data_root / "terminal"
        seed = Path(image["seed_dir"])
        for sub in image.get("terminal_data_dirs", []):
            target = terminal_root / sub
            if target.is_dir():
                continue
            if (seed / sub).is_dir():
                target.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
                shutil.copytree(seed / sub, target, symlinks=True)
            else:
                target.mkdir(mode=0o750, parents=True)
            created.append(str(target))
        created += refresh_broker_lists(image, terminal_root)
    return created


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy_atomically(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source`` in one rename: a reader (or a crash) sees the
    old file or the new one, never half of it."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle, source.open("rb") as data:
            shutil.copyfileobj(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refresh_broker_lists(image: Mapping, terminal_root: Path) -> list[str]:
    """Bring the image's broker lists (``servers.dat``) to the account's volume; returns what changed.

    ``prepare_data`` seeds ``config/`` only on a volume's first use, so a rebuilt image with
    a newer ``servers.dat`` (a broker's new trade server) never reached an existing account,
    whose ``Server=`` then stayed unknown to its terminal. Now, on every start, each broker
    list the image holds (image.json ``terminal_broker_lists``, default ``config/servers.dat``)
    is compared with what the image delivered last time (its sha256 in ``BROKER_STAMP`` on
    the volume): a list the image changed replaces the volume's, atomically, the replaced
    one kept as ``<name>.mt5farm-previous``; a list the image did not change is left as the
    terminal keeps it (the terminal adds the access points its broker sends it). Nothing
    else of ``config/`` is touched: ``accounts.dat``, ``common.ini``, ``terminal.ini`` and
    the certificates are the account's own.
    """
    seed = Path(image["seed_dir"])
    stamp_path = terminal_root / BROKER_STAMP
    try:
        delivered: dict[str, str] = json.loads(stamp_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        delivered = {}
    changed: list[str] = []
    stamp: dict[str, str] = {}
    for name in image.get("terminal_broker_lists", BROKER_LISTS):
        source, target = seed / name, terminal_root / name
        if not source.is_file():
            continue
        digest = _sha256(source)
        stamp[name] = digest
        if delivered.get(name) == digest and target.is_file():
            continue  # the image brings nothing new: the terminal's copy stays
        if target.is_file() and _sha256(target) == digest:
            continue
        target.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        if target.is_file():
            _copy_atomically(target, target.with_name(target.name + ".mt5farm-previous"))
        _copy_atomically(source, target)
        changed.append(str(target))
    if stamp != delivered:
        fd, tmp = tempfile.mkstemp(dir=terminal_root, prefix=f"{BROKER_STAMP}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(stamp, handle, indent=1, sort_keys=True)
        os.replace(tmp, stamp_path)
    return changed


def image_build_env(env: Mapping[str, str], report_dir: Path = Path(REPORT_DIR)) -> dict[str, str]:
    """``{"MT5_IMAGE_BUILD": "5200"}`` from the image's ``terminal-build`` (written by the build
    from terminal64.exe's file version); nothing when the build is unknown or the container
    sets MT5_IMAGE_BUILD itself. The service exports it as mt5_image_terminal_build, beside
    the running terminal's mt5_terminal_build (issue 12, fault 9)."""
    if (env.get("MT5_IMAGE_BUILD") or "").strip():
        return {}
    try:
        build = (report_dir / "terminal-build").read_text(encoding="utf-8").strip()
    except OSError:
        return {}
    return {"MT5_IMAGE_BUILD": build} if build.isdigit() else {}


def write_programs(rendered: Sequence[tuple[str, str]], directory: Path = Path(PROGRAMS_DIR)) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700, parents=True)
    for name, text in rendered:
        (directory / f"{name}.conf").write_text(text, encoding="utf-8")


def runtime_dirs() -> None:
    """/tmp/mt5farm (supervisord's socket and programs) and the XDG runtime dir Wine wants."""
    for directory in (Path(RUNTIME_DIR), Path(os.environ.get("XDG_RUNTIME_DIR") or RUNTIME_DIR + "/xdg")):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        runtime_dirs()
        exec_command(args)
    env = os.environ
    try:
        image = load_image()
        if os.getuid() != image["uid"]:
            raise EntrypointError(
                f"running as uid {os.getuid()}, but this image runs as {image['uid']} (its Wine prefix and data "
                "belong to that user): do not override the container's user"
            )
        check_environment(image, env)
        vnc_password = os.access(Path(secrets_dir(env)) / "vnc_password", os.R_OK)
        decided = plan(image, env, vnc_password)
        created = prepare_data(image, env)
    except (EntrypointError, ConfigurationError) as exc:
        log(PROG, f"cannot start: {exc}")
        return 2
    runtime_dirs()
    runtime = Path(RUNTIME_DIR)
    for stale in ("supervisor.sock", "supervisord.pid"):
        (runtime / stale).unlink(missing_ok=True)
    if image["variant"] == "wine":
        for path in clear_x_locks(image.get("display", ":99")):
            log(PROG, f"removed stale X lock {path}")
    write_programs([(p.name, p.render()) for p in decided.programs])
    for made in created:
        log(PROG, f"{'refreshed from the image' if Path(made).is_file() else 'created'} {made}")
    for note in decided.notes:
        log(PROG, note)
    log(
        PROG,
        f"{image['variant']} image, backend {decided.backend}, login {env.get('MT5_LOGIN')}: "
        f"programs {', '.join(p.name for p in decided.programs)}",
    )
    os.environ.update(image_build_env(env))
    exec_command(["supervisord", "--nodaemon", "--configuration", SUPERVISOR_CONF])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
