"""What the repository's test suites share (importable: pytest.ini puts tests/ on the path).

``run_ansible``: an Ansible program of this virtualenv, run from the repository root.

``unavailable``: the one rule for a suite whose real component (Docker engine, Nginx, root,
busybox) is missing on this machine — it skips with the fix, except under CI (``CI`` set),
where it fails: a CI run must never pass by skipping (the account service's own suites,
a separate project, do the same in account_service/tests/mt5svc_testlib.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """Skip the calling test (or module, at import) for ``message``; under CI fail it instead."""
    if os.environ.get("CI"):
        pytest.fail(f"under CI this cannot be skipped: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)


REPO = Path(__file__).resolve().parents[1]


def run_ansible(
    args: Sequence[str], *, program: str = "ansible-playbook", timeout: int = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run one of this virtualenv's Ansible programs from the repository root, as a user would.

    ``args``: its command line after the program name; ``env``: extra environment variables
    (e.g. ``ANSIBLE_STDOUT_CALLBACK="json"``) over the repository's ``ansible.cfg`` without
    colour. Never raises for a non-zero exit: the caller asserts on ``returncode`` and the output.
    """
    environment = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", **env)
    binary = Path(sys.executable).with_name(program)
    return subprocess.run([str(binary), *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout, check=False)


# --- tiny images and the engine, for the suites that run containers ---------------------------

BUSYBOX = Path("/bin/busybox")


def docker(*args: str, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; its output as text. Raises AssertionError with its stderr when ``check``."""
    done = subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=120, check=False)
    result = subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result


def engine_problem(root: bool = False) -> str | None:
    """Why a suite that runs busybox containers cannot run here (None when it can): root when
    ``root`` (it runs a playbook that becomes root), a Docker engine, a static busybox."""
    if root and os.geteuid() != 0:
        return "the playbook becomes root (run as root)"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "no Docker engine answers"
    if not BUSYBOX.exists() or b"/lib64/ld-linux" in BUSYBOX.read_bytes()[:8192]:
        return "a static /bin/busybox is needed (apt-get install busybox-static)"
    return None


def busybox_image(reference: str, *changes: str) -> None:
    """Import an image of a static busybox (``/bin/busybox``, ``/tmp``) as ``reference``, with
    ``docker import -c`` ``changes`` (e.g. ``'CMD ["/bin/busybox", "true"]'``)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
    docker("import", *[arg for change in changes for arg in ("-c", change)], "-", reference, stdin=buffer.getvalue())
