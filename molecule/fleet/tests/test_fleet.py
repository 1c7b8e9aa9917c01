"""The fleet after site.yml: one image built once and run everywhere; every account, on every
host, reached through the platform's Nginx, registered in Redis, recorded in Postgres, scraped
by Prometheus with its host label; every dashboard and alert query answered.

The clients (HTTP, WebSocket) run on the controller, outside the test hosts, on the scenario's
network, as a bot or an operator would. What only the hosts can show (docker inspect, files,
psql and redis-cli as the services' admins) is read on them through Docker (testinfra's docker
backend: the test hosts are containers of this machine's engine).

Three hosts: TLS between hosts is on (mt5_tls auto). Redis, Postgres, the account services and
the node exporters are reached over TLS verified against the farm's CA, and a plaintext
connection to each is refused, from the controller and from a farm host.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import testinfra
import websockets

# Host → (its mt5_bind_address, its accounts), as molecule.yml says.
FLEET = {
    "fleet-platform": ("10.231.5.10", [5001001, 5001002]),
    "fleet-farm1": ("10.231.5.11", [5002001, 5002002]),
    "fleet-farm2": ("10.231.5.12", [5003001, 5003002]),
}
HOST_OF = {login: name for name, (_, logins) in FLEET.items() for login in logins}
ACCOUNTS = sorted(HOST_OF)
KEY = "molecule-test-api-key-5f3c"
ONLY_5001001 = "molecule-key-of-5001001-only"
BURST_KEY = "molecule-burst-key-7a1d"
NGINX = "https://10.231.5.10"
PROMETHEUS = "http://10.231.5.10:9090"
SECRETS = [
    KEY,
    ONLY_5001001,
    BURST_KEY,
    "molecule-test-redis-password",
    "http://10.231.5.1:9199/alerts",
    "molecule-test-postgres-superuser",
    "molecule-test-postgres-owner",
    "molecule-test-postgres-writer",
    "molecule-test-postgres-reader",
    "molecule-test-postgres-monitor",
    "molecule-test-grafana",
]
REDIS_BASE = "molecule-test-redis-password"
WRITER_BASE = "molecule-test-postgres-writer"
PLATFORM = [
    "mt5-nginx",
    "mt5-redis",
    "mt5-postgres",
    "mt5-prometheus",
    "mt5-node-exporter",
    "mt5-redis-exporter",
    "mt5-postgres-exporter",
    "mt5-nginx-exporter",
    "mt5-alertmanager",
]


def on(name: str):
    """A test host, through this machine's Docker engine."""
    return testinfra.get_host(f"docker://{name}")


@pytest.fixture(scope="module")
def platform():
    return on("fleet-platform")


@pytest.fixture(scope="module")
def hosts():
    return {name: on(name) for name in FLEET}


@pytest.fixture(scope="module")
def farm_ca(platform, tmp_path_factory) -> str:
    """The farm's CA certificate (public: the controller's, as the platform host got it), as a file."""
    path = tmp_path_factory.mktemp("farm-ca") / "ca.pem"
    path.write_text(platform.file("/etc/mt5farm/pki/ca.pem").content_string)
    return str(path)


