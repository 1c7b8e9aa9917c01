"""mt5_containers against a remote engine over mutual TLS (the mt5_windows role's path).

The engine is real: dockerd --tlsverify in a throwaway container on 127.0.0.1, with
certificates made by the mt5_windows role's own CA tasks (tests/windows/mtls_engine.py).
The module runs in-process, as AnsibleModule runs it, with the new docker_host and tls
options. What only a Windows engine accepts (isolation, C:\\ paths) is checked at the API
payload by a recording client -- a mock, named as one -- because a Linux engine refuses it.
"""

from __future__ import annotations

import io
import json
import ssl
import time
import uuid
from contextlib import redirect_stdout

import pytest
from farm_testing import unavailable
from mt5farm_containers.engine import Engine
from mt5farm_containers.module import run_module
from mt5farm_containers.spec import config_hash, normalize

try:
    import docker
    import mtls_engine  # tests/windows/ (pytest.ini: pythonpath)
except ModuleNotFoundError as error:
    # Without the Docker SDK: skip here, fail under CI (as account_service/tests/mt5svc_testlib.py).
    if error.name != "docker":
        raise
    unavailable(f"the Docker SDK for Python is not installed ({error}): pip install -r requirements.txt")


def run(args: dict, check: bool = False) -> tuple[int, dict]:
    from ansible.module_utils.testing import patch_module_args

    output = io.StringIO()
    with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=False)), redirect_stdout(output):
        try:
            run_module()
        except SystemExit as exit_:
            code = exit_.code or 0
        else:
            code = 0
    return code, json.loads(output.getvalue())


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    why = mtls_engine.available()
    if why:
        unavailable(why)
    return mtls_engine.start(tmp_path_factory.mktemp("tls-engine"))


def specs(engine, prefix: str, logins: list[int]) -> list[dict]:
    return [
        {
            "name": f"{prefix}-{login}",
            "image": engine.standin,
            "env": {"MT5_LOGIN": str(login)},
            "labels": {"mt5farm.login": str(login)},
            "ports": [{"container_port": 8000, "host_port": 21000 + index, "host_ip": "127.0.0.1"}],
            "mounts": [
                {"type": "bind", "source": "/etc", "target": "/secrets", "read_only": True},
                {"type": "volume", "source": f"{prefix}-{login}-data", "target": "/data"},
            ],
            "memory": 64 * 1024 * 1024,
            "nano_cpus": 500_000_000,
            "command": ["/entry.sh"],
            "healthcheck": {
                "test": ["CMD", "/bin/busybox", "wget", "-q", "-O-", "http://127.0.0.1:8000/health"],
                "interval": 1,
                "timeout": 2,
                "retries": 3,
            },
            "stop_timeout": 2,
        }
        for index, login in enumerate(logins)
    ]


def test_reconciles_a_remote_engine_over_mutual_tls(engine) -> None:
    prefix = f"mt5r{uuid.uuid4().hex[:6]}"
    base = {"scope": prefix, "docker_host": engine.docker_host, "tls": engine.tls}
    wanted = specs(engine, prefix, [1001, 1002, 1003])

    code, result = run({**base, "containers": wanted}, check=True)
    assert code == 0, result
    assert result["created"] == [f"{prefix}-1001", f"{prefix}-1002", f"{prefix}-1003"] and result["changed"] is True

    code, result = run({**base, "containers": wanted, "wait_healthy": True, "health_timeout": 60})
    assert code == 0, result
    assert sorted(result["created"]) == [spec["name"] for spec in wanted]
    api = engine.client()
    found = {c["Names"][0].lstrip("/"): c for c in api.containers(all=True, filters={"label": f"mt5farm.scope={prefix}"})}
    assert sorted(found) == [spec["name"] for spec in wanted]
    one = api.inspect_container(f"{prefix}-1001")
    # The module counted the healthcheck's test it ran itself (wait_healthy's early check);
    # Docker's own first check, one interval (1 s) after the start, agrees.
    for _ in range(20):
        if one["State"]["Health"]["Status"] == "healthy":
            break
        time.sleep(0.5)
        one = api.inspect_container(f"{prefix}-1001")
    assert one["State"]["Health"]["Status"] == "healthy"
    assert one["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert one["HostConfig"]["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "21000"}]}
    mounts = {m["Destination"]: m for m in one["Mounts"]}
    assert mounts["/secrets"]["RW"] is False and mounts["/data"]["Name"] == f"{prefix}-1001-data"

    code, result = run({**base, "containers": wanted})
    assert code == 0 and result["changed"] is False, result

    code, result = run({**base, "containers": wanted[:2], "purge_volumes": [f"{prefix}-1003-data"]})
    assert code == 0, result
    assert result["removed"] == [f"{prefix}-1003"] and result["purged_volumes"] == [f"{prefix}-1003-data"]
    assert result["unchanged"] == [f"{prefix}-1001", f"{prefix}-1002"]

    code, result = run({**base, "containers": [], "purge_volumes": [f"{prefix}-1001-data", f"{prefix}-1002-data"]})
    assert code == 0 and sorted(result["removed"]) == [f"{prefix}-1001", f"{prefix}-1002"], result


def test_an_engine_refuses_a_client_without_the_client_certificate(engine) -> None:
    anonymous = docker.APIClient(
        base_url=engine.docker_host, tls=docker.tls.TLSConfig(ca_cert=engine.tls["ca_cert"], verify=True), version="1.41", timeout=10
    )
    with pytest.raises((docker.errors.DockerException, ssl.SSLError, OSError, Exception)) as raised:
        anonymous.version()
    assert "certificate" in str(raised.value).lower() or "ssl" in str(raised.value).lower() or "reset" in str(raised.value).lower()

    plain = docker.APIClient(base_url=engine.docker_host.replace("tcp://", "http://"), version="1.41", timeout=10)
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises: the point is that plain HTTP gets no answer
        plain.version()


