"""The farm host after site.yml: one healthy, limited, isolated container per account."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

GiB = 1024**3
ACCOUNTS = [5001001, 5001002, 5001003, 5001004, 5001005]


@pytest.fixture(scope="module")
def inventory(host):
    return host.ansible.get_variables()


def account_key(fleet_key: str, login: int) -> str:
    """The account's own API key (filter_plugins/mt5_credentials.py): HMAC-SHA256 of the fleet key's first line."""
    base = fleet_key.strip().splitlines()[0].strip().encode()
    digest = hmac.new(base, f"mt5farm:api_key:{login}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@pytest.fixture(scope="module")
def inspect(host):
    names = " ".join(f"mt5-{login}" for login in ACCOUNTS)
    return {item["Name"].lstrip("/"): item for item in json.loads(host.check_output(f"docker inspect {names}"))}


@pytest.fixture(autouse=True)
def logs_on_failure(request, host):
    """Print the account containers' logs when a test fails, to see why."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for login in ACCOUNTS:
            print(f"--- mt5-{login}\n" + host.run(f"docker logs --tail 30 mt5-{login}").stdout)


# A real HTTP client run on the test host itself (its loopback is where the ports are).
HTTP_GET = """
import json, sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"X-API-Key": sys.argv[2]} if sys.argv[2] else {})
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        print(json.dumps([response.status, json.load(response)]))
except urllib.error.HTTPError as error:
    print(json.dumps([error.code, json.load(error)]))
"""


def api(host, port: int, path: str, key: str | None) -> tuple[int, dict]:
    """GET a path of an account service through its published port, from the host itself."""
    out = host.check_output("python3 -c %s %s %s", HTTP_GET, f"http://127.0.0.1:{port}{path}", key or "")
    status, body = json.loads(out)
    return status, body


@pytest.mark.parametrize("login", ACCOUNTS)
def test_each_account_runs_healthy_under_its_name(inspect, login):
    state = inspect[f"mt5-{login}"]["State"]
    assert state["Running"] is True
    assert state["Health"]["Status"] == "healthy"


@pytest.mark.parametrize("login", ACCOUNTS)
def test_limits_restart_policy_and_labels(inspect, login):
    container = inspect[f"mt5-{login}"]
    memory = 1 * GiB if login == 5001005 else int(1.2 * GiB)
    assert container["HostConfig"]["Memory"] == memory
    assert container["HostConfig"]["NanoCpus"] == 500_000_000
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container["Config"]["Labels"]["mt5farm.login"] == str(login)
    assert container["Config"]["Labels"]["mt5farm.scope"] == "accounts"
    assert container["Config"]["User"] == "10001:10001"


@pytest.mark.parametrize("login", ACCOUNTS)
def test_api_port_is_published_on_the_bind_address_only(inspect, login):
    bindings = inspect[f"mt5-{login}"]["HostConfig"]["PortBindings"]["8000/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(20000 + login % 10000)}]


def test_no_secret_in_docker_inspect_or_environment(host, inspect, inventory):
    key = inventory["mt5_api_key"]
    assert key not in json.dumps(inspect)
    for login in ACCOUNTS:
        assert key not in host.check_output(f"docker exec mt5-{login} cat /proc/1/environ")


@pytest.mark.parametrize("login", ACCOUNTS)
def test_secrets_are_files_mounted_read_only(host, inspect, login):
    secrets = host.file(f"/etc/mt5farm/secrets/{login}")
    assert secrets.is_directory and secrets.mode == 0o500 and secrets.uid == 10001
    assert host.file(f"/etc/mt5farm/secrets/{login}/api_key").mode == 0o400
    mounts = {m["Destination"]: m for m in inspect[f"mt5-{login}"]["Mounts"]}
    assert mounts["/run/secrets/mt5"]["RW"] is False
    assert mounts["/data"]["Type"] == "volume" and mounts["/data"]["Name"] == f"mt5-{login}-data"


@pytest.mark.parametrize("login", ACCOUNTS)
def test_each_account_answers_with_its_own_login(host, inventory, login):
    port = 20000 + login % 10000
    status, health = api(host, port, "/health", None)
    assert status == 200, health
    status, account = api(host, port, "/api/account", account_key(inventory["mt5_api_key"], login))
    assert status == 200, account
    assert account["login"] == login


def test_an_accounts_key_opens_that_account_only(host, inventory):
    """Least privilege: the fleet key opens no account directly, one account's key no other."""
    port = 20000 + ACCOUNTS[1] % 10000
    assert api(host, port, "/api/account", inventory["mt5_api_key"])[0] == 401
    assert api(host, port, "/api/account", account_key(inventory["mt5_api_key"], ACCOUNTS[0]))[0] == 401


def test_without_a_platform_the_accounts_get_their_api_key_only(host):
    assert host.check_output(f"ls /etc/mt5farm/secrets/{ACCOUNTS[1]}").split() == ["api_key"]


def test_the_api_refuses_a_request_without_the_key(host):
    status, _ = api(host, 20000 + ACCOUNTS[0] % 10000, "/api/account", None)
    assert status == 401