def derived(base: str, purpose: str, login: int) -> str:
    """An account's own credential (mt5farm/credentials.py)."""
    digest = hmac.new(base.encode(), f"mt5farm:{purpose}:{login}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@pytest.fixture(autouse=True)
def logs_on_failure(request):
    """Print the platform's and the accounts' container logs when a test fails, to see why."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name, (_, logins) in FLEET.items():
            host = on(name)
            for container in (PLATFORM if name == "fleet-platform" else []) + [f"mt5-{login}" for login in logins]:
                print(f"--- {name} {container}\n" + host.run(f"docker logs --tail 20 {container} 2>&1").stdout)


def request(path: str, key: str | None = KEY, method: str = "GET", body: dict | None = None, header: str = "X-API-Key") -> tuple[int, dict]:
    """One HTTPS request through the platform's Nginx from the controller: (status, JSON body)."""
    headers = {}
    if key is not None:
        headers = {"X-API-Key": key} if header == "X-API-Key" else {"Authorization": f"Bearer {key}"}
    # The platform's certificate is self-signed in this scenario (platform_nginx's default).
    response = httpx.request(method, NGINX + path, headers=headers, json=body, verify=False, timeout=15)
    return response.status_code, response.json() if response.content else None


def prometheus(path: str, **params: str) -> dict:
    response = httpx.get(PROMETHEUS + path, params=params, timeout=15)
    response.raise_for_status()
    return response.json()


# --- one image, built once ------------------------------------------------------------------


def test_every_host_runs_the_same_image_id_built_on_one_host(hosts):
    images = {}
    for name, (_, logins) in FLEET.items():
        for login in logins:
            images[login] = hosts[name].check_output(f"docker inspect -f '{{{{.Image}}}}' mt5-{login}")
    assert len(set(images.values())) == 1, images
    # Built on the build host (mt5_image_build_host: fleet-platform, molecule.yml), loaded on
    # the others: only the build host has the account image's context.
    built = [name for name, host in hosts.items() if host.run("ls /opt/mt5farm/build/*.Dockerfile").rc == 0]
    assert built == ["fleet-platform"], built


# --- Nginx ------------------------------------------------------------------------------


@pytest.mark.parametrize("login", ACCOUNTS)
def test_each_account_answers_with_its_own_login_through_nginx(login):
    status, body = request(f"/accounts/{login}/api/account")
    assert status == 200 and body["login"] == login, (HOST_OF[login], status, body)


def test_a_bearer_token_works_like_the_header():
    status, body = request("/accounts/5002002/api/positions", header="Authorization")
    assert status == 200 and isinstance(body, list)


@pytest.mark.parametrize(
    ("path", "key", "status", "error"),
    [
        ("/accounts/5001001/api/account", None, 401, "unauthorized"),
        ("/accounts/5003001/api/account", "not-the-key-0123456789", 401, "unauthorized"),
        ("/accounts/5009999/api/account", KEY, 404, "not_found"),
        ("/nowhere", KEY, 404, "not_found"),
        ("/accounts/5002001/api/account", ONLY_5001001, 403, "forbidden"),
    ],
)
def test_refusals_are_json_with_a_message(path, key, status, error):
    answered, body = request(path, key)
    assert answered == status and body["error"] == error and body["message"]


def test_a_key_for_one_account_opens_that_account():
    status, body = request("/accounts/5001001/api/account", ONLY_5001001)
    assert status == 200 and body["login"] == 5001001


def test_a_burst_beyond_the_keys_rate_gets_429_as_json():
    def one(_):
        response = httpx.get(f"{NGINX}/accounts/5003002/api/account", headers={"X-API-Key": BURST_KEY}, verify=False, timeout=10)
        return response.status_code, response.text

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(40)))
    statuses = [status for status, _ in results]
    assert 200 in statuses and 429 in statuses, statuses
    assert json.loads(next(body for status, body in results if status == 429))["error"] == "rate_limited"


def test_http_redirects_to_https():
    response = httpx.get("http://10.231.5.10/accounts/5001001/api/account", timeout=10)
    assert (response.status_code, response.headers["location"]) == (308, f"{NGINX}/accounts/5001001/api/account")


@pytest.mark.parametrize("login", [5001002, 5002001, 5003002])
def test_websocket_end_to_end_through_nginx(login):
    """On every host: a snapshot on connect, then the order placed through Nginx arrives as an update."""

    async def main() -> dict:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the scenario's self-signed certificate
        async with websockets.connect(f"wss://10.231.5.10/accounts/{login}/ws", ssl=context, additional_headers={"X-API-Key": KEY}) as ws:
            snapshot = json.loads(await asyncio.wait_for(ws.recv(), 10))
            order = await asyncio.to_thread(
                request, f"/accounts/{login}/api/orders", KEY, "POST", {"symbol": "BTCUSD", "type": "buy", "volume": 0.01}
            )
            # Updates of positions opened before (their prices move) may come first.
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                changed = [p["ticket"] for p in message.get("positions", {}).get("changed", [])] if message["type"] == "update" else []
                if order[1]["position"] in changed:
                    return {"snapshot": snapshot, "order": order[1], "update": message}

    out = asyncio.run(main())
    assert out["snapshot"]["type"] == "snapshot" and out["snapshot"]["account"]["login"] == login
    assert out["order"]["retcode"] == 10009
    assert out["order"]["position"] in [p["ticket"] for p in out["update"]["positions"]["changed"]]


