"""A real Docker engine behind mutual TLS, for the tests (not a mock).

``start(tmp_dir)`` makes the certificates with the mt5_windows_host role's own CA tasks
(roles/mt5_windows_host/tasks/pki.yml, through ansible-playbook), then runs ``dockerd
--tlsverify`` inside a throwaway container (the Molecule test host image plus Debian's
docker.io, built once and cached by its recipe), listening on 2376 and published on
127.0.0.1 only. The engine is the stand-in for a Windows host's engine: the same API, the
same TLS mode (daemon.json's "tlsverify" with ca/cert/key), reached the way the role
reaches Windows hosts. Nothing in it is Windows: Windows-only settings (isolation, C:\\
paths) cannot be run here and are checked at the API payload instead.

One engine per test process, removed (with its volume) at exit.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "ansible-playbook")
TESTHOST = "mt5farm/testhost:debian12"
# Debian's docker.io on the test host image: dockerd, containerd, runc, iptables.
RECIPE = f"""FROM {TESTHOST}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io iptables >/dev/null \\
    && rm -rf /var/lib/apt/lists/*
"""
ENGINE_IMAGE = "mt5farm/testhost-dockerd:debian12-" + hashlib.sha256(RECIPE.encode()).hexdigest()[:12]
# What a nested dockerd needs on this machine (see molecule/fleet/molecule.yml).
CAPS = ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "MKNOD", "NET_RAW"]
BUSYBOX = Path("/bin/busybox")
STANDIN_ENTRY = """#!/bin/busybox sh
trap 'exit 0' TERM INT
/bin/busybox mkdir -p /www && echo ok > /www/health
/bin/busybox httpd -f -p 8000 -h /www &
wait $!
"""

PKI_PLAYBOOK = """---
- name: The mt5_windows_host role's CA tasks, for a test engine on 127.0.0.1
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Make the CA, the controller's client certificate and the engine's certificate
      ansible.builtin.include_role:
        name: mt5_windows_host
        tasks_from: pki
      vars:
        mt5_windows_host_tls_dir: "{tls_dir}"
        mt5_windows_host_docker_api_names: ["127.0.0.1", "localhost"]
"""


@dataclass
class Engine:
    """A running TLS engine: where it listens and the certificates that open it."""

    port: int
    tls_dir: Path
    container: str
    standin: str

    @property
    def docker_host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def tls(self) -> dict[str, str]:
        return {
            "ca_cert": str(self.tls_dir / "ca.pem"),
            "client_cert": str(self.tls_dir / "client.pem"),
            "client_key": str(self.tls_dir / "client-key.pem"),
        }

    def client(self) -> docker.APIClient:
        config = docker.tls.TLSConfig(
            client_cert=(self.tls["client_cert"], self.tls["client_key"]), ca_cert=self.tls["ca_cert"], verify=True
        )
        # trust_env off: requests would prefer REQUESTS_CA_BUNDLE from the environment over ca_cert.
        api = docker.APIClient(base_url=self.docker_host, tls=config, version="1.41", timeout=60)
        api.trust_env = False
        return api


_ENGINE: Engine | None = None


def run_pki(tls_dir: Path) -> subprocess.CompletedProcess:
    """Run the role's pki.yml for localhost (127.0.0.1) into tls_dir; returns the run."""
    playbook = tls_dir.parent / f"pki-{uuid.uuid4().hex[:6]}.yml"
    playbook.write_text(PKI_PLAYBOOK.format(tls_dir=tls_dir))
    inventory = tls_dir.parent / "pki-inventory.ini"
    inventory.write_text("[none]\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook)], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"pki.yml failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return done


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ensure_engine_image(api: docker.APIClient) -> None:
    if api.images(name=ENGINE_IMAGE):
        return
    if not api.images(name=TESTHOST):
        subprocess.run(["bash", str(REPO / "testbed" / "build-images.sh"), "bookworm"], check=True, cwd=REPO)
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        data = RECIPE.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    output = list(api.build(fileobj=context, custom_context=True, tag=ENGINE_IMAGE, rm=True, forcerm=True, decode=True, pull=False))
    errors = [line for line in output if "error" in line]
    if errors or not api.images(name=ENGINE_IMAGE):
        raise RuntimeError(f"building {ENGINE_IMAGE} failed: {errors or output[-5:]}")


def _standin_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "tmp", "data", "secrets"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        data = STANDIN_ENTRY.encode()
        info = tarfile.TarInfo("entry.sh")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def start(work_dir: Path) -> Engine:
    """The process's TLS engine, started on first use."""
    global _ENGINE
    if _ENGINE is not None:
        return _ENGINE
    local = docker.APIClient(version="auto", timeout=600)
    local.ping()
    _ensure_engine_image(local)
    tls_dir = work_dir / "tls"
    run_pki(tls_dir)
    host_certs = tls_dir / "hosts" / "localhost"
    port = _free_port()
    name = f"mt5farm-tls-engine-{uuid.uuid4().hex[:8]}"
    host_config = local.create_host_config(
        cap_add=CAPS,
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        cgroupns="host",
        tmpfs={"/run": "", "/run/lock": ""},
        binds={
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
            str(host_certs / "server-cert.pem"): {"bind": "/certs/server-cert.pem", "mode": "ro"},
            str(host_certs / "server-key.pem"): {"bind": "/certs/server-key.pem", "mode": "ro"},
            str(tls_dir / "ca.pem"): {"bind": "/certs/ca.pem", "mode": "ro"},
        },
        port_bindings={2376: ("127.0.0.1", port)},
    )
    container = local.create_container(
        ENGINE_IMAGE,
        name=name,
        command=[
            "dockerd",
            "--host",
            "tcp://0.0.0.0:2376",
            "--tlsverify",
            "--tlscacert",
            "/certs/ca.pem",
            "--tlscert",
            "/certs/server-cert.pem",
            "--tlskey",
            "/certs/server-key.pem",
            "--storage-driver",
            "overlay2",
            "--log-level",
            "warn",
        ],
        volumes=["/var/lib/docker"],
        ports=[2376],
        host_config=host_config,
        labels={"mt5farm.test": "tls-engine"},
    )
    local.start(container["Id"])

    def remove() -> None:
        try:
            local.remove_container(container["Id"], force=True, v=True)
        except docker.errors.APIError:
            pass

    atexit.register(remove)
    engine = Engine(port=port, tls_dir=tls_dir, container=name, standin="")
    deadline = time.monotonic() + 90
    while True:
        try:
            engine.client().ping()
            break
        except Exception as error:
            if time.monotonic() > deadline:
                logs = local.logs(container["Id"]).decode(errors="replace")[-3000:]
                remove()
                raise RuntimeError(f"the TLS engine did not answer in 90 s: {error}\n{logs}") from error
            time.sleep(0.5)
    client = engine.client()
    tag = f"mt5farm-test/standin:{uuid.uuid4().hex[:8]}"
    repository, _, version = tag.partition(":")
    client.import_image_from_data(_standin_tar(), repository=repository, tag=version, changes=['CMD ["/entry.sh"]'])
    engine.standin = tag
    _ENGINE = engine
    return engine


def available() -> str | None:
    """None when an engine can be started here, else why not."""
    if not BUSYBOX.exists():
        return "a static /bin/busybox is needed (apt-get install busybox-static)"
    if shutil.which("openssl") is None:
        pass  # community.crypto uses the cryptography library, not the openssl binary
    try:
        docker.APIClient(version="auto", timeout=10).ping()
    except Exception as error:  # noqa: BLE001 - any failure to reach the engine means "not available here"
        return f"no Docker engine answers here ({error}); run scripts/test-deps.sh"
    return None
