"""Fixtures for the mt5_containers module (library/, module_utils/mt5farm_containers/) against this machine's real Docker engine.

Every run makes its own tiny images (a static busybox and an entry script, imported from a
tarball: no registry), and every test gets its own scope and name prefix; whatever a test
created (containers, volumes, networks) is removed at its end, the images at the end of the
session, also when a test fails.
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
import socket
import tarfile
import uuid
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from farm_testing import unavailable
from mt5farm_containers.module import run_healthy_module
from mt5farm_containers.module import run_module as module_main

try:
    import docker
except ImportError:
    docker = None

BUSYBOX = Path("/bin/busybox")
RUN_ID = uuid.uuid4().hex[:8]
PREFIX = f"mt5ct{RUN_ID}"
_COUNTER = itertools.count(1)

# The entry script: healthy (touches /tmp/healthy) unless UNHEALTHY_FROM is set and the
# image's /version is at least that number; exits at once on SIGTERM (a shell as PID 1
# ignores it otherwise, and every stop would cost Docker's 10 s timeout).
ENTRY = """#!/bin/busybox sh
trap 'exit 0' TERM INT
version=$(/bin/busybox cat /version)
if [ -z "$UNHEALTHY_FROM" ] || [ "$version" -lt "$UNHEALTHY_FROM" ]; then
    /bin/busybox touch /tmp/healthy
fi
/bin/busybox sleep 2147483647 &
wait $!
"""
HEALTHCHECK = {"test": ["CMD", "/bin/busybox", "test", "-f", "/tmp/healthy"], "interval": 1, "timeout": 2, "retries": 1}


def _docker_or_skip():
    if docker is None:
        unavailable("the Docker SDK for Python is not installed: pip install -r requirements.txt")
    try:
        api = docker.APIClient(version="auto")
        api.ping()
        return api
    except Exception as error:  # noqa: BLE001 - any failure means no engine here
        unavailable(f"no Docker engine answers ({error}); run scripts/test-deps.sh")


def _image_tar(version: int) -> bytes:
    if not BUSYBOX.exists() or "static" not in _file_kind(BUSYBOX):
        unavailable("a static /bin/busybox is needed for the test image: apt-get install busybox-static")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("tmp", 0o1777), ("data", 0o755)):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for name, text, mode in (("entry.sh", ENTRY, 0o755), ("version", f"{version}\n", 0o644)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _file_kind(path: Path) -> str:
    # ELF static executables have no PT_INTERP program header; `file` may be absent.
    if shutil.which("file"):
        import subprocess

        return subprocess.run(["file", "-L", str(path)], capture_output=True, text=True, check=False).stdout
    data = path.read_bytes()
    return "dynamic" if b"/lib64/ld-linux" in data[:8192] else "static"


@pytest.fixture(scope="session")
def api():
    return _docker_or_skip()


@pytest.fixture(scope="session")
def images(api):
    """Two test images that differ only in /version: {1: (tag, id), 2: (tag, id)}."""
    made = {}
    try:
        for version in (1, 2):
            tag = f"{PREFIX}/img:v{version}"
            api.import_image_from_data(_image_tar(version), repository=f"{PREFIX}/img", tag=f"v{version}", changes=['CMD ["/entry.sh"]'])
            made[version] = (tag, api.inspect_image(tag)["Id"])
        yield made
    finally:
        for tag, _ in made.values():
            try:
                api.remove_image(tag, force=True)
            except docker.errors.NotFound:
                pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Farm:
    """One test's scope, name prefix, spec builder and module runner."""

    def __init__(self, api, images, name: str) -> None:
        self.api = api
        self.images = images
        self.prefix = f"{PREFIX}-{name}"
        self.scope = self.prefix
        self.ports: dict[int, int] = {}

    def name(self, index: int) -> str:
        return f"{self.prefix}-{index}"

    def volume(self, index: int) -> str:
        return f"{self.prefix}-{index}-data"

    def spec(self, index: int, version: int = 1, **overrides) -> dict:
        spec = {
            "name": self.name(index),
            "image": self.images[version][0],
            "env": {"ACCOUNT": str(index)},
            "labels": {"mt5farm.login": str(index)},
            "mounts": [{"type": "volume", "source": self.volume(index), "target": "/data"}],
            "memory": 64 * 1024 * 1024,
            "healthcheck": dict(HEALTHCHECK),
            "stop_timeout": 5,
        }
        spec.update(overrides)
        return spec

    def with_port(self, spec: dict) -> dict:
        index = int(spec["name"].rsplit("-", 1)[1])
        port = self.ports.setdefault(index, free_port())
        spec["ports"] = [{"container_port": 8000, "host_port": port, "host_ip": "127.0.0.1"}]
        return spec

    def run(self, containers: list[dict], check: bool = False, diff: bool = False, **options) -> tuple[int, dict]:
        """Run the module's main() in-process, as AnsibleModule would be run by Ansible."""
        return run_module({"containers": containers, "scope": self.scope, **options}, check=check, diff=diff)

    def healthy(self, names: list[str], check: bool = False, **options) -> tuple[int, dict]:
        """Run mt5_containers_healthy's main() in-process on this test's scope."""
        return run_module({"names": names, "scope": self.scope, **options}, check=check, main=run_healthy_module)

    def containers(self) -> dict[str, dict]:
        """name -> inspect data, for every container whose name has this test's prefix."""
        found = {}
        for entry in self.api.containers(all=True, filters={"name": self.prefix}):
            data = self.api.inspect_container(entry["Id"])
            found[data["Name"].lstrip("/")] = data
        return found

    def volumes(self) -> set[str]:
        return {v["Name"] for v in (self.api.volumes(filters={"name": self.prefix}) or {}).get("Volumes") or []}

    def cleanup(self) -> None:
        for entry in self.api.containers(all=True, filters={"name": self.prefix}):
            try:
                self.api.remove_container(entry["Id"], force=True, v=True)
            except docker.errors.NotFound:
                pass
        for volume in self.volumes():
            try:
                self.api.remove_volume(volume, force=True)
            except docker.errors.NotFound:
                pass
        for network in self.api.networks(names=[self.prefix]):
            if network["Name"].startswith(self.prefix):
                self.api.remove_network(network["Id"])


def run_module(args: dict, check: bool = False, diff: bool = False, main=module_main) -> tuple[int, dict]:
    from ansible.module_utils.common import warnings
    from ansible.module_utils.testing import patch_module_args

    # A real module run is a fresh process: start each in-process run with no warnings
    # or deprecations left over from earlier runs (they are process-global).
    warnings._global_warnings.clear()
    warnings._global_deprecations.clear()
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    output = io.StringIO()
    with patch_module_args(args), redirect_stdout(output):
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code or 0
        else:
            code = 0
    return code, json.loads(output.getvalue())


@pytest.fixture
def farm(api, images, request):
    farm = Farm(api, images, f"t{next(_COUNTER):02d}")
    farm.cleanup()
    try:
        yield farm
    finally:
        farm.cleanup()