def test_the_access_log_is_json_with_request_and_upstream_time(platform):
    request("/accounts/5002001/api/account")
    time.sleep(2)  # the log is flushed every second
    lines = [
        json.loads(line)
        for line in platform.check_output("docker logs --tail 50 mt5-nginx 2>/dev/null").splitlines()
        if line.startswith("{")
    ]
    proxied = [entry for entry in lines if entry["login"] == "5002001" and entry["status"] == 200]
    assert proxied, lines[-5:]
    assert isinstance(proxied[-1]["request_time"], float) and proxied[-1]["upstream_time"] and proxied[-1]["key"] == "fleet"
    assert proxied[-1]["upstream"].startswith("10.231.5.11:"), proxied[-1]
    assert all(KEY not in json.dumps(entry) for entry in lines)


# --- Redis and Postgres -----------------------------------------------------------------


# redis-cli over TLS, verified against the farm's CA (Redis has no plaintext port here).
REDIS_CLI_TLS = "redis-cli --tls --cacert /run/secrets/redis/tls_ca.pem"


def redis(host, command: str) -> str:
    """A redis-cli command as Redis' admin, on the platform host."""
    return host.check_output(
        'docker exec mt5-redis sh -c \'REDISCLI_AUTH="$(cat /run/secrets/redis/password)" '
        f"{REDIS_CLI_TLS} --no-auth-warning --user mt5-admin {command}'"
    )


def test_redis_has_every_account_registered(platform):
    assert sorted(int(x) for x in redis(platform, "smembers mt5:accounts").split()) == ACCOUNTS
    for login in ACCOUNTS:
        entry = json.loads(redis(platform, f"get mt5:account:{login}"))
        # TLS between hosts: each service advertises its HTTPS endpoint.
        assert entry["endpoint"] == f"https://{FLEET[HOST_OF[login]][0]}:{20000 + login % 10000}"
        assert 0 < int(redis(platform, f"ttl mt5:account:{login}")) <= 30


def test_redis_wants_its_password_keeps_an_aof_and_is_published_on_the_private_address_only(platform):
    assert "NOAUTH" in platform.check_output(f"docker exec mt5-redis {REDIS_CLI_TLS} ping")
    # No default user: the admin's password alone (the old requirepass way) opens nothing.
    assert "NOAUTH" in platform.check_output(
        f"docker exec -e REDISCLI_AUTH={REDIS_BASE} mt5-redis {REDIS_CLI_TLS} --no-auth-warning ping 2>&1"
    )
    assert redis(platform, "config get appendonly").split() == ["appendonly", "yes"]
    assert int(redis(platform, "config get maxmemory").split()[1]) > 0
    inspect = json.loads(platform.check_output("docker inspect mt5-redis"))[0]
    # The farm hosts' accounts reach it at the platform's private address, nothing else does.
    assert inspect["HostConfig"]["PortBindings"] == {"6379/tcp": [{"HostIp": "10.231.5.10", "HostPort": "6379"}]}


def psql(host, sql: str, user: str = "postgres", password: str | None = None) -> str:
    env = f"-e PGPASSWORD={password} " if password else ""
    where = "-h 127.0.0.1 " if password else ""
    return host.check_output(f'docker exec {env}mt5-postgres psql {where}-U {user} -d mt5farm -At -c "{sql}"')


def test_postgres_has_the_orders_placed_through_nginx(platform):
    placed = []
    for login in ACCOUNTS:
        status, body = request(
            f"/accounts/{login}/api/orders",
            method="POST",
            body={"symbol": "BTCUSD", "type": "buy", "volume": 0.01, "comment": f"via nginx {login}"},
        )
        assert status == 201, body
        placed.append((login, body["order"]))
    for _ in range(30):
        rows = psql(platform, "SELECT login, result->>'order' FROM mt5_order_requests WHERE request->>'comment' LIKE 'via nginx %'")
        found = {(int(a), int(b)) for a, b in (line.split("|") for line in rows.splitlines())}
        if set(placed) <= found:
            break
        time.sleep(1)
    assert set(placed) <= found


