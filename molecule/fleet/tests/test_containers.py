"""Each account's container on its host: healthy, limited, labelled, published on its host's
address only, its secrets in files mounted read-only (the checks of the former single-host
`default` scenario, on every host of the fleet).

Read on the test hosts through testinfra's docker backend (the hosts are containers of this
machine's engine); test_fleet.py has the clients from outside.
"""

from __future__ import annotations

import json

import pytest
import testinfra

# Host → (its mt5_bind_address, its accounts), as molecule.yml says.
FLEET = {
    "fleet-platform": ("10.231.5.10", [5001001, 5001002]),
    "fleet-farm1": ("10.231.5.11", [5002001, 5002002]),
    "fleet-farm2": ("10.231.5.12", [5003001, 5003002]),
}
PAIRS = [(name, login) for name, (_, logins) in FLEET.items() for login in logins]
# The simulator's density profile (mt5farm/density.py, docs/inventory.md): 256 MiB and half a
# CPU per simulator account (a terminal account gets the PRD's 1.2 GiB).
MEMORY = 256 * 1024**2
NANO_CPUS = 500_000_000
# With a platform each account has its API keys (trading, read-only), its metrics token's hash and the passwords of
# its own Redis user and Postgres role; with TLS between hosts (three hosts: on), the farm's CA
# and its host's certificate and key (roles/mt5_linux/README.md).
SECRET_FILES = [
    "api_key",
    "api_key_read",
    "metrics_token_sha256",
    "postgres_password",
    "redis_password",
    "tls_ca.pem",
    "tls_cert.pem",
    "tls_key.pem",
]


@pytest.fixture(scope="module")
def inspect() -> dict[int, dict]:
    """docker inspect of every account container, by login."""
    out: dict[int, dict] = {}
    for name, (_, logins) in FLEET.items():
        host = testinfra.get_host(f"docker://{name}")
        names = " ".join(f"mt5-{login}" for login in logins)
        for item in json.loads(host.check_output(f"docker inspect {names}")):
            out[int(item["Config"]["Labels"]["mt5farm.login"])] = item
    return out


@pytest.mark.parametrize(("name", "login"), PAIRS)
def test_each_account_runs_healthy_limited_and_labelled(inspect, name, login):
    container = inspect[login]
    assert container["State"]["Running"] is True
    assert container["State"]["Health"]["Status"] == "healthy"
    assert container["HostConfig"]["Memory"] == MEMORY
    assert container["HostConfig"]["NanoCpus"] == NANO_CPUS
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container["Config"]["Labels"]["mt5farm.login"] == str(login)
    assert container["Config"]["Labels"]["mt5farm.scope"] == "accounts"
    assert container["Config"]["User"] == "10001:10001"


@pytest.mark.parametrize(("name", "login"), PAIRS)
def test_api_port_is_published_on_its_hosts_address_only(inspect, name, login):
    bindings = inspect[login]["HostConfig"]["PortBindings"]["8000/tcp"]
    assert bindings == [{"HostIp": FLEET[name][0], "HostPort": str(20000 + login % 10000)}]


@pytest.mark.parametrize(("name", "login"), PAIRS)
def test_secrets_are_files_mounted_read_only(inspect, name, login):
    host = testinfra.get_host(f"docker://{name}")
    secrets = host.file(f"/etc/mt5farm/secrets/{login}")
    assert secrets.is_directory and secrets.mode == 0o500 and secrets.uid == 10001
    assert sorted(host.check_output(f"ls /etc/mt5farm/secrets/{login}").split()) == SECRET_FILES
    for file in SECRET_FILES:
        assert host.file(f"/etc/mt5farm/secrets/{login}/{file}").mode == 0o400
    mounts = {m["Destination"]: m for m in inspect[login]["Mounts"]}
    assert mounts["/run/secrets/mt5"]["RW"] is False
    assert mounts["/data"]["Type"] == "volume" and mounts["/data"]["Name"] == f"mt5-{login}-data"