def test_a_client_certificate_from_another_ca_is_refused(engine, tmp_path) -> None:
    other = tmp_path / "other-ca"
    mtls_engine.run_pki(other)
    code, result = run(
        {
            "scope": "mt5r-other",
            "containers": [],
            "docker_host": engine.docker_host,
            "tls": {
                "ca_cert": engine.tls["ca_cert"],
                "client_cert": str(other / "client.pem"),
                "client_key": str(other / "client-key.pem"),
            },
        }
    )
    assert code == 1
    assert "cannot reach the Docker engine at" in result["msg"] or "Docker engine error" in result["msg"], result


def test_the_module_verifies_the_engine_certificate(engine, tmp_path) -> None:
    other = tmp_path / "other-ca"
    mtls_engine.run_pki(other)
    code, result = run(
        {
            "scope": "mt5r-verify",
            "containers": [],
            "docker_host": engine.docker_host,
            "tls": {"ca_cert": str(other / "ca.pem"), "client_cert": engine.tls["client_cert"], "client_key": engine.tls["client_key"]},
        }
    )
    assert code == 1 and "engine" in result["msg"], result


def test_a_network_engine_without_tls_is_refused_before_any_connection() -> None:
    code, result = run({"scope": "x", "containers": [], "docker_host": "tcp://127.0.0.1:9"})
    assert code == 1
    assert "is a network engine: give tls" in result["msg"]
    code, result = run({"scope": "x", "containers": [], "tls": {"ca_cert": "a", "client_cert": "b", "client_key": "c"}})
    assert code == 1 and "tls needs docker_host" in result["msg"]
    code, result = run(
        {
            "scope": "x",
            "containers": [],
            "docker_host": "tcp://127.0.0.1:9",
            "tls": {"ca_cert": "/nonexistent/ca.pem", "client_cert": "/nonexistent/c.pem", "client_key": "/nonexistent/k.pem"},
        }
    )
    assert code == 1 and "tls: no such file" in result["msg"]


def test_isolation_unset_hashes_as_before() -> None:
    spec = normalize(
        {
            "name": "mt5-1",
            "image": "x",
            "env": {},
            "labels": {},
            "ports": [],
            "mounts": [],
            "cap_drop": [],
            "security_opt": [],
            "tmpfs": {},
            "restart_policy": "unless-stopped",
            "init": False,
            "read_only": False,
        }
    )
    with_none = dict(spec, isolation=None)
    assert config_hash(spec, "sha256:1") == config_hash(with_none, "sha256:1")
    assert config_hash(dict(spec, isolation="process"), "sha256:1") != config_hash(spec, "sha256:1")


class RecordingClient:
    """A MOCK of docker.APIClient: records create_container's payload instead of sending it.

    A Linux engine refuses Windows isolation and C:\\ paths, so what the module would send
    to a Windows engine is checked here, at the API boundary. create_host_config is the
    SDK's real HostConfig (its validation and field names), built for API 1.41.
    """

    def __init__(self) -> None:
        self.created: list[dict] = []

    def create_host_config(self, **kwargs):
        return docker.types.HostConfig(version="1.41", **kwargs)

    def create_container(self, **kwargs):
        self.created.append(kwargs)
        return {"Id": "recorded"}


def test_windows_paths_and_isolation_reach_the_api_unchanged(monkeypatch) -> None:
    recorder = RecordingClient()
    engine = Engine.__new__(Engine)
    monkeypatch.setattr(Engine, "client", lambda self: recorder)
    spec = normalize(
        {
            "name": "mt5-32345678",
            "image": "mt5farm/account-windows:0123456789abcdef",
            "env": {"MT5_SECRETS_DIR": "C:\\secrets"},
            "labels": {},
            "cap_drop": [],
            "security_opt": [],
            "tmpfs": {},
            "restart_policy": "unless-stopped",
            "init": False,
            "read_only": False,
            "isolation": "process",
            "memory": 1932735283,
            "nano_cpus": 500_000_000,
            "ports": [{"container_port": 8000, "host_port": 25678, "host_ip": "0.0.0.0", "protocol": "tcp"}],
            "mounts": [
                {"type": "bind", "source": "C:\\mt5farm\\secrets\\32345678", "target": "C:\\secrets", "read_only": True},
                {"type": "volume", "source": "mt5-32345678-data", "target": "C:\\data", "read_only": False},
            ],
        }
    )
    spec["_hash"], spec["_image_id"] = "h", "sha256:1"
    engine.create(spec, "accounts")
    payload = recorder.created[0]
    host = payload["host_config"]
    assert host["Isolation"] == "process"
    assert host["Memory"] == 1932735283 and host["NanoCpus"] == 500_000_000
    assert {(m["Source"], m["Target"], m["ReadOnly"], m["Type"]) for m in host["Mounts"]} == {
        ("C:\\mt5farm\\secrets\\32345678", "C:\\secrets", True, "bind"),
        ("mt5-32345678-data", "C:\\data", False, "volume"),
    }
    assert host["PortBindings"] == {"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "25678"}]}
    assert "MemoryReservation" not in host and "PidsLimit" not in host
    assert payload["environment"] == ["MT5_SECRETS_DIR=C:\\secrets"]