def test_postgres_roles_have_least_privilege(platform):
    password = derived(WRITER_BASE, "postgres_password", 5001001)
    cannot = platform.run(
        f"docker exec -e PGPASSWORD={password} mt5-postgres psql -h 127.0.0.1 -U mt5_account_5001001 -d mt5farm -c "
        "'CREATE TABLE stolen (x int)'"
    )
    assert cannot.rc != 0 and "may not create" in cannot.stderr
    assert (
        platform.run(
            f"docker exec -e PGPASSWORD={password} mt5-postgres psql -h 127.0.0.1 -U mt5_account_5001001 -d mt5farm -c "
            "'DELETE FROM mt5_order_requests'"
        ).rc
        != 0
    )
    # The writer is the accounts' group: nobody logs in as it, with its base password or any.
    assert (
        platform.run(f"docker exec -e PGPASSWORD={WRITER_BASE} mt5-postgres psql -h 127.0.0.1 -U mt5_writer -d mt5farm -c 'SELECT 1'").rc
        != 0
    )
    reader = platform.run(
        "docker exec -e PGPASSWORD=molecule-test-postgres-reader mt5-postgres psql -h 127.0.0.1 -U mt5_reader "
        "-d mt5farm -c 'INSERT INTO mt5_deals (login) VALUES (1)'"
    )
    assert reader.rc != 0 and "permission denied" in reader.stderr
    assert psql(platform, "SELECT count(*) FROM mt5_order_requests", "mt5_reader", "molecule-test-postgres-reader").isdigit()


def test_postgres_is_published_on_the_private_address_only(platform):
    inspect = json.loads(platform.check_output("docker inspect mt5-postgres"))[0]
    # Loopback for the platform host's own tools (backups), the private address for the farm hosts.
    bound = sorted(binding["HostIp"] for binding in inspect["HostConfig"]["PortBindings"]["5432/tcp"])
    assert bound == ["10.231.5.10", "127.0.0.1"] and list(inspect["HostConfig"]["PortBindings"]) == ["5432/tcp"]


def test_backups_are_scheduled(platform):
    assert platform.service("mt5farm-postgres-backup.timer").is_enabled
    assert platform.file("/var/backups/mt5farm/postgres").mode == 0o700


# --- TLS between hosts: plaintext refused ----------------------------------------------


def test_redis_refuses_plaintext_from_the_controller_and_answers_over_verified_tls(farm_ca):
    with socket.create_connection(("10.231.5.10", 6379), timeout=10) as sock:
        sock.sendall(b"PING\r\n")
        try:
            answer = sock.recv(64)
        except ConnectionResetError:
            answer = b""
    assert answer == b"", answer  # no Redis reply at all: the TLS port drops a plaintext client
    context = ssl.create_default_context(cafile=farm_ca)  # and the platform's address is a name of its certificate
    with context.wrap_socket(socket.create_connection(("10.231.5.10", 6379), timeout=10), server_hostname="10.231.5.10") as tls:
        tls.sendall(b"PING\r\n")
        assert tls.recv(64).startswith(b"-NOAUTH"), "over TLS it is Redis, wanting a user"


def test_from_a_farm_host_plaintext_redis_and_postgres_are_refused():
    """An account's own credentials, from fleet-farm1 to the platform host, without TLS."""
    script = """
import json, os, psycopg, redis
out = {}
plain = os.environ["REDIS_URL"].replace("rediss://", "redis://", 1)
try:
    redis.Redis.from_url(plain, password=open("/run/secrets/mt5/redis_password").read().strip(), socket_timeout=5).ping()
    out["redis"] = "answered"
except redis.exceptions.ConnectionError as e:
    out["redis"] = type(e).__name__
try:
    psycopg.connect(os.environ["DATABASE_URL"], password=open("/run/secrets/mt5/postgres_password").read().strip(),
                    sslmode="disable", connect_timeout=10).close()
    out["postgres"] = "connected"
except psycopg.OperationalError as e:
    out["postgres"] = str(e)
out["urls"] = [plain, os.environ["DATABASE_URL"]]
print(json.dumps(out))
"""
    out = in_account(5002001, script)
    assert out["urls"][0].startswith("redis://mt5-account-5002001@10.231.5.10:6379/"), out
    assert out["urls"][1].startswith("postgresql://mt5_account_5002001@10.231.5.10:5432/"), out
    assert out["redis"] == "ConnectionError", out
    assert "pg_hba.conf rejects connection" in out["postgres"], out  # hostnossl ... reject


def test_postgres_refuses_psql_without_tls_by_pg_hba(platform):
    password = "molecule-test-postgres-reader"
    for sslmode, refused in [("disable", True), ("require", False)]:
        done = platform.run(
            f"docker exec -e PGPASSWORD={password} mt5-postgres psql "
            f"'host=127.0.0.1 dbname=mt5farm user=mt5_reader sslmode={sslmode}' -Atc 'SELECT 1'"
        )
        if refused:
            assert done.rc != 0 and "pg_hba.conf rejects connection" in done.stderr, done.stderr
        else:
            assert done.rc == 0 and done.stdout.strip() == "1", done.stderr


def test_an_account_service_refuses_plain_http_and_answers_https_under_its_hosts_name(farm_ca):
    address, port = FLEET["fleet-farm1"][0], 20000 + 5002001 % 10000
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{address}:{port}/health", timeout=10)
    context = ssl.create_default_context(cafile=farm_ca)
    # As Nginx asks (proxy_ssl_name: the host's inventory name) ...
    with context.wrap_socket(socket.create_connection((address, port), timeout=10), server_hostname="fleet-farm1") as tls:
        tls.sendall(b"GET /health HTTP/1.1\r\nHost: fleet-farm1\r\nConnection: close\r\n\r\n")
        assert tls.recv(64).startswith(b"HTTP/1.1 200"), "HTTPS under the host's name"
    # ... and as Prometheus does (the host's address, a name of its certificate too).
    assert httpx.get(f"https://{address}:{port}/health", verify=context, timeout=10).status_code == 200
    # Another host's name is not this host's certificate.
    with socket.create_connection((address, port), timeout=10) as raw, pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(raw, server_hostname="fleet-farm2")


@pytest.mark.parametrize("name", sorted(FLEET))
def test_node_exporter_refuses_plain_http_and_answers_verified_https(farm_ca, name):
    address = FLEET[name][0]
    plain = httpx.get(f"http://{address}:9100/metrics", timeout=10)
    # Go's TLS server answers a plaintext request with this 400 and nothing else.
    assert plain.status_code == 400 and "HTTPS server" in plain.text and "node_exporter_build_info" not in plain.text
    tls = httpx.get(f"https://{address}:9100/metrics", verify=ssl.create_default_context(cafile=farm_ca), timeout=10)
    assert tls.status_code == 200 and "node_exporter_build_info" in tls.text


# --- secrets ----------------------------------------------------------------------------


def test_no_secret_in_docker_inspect_or_the_environment(platform, hosts):
    for name, (_, logins) in FLEET.items():
        names = " ".join((PLATFORM if name == "fleet-platform" else ["mt5-node-exporter"]) + [f"mt5-{login}" for login in logins])
        inspect = hosts[name].check_output(f"docker inspect {names}")
        for secret in SECRETS + [derived(REDIS_BASE, "redis_password", login) for login in logins]:
            assert secret not in inspect, name
    for name in ["mt5-redis", "mt5-postgres", "mt5-nginx", "mt5-prometheus"]:
        environ = platform.check_output(f"docker exec {name} cat /proc/1/environ")
        assert not any(secret in environ for secret in SECRETS), name


def test_secret_files_are_readable_by_their_service_only(platform):
    for path, uid in [
        ("/etc/mt5farm/platform/redis/secrets/users.acl", 999),
        ("/etc/mt5farm/platform/prometheus/secrets/metrics_token", 65534),
        ("/etc/mt5farm/platform/postgres/secrets/superuser_password", 999),
        ("/etc/mt5farm/platform/nginx/live/secrets/api_keys.conf", 0),
        ("/etc/mt5farm/platform/nginx/live/tls/key.pem", 0),
        ("/etc/mt5farm/platform/postgres-exporter/password", 65534),
        ("/etc/mt5farm/platform/alertmanager/secrets/drill.webhook_url", 65534),
    ]:
        secret = platform.file(path)
        assert secret.uid == uid and secret.mode in (0o400, 0o600), path


# --- Prometheus and the queries of the dashboards and alert rules -----------------------


def test_promtool_accepts_the_config_and_the_rules(platform):
    platform.check_output("docker exec mt5-prometheus promtool check config /etc/prometheus/prometheus.yml")
    platform.check_output("docker exec mt5-prometheus promtool check rules /etc/prometheus/rules/mt5farm.yml")


def test_prometheus_keeps_30_days():
    flags = prometheus("/api/v1/status/flags")["data"]
    assert flags["storage.tsdb.retention.time"] == "30d"


def test_every_target_is_up_with_its_labels():
    for _ in range(30):
        targets = prometheus("/api/v1/targets")["data"]["activeTargets"]
        if targets and all(t["health"] == "up" for t in targets):
            break
        time.sleep(2)
    assert all(t["health"] == "up" for t in targets), [(t["scrapeUrl"], t["lastError"]) for t in targets if t["health"] != "up"]
    accounts = {t["labels"]["login"]: t["labels"] for t in targets if t["labels"]["job"] == "mt5-accounts"}
    assert sorted(map(int, accounts)) == ACCOUNTS
    assert {int(login): (labels["server"], labels["host"]) for login, labels in accounts.items()} == {
        login: ("Simulator-Demo", HOST_OF[login]) for login in ACCOUNTS
    }
    # Every host's node exporter, by host, at the host's own address.
    nodes = {t["labels"]["host"]: t["scrapeUrl"] for t in targets if t["labels"]["job"] == "node"}
    assert {name: url.split("/")[2].split(":")[0] for name, url in nodes.items()} == {name: address for name, (address, _) in FLEET.items()}
    jobs = {(t["labels"]["job"], t["labels"].get("service")) for t in targets}
    assert {
        ("node", None),
        ("prometheus", None),
        ("platform", "redis"),
        ("platform", "postgres"),
        ("platform", "nginx"),
        ("platform", "alertmanager"),
    } <= jobs


def test_prometheus_sends_its_alerts_to_alertmanager_whose_config_holds_no_secret(platform):
    """The receivers' URLs and passwords are files Alertmanager reads (url_file), not config."""
    active = prometheus("/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
    assert [a["url"] for a in active] == ["http://10.231.5.10:9093/api/v2/alerts"]
    platform.check_output("docker exec mt5-alertmanager amtool check-config /etc/alertmanager/alertmanager.yml")
    config = platform.file("/etc/mt5farm/platform/alertmanager/alertmanager.yml").content_string
    assert "url_file: /etc/alertmanager/secrets/drill.webhook_url" in config
    assert "10.231.5.1:9199" not in config
    # One instance: no gossip port (it would listen on every address of the host).
    assert "--cluster.listen-address=" in json.loads(platform.check_output("docker inspect mt5-alertmanager"))[0]["Args"]


def test_every_exporter_reaches_its_service():
    """An exporter's target can be up while it cannot log in to its service: each says so itself."""
    for query in ["redis_up", "pg_up", "nginx_up"]:
        result = prometheus("/api/v1/query", query=query)["data"]["result"]
        assert [sample["value"][1] for sample in result] == ["1"], (query, result)


def dashboard_queries(host) -> list[tuple[str, str]]:
    out = []
    for path in host.check_output("ls /etc/mt5farm/platform/grafana/dashboards/*.json").split():
        dashboard = json.loads(host.file(path).content_string)
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                if "expr" in target:
                    out.append((f"{dashboard['uid']}: {panel['title']}", target["expr"]))
        for variable in dashboard["templating"]["list"]:
            out.append((f"{dashboard['uid']}: variable {variable['name']}", variable["query"]["query"]))
    return out


def grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace("$login", str(ACCOUNTS[0]))


def test_every_dashboard_and_alert_query_returns_data(platform):
    """Grafana cannot run here: its dashboards are proved by running their queries."""
    for login in ACCOUNTS:  # traffic, so that rates and quantiles have samples
        request(f"/accounts/{login}/api/account")
        request(f"/accounts/{login}/api/positions")
    rules = prometheus("/api/v1/rules")["data"]["groups"]
    queries = [(f"alert {r['name']}", r["annotations"]["value_query"]) for g in rules for r in g["rules"]]
    assert len(queries) >= 6
    queries += dashboard_queries(platform)
    empty = []
    for name, query in queries:
        for _ in range(12):  # rates need two scrapes, the container metrics a collector run
            if query.startswith("label_values("):
                label = re.match(r"label_values\((\w+), (\w+)\)", query)
                values = prometheus(f"/api/v1/label/{label[2]}/values", **{"match[]": label[1]})["data"]
                answered = bool(values)
            else:
                answered = bool(prometheus("/api/v1/query", query=grafana_to_promql(query))["data"]["result"])
            if answered:
                break
            time.sleep(5)
        else:
            empty.append((name, query))
    assert not empty, empty


def test_the_sql_panel_answers_for_the_read_only_role(platform):
    for path in platform.check_output("ls /etc/mt5farm/platform/grafana/dashboards/*.json").split():
        for panel in json.loads(platform.file(path).content_string)["panels"]:
            for target in panel["targets"]:
                if "rawSql" in target:
                    sql = target["rawSql"].replace("$login", str(ACCOUNTS[0])).replace('"', '\\"')
                    rows = psql(platform, sql, "mt5_reader", "molecule-test-postgres-reader")
                    assert rows.strip(), target["rawSql"]


def test_grafana_is_left_out_and_the_run_says_how_to_supply_it(platform):
    assert platform.run("docker inspect mt5-grafana").rc != 0
    assert platform.file("/etc/mt5farm/platform/grafana/dashboards/mt5-account.json").exists


# --- least privilege per account: what one account container's credentials open --------


def in_account(login: int, script: str) -> dict:
    """Run Python in an account container on its host (as its user, with its secret files): its JSON."""
    host = on(HOST_OF[login])
    return json.loads(host.check_output(f"docker exec -i mt5-{login} /opt/mt5farm/venv/bin/python - <<'EOF'\n{script}\nEOF"))


# An account on the platform host and one on a farm host, each with a neighbour on its own host.
PAIRS = [(5001001, 5001002), (5002001, 5002002)]


@pytest.mark.parametrize(("login", "other"), PAIRS)
def test_an_accounts_key_opens_that_account_and_no_other(login, other):
    # HTTPS only (TLS between hosts), verified against the farm's CA: its own service by
    # 127.0.0.1, a name of the host's certificate; the neighbour by its container name, which
    # the certificate does not carry (only the chain is checked there: the key is under test).
    script = f"""
import json, ssl, urllib.error, urllib.request
key = open("/run/secrets/mt5/api_key").read().strip()
own = ssl.create_default_context(cafile="/run/secrets/mt5/tls_ca.pem")
neighbour = ssl.create_default_context(cafile="/run/secrets/mt5/tls_ca.pem")
neighbour.check_hostname = False
def status(url, context):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={{"X-API-Key": key}}), timeout=10, context=context) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
print(json.dumps({{"own": status("https://127.0.0.1:8000/api/account", own),
                  "other": status("https://mt5-{other}:8000/api/account", neighbour)}}))
"""
    assert in_account(login, script) == {"own": 200, "other": 401}
    host = on(HOST_OF[login])
    assert host.file(f"/etc/mt5farm/secrets/{login}/api_key").content_string.strip() == derived(KEY, "api_key", login)
    assert KEY not in host.check_output("cat /etc/mt5farm/secrets/*/api_key")


@pytest.mark.parametrize(("login", "other"), PAIRS)
def test_an_accounts_redis_user_reaches_its_own_registration_only(platform, login, other):
    script = f"""
import json, os, redis
r = redis.Redis.from_url(os.environ["REDIS_URL"], password=open("/run/secrets/mt5/redis_password").read().strip(),
                         ssl_ca_certs="/run/secrets/mt5/tls_ca.pem", ssl_check_hostname=True)
def attempt(name, *args):
    try:
        r.execute_command(*args)
        return "ok"
    except redis.exceptions.ResponseError as e:  # NOPERM: NoPermissionError
        return type(e).__name__
out = {{"user": os.environ["REDIS_URL"], "ping": attempt("ping", "PING"), "own": attempt("own", "SET", "mt5:account:{login}", "{{}}", "EX", "30"),
       "set": attempt("set", "SADD", "mt5:accounts", "{login}")}}
for name, args in {{"get_other": ("GET", "mt5:account:{other}"), "set_other": ("SET", "mt5:account:{other}", "x"),
                   "del_other": ("DEL", "mt5:account:{other}"), "get_own": ("GET", "mt5:account:{login}"),
                   "flushall": ("FLUSHALL",), "config": ("CONFIG", "GET", "*"), "keys": ("KEYS", "*"),
                   "smembers": ("SMEMBERS", "mt5:accounts")}}.items():
    out[name] = attempt(name, *args)
print(json.dumps(out))
"""
    out = in_account(login, script)
    # On the platform host by container name; from a farm host at the platform's private address; over TLS.
    where = "mt5-redis" if HOST_OF[login] == "fleet-platform" else "10.231.5.10"
    assert out.pop("user") == f"rediss://mt5-account-{login}@{where}:6379/0"
    assert {k: out.pop(k) for k in ["ping", "own", "set"]} == {"ping": "ok", "own": "ok", "set": "ok"}
    assert set(out.values()) == {"NoPermissionError"}, out
    assert sorted(int(x) for x in redis(platform, "smembers mt5:accounts").split()) == ACCOUNTS


def test_an_accounts_postgres_role_sees_and_writes_its_own_rows_only(platform):
    """From a farm host, across to the platform's Postgres: its own rows only."""
    login, other = 5002001, 5001002
    request(f"/accounts/{other}/api/orders", method="POST", body={"symbol": "BTCUSD", "type": "buy", "volume": 0.01, "comment": "other"})
    script = f"""
import json, os, psycopg
out = {{}}
with psycopg.connect(os.environ["DATABASE_URL"], password=open("/run/secrets/mt5/postgres_password").read().strip(), autocommit=True,
                     sslrootcert="/run/secrets/mt5/tls_ca.pem") as c:
    out["ssl"] = c.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
    out["user"] = c.execute("SELECT session_user").fetchone()[0]
    for table in ["mt5_order_requests", "mt5_deals", "mt5_account_snapshots", "mt5_record_conflicts"]:
        out[table] = c.execute(f"SELECT count(*) FILTER (WHERE login = {login}), count(*) FILTER (WHERE login <> {login}) FROM {{table}}").fetchone()
    c.execute("SET ROLE mt5_writer")
    out["as_group"] = c.execute("SELECT count(*) FROM mt5_order_requests WHERE login <> {login}").fetchone()[0]
    c.execute("RESET ROLE")
    for name, sql in {{"insert_other": "INSERT INTO mt5_account_snapshots (record_id, login, taken_at, balance, equity, margin, margin_free,"
                                      " margin_level, profit, positions, orders, raw) VALUES (gen_random_uuid(), {other}, now(),"
                                      " 0, 0, 0, 0, 0, 0, 0, 0, '{{}}')",
                      "delete_other": "DELETE FROM mt5_account_snapshots WHERE login = {other}",
                      "update_other": "UPDATE mt5_order_requests SET http_status = 0 WHERE login = {other}"}}.items():
        try:
            cur = c.execute(sql)
            out[name] = f"ok {{cur.rowcount}}"
        except psycopg.Error as e:
            out[name] = type(e).__name__
print(json.dumps(out))
"""
    request(f"/accounts/{login}/api/orders", method="POST", body={"symbol": "BTCUSD", "type": "buy", "volume": 0.01, "comment": "own"})
    for _ in range(30):  # the orders and a snapshot of the account reach Postgres
        if int(psql(platform, f"SELECT count(*) FROM mt5_order_requests WHERE login = {other}")) and int(
            psql(platform, f"SELECT count(*) FROM mt5_account_snapshots WHERE login = {login}")
        ):
            break
        time.sleep(1)
    out = in_account(login, script)
    assert out["user"] == f"mt5_account_{login}" and out["ssl"] is True
    assert out["mt5_order_requests"][0] > 0 and out["mt5_account_snapshots"][0] > 0
    assert [out[t][1] for t in ["mt5_order_requests", "mt5_deals", "mt5_account_snapshots", "mt5_record_conflicts"]] == [0, 0, 0, 0]
    assert out["as_group"] == 0
    assert out["insert_other"] == "InsufficientPrivilege"  # new row violates row-level security policy
    assert out["delete_other"] == "ok 0"  # DELETE is granted (its own old snapshots), other rows are invisible
    assert out["update_other"] == "InsufficientPrivilege"  # no UPDATE at all
    assert int(psql(platform, f"SELECT count(*) FROM mt5_account_snapshots WHERE login = {other}")) > 0
    # Grafana's read-only role still reads every account.
    assert int(psql(platform, "SELECT count(DISTINCT login) FROM mt5_order_requests", "mt5_reader", "molecule-test-postgres-reader")) >= 2


def test_prometheus_scrapes_the_accounts_with_the_metrics_token(platform):
    token = platform.check_output("cat /etc/mt5farm/platform/prometheus/secrets/metrics_token")
    assert token == derived(KEY, "metrics_token", 1)
    digest = hashlib.sha256(token.encode()).hexdigest()
    for login in ACCOUNTS:
        assert on(HOST_OF[login]).file(f"/etc/mt5farm/secrets/{login}/metrics_token_sha256").content_string.strip() == digest
    config = platform.file("/etc/mt5farm/platform/prometheus/prometheus.yml").content_string
    assert "credentials_file: /etc/prometheus/secrets/metrics_token" in config and token not in config
