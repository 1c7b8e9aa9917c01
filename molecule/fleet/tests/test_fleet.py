"""The platform after site.yml: every account reached through Nginx, registered in Redis,
recorded in Postgres, scraped by Prometheus, and every dashboard and alert query answered.

Every client runs on the test host itself (host.run), against its loopback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time

import pytest

ACCOUNTS = [5001001, 5001002, 5001003]
KEY = "molecule-test-api-key-5f3c"
ONLY_5001001 = "molecule-key-of-5001001-only"
BURST_KEY = "molecule-burst-key-7a1d"
NGINX = "https://127.0.0.1"
PROMETHEUS = "http://127.0.0.1:9090"
SECRETS = [
    KEY,
    ONLY_5001001,
    BURST_KEY,
    "molecule-test-redis-password",
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
]


def derived(base: str, purpose: str, login: int) -> str:
    """An account's own credential (filter_plugins/mt5_credentials.py)."""
    digest = hmac.new(base.encode(), f"mt5farm:{purpose}:{login}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@pytest.fixture(autouse=True)
def logs_on_failure(request, host):
    """Print the platform containers' logs when a test fails, to see why."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name in PLATFORM + [f"mt5-{login}" for login in ACCOUNTS]:
            print(f"--- {name}\n" + host.run(f"docker logs --tail 20 {name} 2>&1").stdout)


def request(
    host, path: str, key: str | None = KEY, method: str = "GET", body: dict | None = None, header: str = "X-API-Key"
) -> tuple[int, dict]:
    """One HTTPS request through Nginx from the host itself: (status, JSON body)."""
    args = ["curl", "-sk", "-o", "/tmp/body", "-w", "%{http_code}", "-X", method]
    if key is not None:
        args += ["-H", f"{header}: {key}" if header == "X-API-Key" else f"Authorization: Bearer {key}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    status = host.check_output(" ".join(f"'{a}'" for a in args) + f" '{NGINX}{path}'")
    text = host.check_output("cat /tmp/body")
    return int(status), json.loads(text or "null")


def prometheus(host, path: str, **params: str) -> dict:
    query = " ".join(f"--data-urlencode '{k}={v}'" for k, v in params.items())
    return json.loads(host.check_output(f"curl -sf -G {PROMETHEUS}{path} {query}"))


# --- Nginx ------------------------------------------------------------------------------


@pytest.mark.parametrize("login", ACCOUNTS)
def test_each_account_answers_with_its_own_login_through_nginx(host, login):
    status, body = request(host, f"/accounts/{login}/api/account")
    assert status == 200 and body["login"] == login


def test_a_bearer_token_works_like_the_header(host):
    status, body = request(host, "/accounts/5001002/api/positions", header="Authorization")
    assert status == 200 and isinstance(body, list)


@pytest.mark.parametrize(
    ("path", "key", "status", "error"),
    [
        ("/accounts/5001001/api/account", None, 401, "unauthorized"),
        ("/accounts/5001001/api/account", "not-the-key-0123456789", 401, "unauthorized"),
        ("/accounts/5009999/api/account", KEY, 404, "not_found"),
        ("/nowhere", KEY, 404, "not_found"),
        ("/accounts/5001002/api/account", ONLY_5001001, 403, "forbidden"),
    ],
)
def test_refusals_are_json_with_a_message(host, path, key, status, error):
    answered, body = request(host, path, key)
    assert answered == status and body["error"] == error and body["message"]


def test_a_key_for_one_account_opens_that_account(host):
    status, body = request(host, "/accounts/5001001/api/account", ONLY_5001001)
    assert status == 200 and body["login"] == 5001001


def test_a_burst_beyond_the_keys_rate_gets_429_as_json(host):
    script = f"""
import concurrent.futures, json, ssl, urllib.error, urllib.request
ctx = ssl._create_unverified_context()
def one(_):
    req = urllib.request.Request("{NGINX}/accounts/5001003/api/account", headers={{"X-API-Key": "{BURST_KEY}"}})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, ""
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
with concurrent.futures.ThreadPoolExecutor(10) as pool:
    print(json.dumps(list(pool.map(one, range(40)))))
"""
    results = json.loads(host.check_output(f"python3 - <<'EOF'\n{script}\nEOF"))
    statuses = [status for status, _ in results]
    assert 200 in statuses and 429 in statuses, statuses
    assert json.loads(next(body for status, body in results if status == 429))["error"] == "rate_limited"


def test_http_redirects_to_https(host):
    assert (
        host.check_output("curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://127.0.0.1/accounts/5001001/api/account")
        == "308 https://127.0.0.1/accounts/5001001/api/account"
    )


def test_websocket_end_to_end_through_nginx(host):
    """Snapshot on connect, then the order placed through Nginx arrives as an update."""
    script = f"""
import asyncio, json, ssl, urllib.request
import websockets
ctx = ssl._create_unverified_context()
async def main():
    async with websockets.connect("wss://127.0.0.1/accounts/5001002/ws", ssl=ctx,
                                  extra_headers={{"X-API-Key": "{KEY}"}}) as ws:
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), 10))
        req = urllib.request.Request("{NGINX}/accounts/5001002/api/orders", method="POST",
                                     data=json.dumps({{"symbol": "BTCUSD", "type": "buy", "volume": 0.01}}).encode(),
                                     headers={{"X-API-Key": "{KEY}", "Content-Type": "application/json"}})
        order = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(req, context=ctx, timeout=10).read()))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] == "update" and "positions" in message:
                break
        print(json.dumps({{"snapshot": snapshot, "order": order, "update": message}}))
asyncio.run(main())
"""
    out = json.loads(host.check_output(f"python3 - <<'EOF'\n{script}\nEOF"))
    assert out["snapshot"]["type"] == "snapshot" and out["snapshot"]["account"]["login"] == 5001002
    assert out["order"]["retcode"] == 10009
    assert out["order"]["position"] in [p["ticket"] for p in out["update"]["positions"]["changed"]]


def test_the_access_log_is_json_with_request_and_upstream_time(host):
    request(host, "/accounts/5001001/api/account")
    time.sleep(2)  # the log is flushed every second
    lines = [
        json.loads(line) for line in host.check_output("docker logs --tail 50 mt5-nginx 2>/dev/null").splitlines() if line.startswith("{")
    ]
    proxied = [entry for entry in lines if entry["login"] == "5001001" and entry["status"] == 200]
    assert proxied, lines[-5:]
    assert isinstance(proxied[-1]["request_time"], float) and proxied[-1]["upstream_time"] and proxied[-1]["key"] == "fleet"
    assert all(KEY not in json.dumps(entry) for entry in lines)


# --- Redis and Postgres -----------------------------------------------------------------


def redis(host, command: str) -> str:
    return host.check_output(
        'docker exec mt5-redis sh -c \'REDISCLI_AUTH="$(cat /run/secrets/redis/password)" '
        f"redis-cli --no-auth-warning --user mt5-admin {command}'"
    )


def test_redis_has_every_account_registered(host):
    assert sorted(int(x) for x in redis(host, "smembers mt5:accounts").split()) == ACCOUNTS
    for login in ACCOUNTS:
        entry = json.loads(redis(host, f"get mt5:account:{login}"))
        assert entry["endpoint"] == f"http://127.0.0.1:{20000 + login % 10000}"
        assert 0 < int(redis(host, f"ttl mt5:account:{login}")) <= 30


def test_redis_wants_its_password_keeps_an_aof_and_is_not_published(host):
    assert "NOAUTH" in host.check_output("docker exec mt5-redis redis-cli ping")
    # No default user: the admin's password alone (the old requirepass way) opens nothing.
    assert "NOAUTH" in host.check_output(f"docker exec -e REDISCLI_AUTH={REDIS_BASE} mt5-redis redis-cli --no-auth-warning ping 2>&1")
    assert redis(host, "config get appendonly").split() == ["appendonly", "yes"]
    assert int(redis(host, "config get maxmemory").split()[1]) > 0
    inspect = json.loads(host.check_output("docker inspect mt5-redis"))[0]
    assert not inspect["HostConfig"]["PortBindings"]


def psql(host, sql: str, user: str = "postgres", password: str | None = None) -> str:
    env = f"-e PGPASSWORD={password} " if password else ""
    where = "-h 127.0.0.1 " if password else ""
    return host.check_output(f'docker exec {env}mt5-postgres psql {where}-U {user} -d mt5farm -At -c "{sql}"')


def test_postgres_has_the_orders_placed_through_nginx(host):
    placed = []
    for login in ACCOUNTS:
        status, body = request(
            host,
            f"/accounts/{login}/api/orders",
            method="POST",
            body={"symbol": "BTCUSD", "type": "buy", "volume": 0.01, "comment": f"via nginx {login}"},
        )
        assert status == 201, body
        placed.append((login, body["order"]))
    for _ in range(30):
        rows = psql(host, "SELECT login, result->>'order' FROM mt5_order_requests WHERE request->>'comment' LIKE 'via nginx %'")
        found = {(int(a), int(b)) for a, b in (line.split("|") for line in rows.splitlines())}
        if set(placed) <= found:
            break
        time.sleep(1)
    assert set(placed) <= found


def test_postgres_roles_have_least_privilege(host):
    password = derived(WRITER_BASE, "postgres_password", 5001001)
    cannot = host.run(
        f"docker exec -e PGPASSWORD={password} mt5-postgres psql -h 127.0.0.1 -U mt5_account_5001001 -d mt5farm -c "
        "'CREATE TABLE stolen (x int)'"
    )
    assert cannot.rc != 0 and "may not create" in cannot.stderr
    assert (
        host.run(
            f"docker exec -e PGPASSWORD={password} mt5-postgres psql -h 127.0.0.1 -U mt5_account_5001001 -d mt5farm -c "
            "'DELETE FROM mt5_order_requests'"
        ).rc
        != 0
    )
    # The writer is the accounts' group: nobody logs in as it, with its base password or any.
    assert (
        host.run(f"docker exec -e PGPASSWORD={WRITER_BASE} mt5-postgres psql -h 127.0.0.1 -U mt5_writer -d mt5farm -c 'SELECT 1'").rc != 0
    )
    reader = host.run(
        "docker exec -e PGPASSWORD=molecule-test-postgres-reader mt5-postgres psql -h 127.0.0.1 -U mt5_reader "
        "-d mt5farm -c 'INSERT INTO mt5_deals (login) VALUES (1)'"
    )
    assert reader.rc != 0 and "permission denied" in reader.stderr
    assert psql(host, "SELECT count(*) FROM mt5_order_requests", "mt5_reader", "molecule-test-postgres-reader").isdigit()


def test_postgres_is_published_on_loopback_only(host):
    inspect = json.loads(host.check_output("docker inspect mt5-postgres"))[0]
    assert inspect["HostConfig"]["PortBindings"]["5432/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "5432"}]


def test_backups_are_scheduled(host):
    assert host.service("mt5farm-postgres-backup.timer").is_enabled
    assert host.file("/var/backups/mt5farm/postgres").mode == 0o700


# --- secrets ----------------------------------------------------------------------------


def test_no_secret_in_docker_inspect_or_the_environment(host):
    names = " ".join(PLATFORM)
    inspect = host.check_output(f"docker inspect {names}")
    for secret in SECRETS:
        assert secret not in inspect
    for name in ["mt5-redis", "mt5-postgres", "mt5-nginx", "mt5-prometheus"]:
        environ = host.check_output(f"docker exec {name} cat /proc/1/environ")
        assert not any(secret in environ for secret in SECRETS), name


def test_secret_files_are_readable_by_their_service_only(host):
    for path, uid in [
        ("/etc/mt5farm/platform/redis/secrets/users.acl", 999),
        ("/etc/mt5farm/platform/prometheus/secrets/metrics_token", 65534),
        ("/etc/mt5farm/platform/postgres/secrets/superuser_password", 999),
        ("/etc/mt5farm/platform/nginx/live/secrets/api_keys.conf", 0),
        ("/etc/mt5farm/platform/nginx/live/tls/key.pem", 0),
        ("/etc/mt5farm/platform/postgres-exporter/password", 65534),
    ]:
        secret = host.file(path)
        assert secret.uid == uid and secret.mode in (0o400, 0o600), path


# --- Prometheus and the queries of the dashboards and alert rules -----------------------


def test_promtool_accepts_the_config_and_the_rules(host):
    host.check_output("docker exec mt5-prometheus promtool check config /etc/prometheus/prometheus.yml")
    host.check_output("docker exec mt5-prometheus promtool check rules /etc/prometheus/rules/mt5farm.yml")


def test_prometheus_keeps_30_days(host):
    flags = prometheus(host, "/api/v1/status/flags")["data"]
    assert flags["storage.tsdb.retention.time"] == "30d"


def test_every_target_is_up_with_its_labels(host):
    for _ in range(30):
        targets = prometheus(host, "/api/v1/targets")["data"]["activeTargets"]
        if targets and all(t["health"] == "up" for t in targets):
            break
        time.sleep(2)
    assert all(t["health"] == "up" for t in targets), [(t["scrapeUrl"], t["lastError"]) for t in targets if t["health"] != "up"]
    accounts = {t["labels"]["login"]: t["labels"] for t in targets if t["labels"]["job"] == "mt5-accounts"}
    assert sorted(map(int, accounts)) == ACCOUNTS
    assert all(labels["server"] == "Simulator-Demo" and labels["host"] == "mt5-platform-debian12" for labels in accounts.values())
    jobs = {(t["labels"]["job"], t["labels"].get("service")) for t in targets}
    assert {("node", None), ("prometheus", None), ("platform", "redis"), ("platform", "postgres"), ("platform", "nginx")} <= jobs


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


def test_every_dashboard_and_alert_query_returns_data(host):
    """Grafana cannot run here: its dashboards are proved by running their queries."""
    for login in ACCOUNTS:  # traffic, so that rates and quantiles have samples
        request(host, f"/accounts/{login}/api/account")
        request(host, f"/accounts/{login}/api/positions")
    rules = prometheus(host, "/api/v1/rules")["data"]["groups"]
    queries = [(f"alert {r['name']}", r["annotations"]["value_query"]) for g in rules for r in g["rules"]]
    assert len(queries) >= 6
    queries += dashboard_queries(host)
    empty = []
    for name, query in queries:
        for _ in range(12):  # rates need two scrapes, the container metrics a collector run
            if query.startswith("label_values("):
                label = re.match(r"label_values\((\w+), (\w+)\)", query)
                values = prometheus(host, f"/api/v1/label/{label[2]}/values", **{"match[]": label[1]})["data"]
                answered = bool(values)
            else:
                answered = bool(prometheus(host, "/api/v1/query", query=grafana_to_promql(query))["data"]["result"])
            if answered:
                break
            time.sleep(5)
        else:
            empty.append((name, query))
    assert not empty, empty


def test_the_sql_panel_answers_for_the_read_only_role(host):
    for path in host.check_output("ls /etc/mt5farm/platform/grafana/dashboards/*.json").split():
        for panel in json.loads(host.file(path).content_string)["panels"]:
            for target in panel["targets"]:
                if "rawSql" in target:
                    sql = target["rawSql"].replace("$login", str(ACCOUNTS[0])).replace('"', '\\"')
                    rows = psql(host, sql, "mt5_reader", "molecule-test-postgres-reader")
                    assert rows.strip(), target["rawSql"]


def test_grafana_is_left_out_and_the_run_says_how_to_supply_it(host):
    assert host.run("docker inspect mt5-grafana").rc != 0
    assert host.file("/etc/mt5farm/platform/grafana/dashboards/mt5-account.json").exists


# --- least privilege per account: what one account container's credentials open --------


def in_account(host, login: int, script: str) -> dict:
    """Run Python in an account container (as its user, with its secret files) and return its JSON."""
    return json.loads(host.check_output(f"docker exec -i mt5-{login} /opt/mt5farm/venv/bin/python - <<'EOF'\n{script}\nEOF"))


def test_an_accounts_key_opens_that_account_and_no_other(host):
    script = """
import json, urllib.error, urllib.request
key = open("/run/secrets/mt5/api_key").read().strip()
def status(url):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"X-API-Key": key}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
print(json.dumps({"own": status("http://127.0.0.1:8000/api/account"), "other": status("http://mt5-5001002:8000/api/account")}))
"""
    assert in_account(host, 5001001, script) == {"own": 200, "other": 401}
    assert host.file("/etc/mt5farm/secrets/5001001/api_key").content_string.strip() == derived(KEY, "api_key", 5001001)
    assert KEY not in host.check_output("cat /etc/mt5farm/secrets/*/api_key")


def test_an_accounts_redis_user_reaches_its_own_registration_only(host):
    script = """
import json, os, redis
r = redis.Redis.from_url(os.environ["REDIS_URL"], password=open("/run/secrets/mt5/redis_password").read().strip())
def attempt(name, *args):
    try:
        r.execute_command(*args)
        return "ok"
    except redis.exceptions.ResponseError as e:  # NOPERM: NoPermissionError
        return type(e).__name__
out = {"user": os.environ["REDIS_URL"], "ping": attempt("ping", "PING"), "own": attempt("own", "SET", "mt5:account:5001001", "{}", "EX", "30"),
       "set": attempt("set", "SADD", "mt5:accounts", "5001001")}
for name, args in {"get_other": ("GET", "mt5:account:5001002"), "set_other": ("SET", "mt5:account:5001002", "x"),
                   "del_other": ("DEL", "mt5:account:5001002"), "get_own": ("GET", "mt5:account:5001001"),
                   "flushall": ("FLUSHALL",), "config": ("CONFIG", "GET", "*"), "keys": ("KEYS", "*"),
                   "smembers": ("SMEMBERS", "mt5:accounts")}.items():
    out[name] = attempt(name, *args)
print(json.dumps(out))
"""
    out = in_account(host, 5001001, script)
    assert out.pop("user") == "redis://mt5-account-5001001@mt5-redis:6379/0"
    assert {k: out.pop(k) for k in ["ping", "own", "set"]} == {"ping": "ok", "own": "ok", "set": "ok"}
    assert set(out.values()) == {"NoPermissionError"}, out
    assert sorted(int(x) for x in redis(host, "smembers mt5:accounts").split()) == ACCOUNTS


def test_an_accounts_postgres_role_sees_and_writes_its_own_rows_only(host):
    request(
        host, "/accounts/5001002/api/orders", method="POST", body={"symbol": "BTCUSD", "type": "buy", "volume": 0.01, "comment": "other"}
    )
    script = """
import json, os, psycopg
out = {}
with psycopg.connect(os.environ["DATABASE_URL"], password=open("/run/secrets/mt5/postgres_password").read().strip(), autocommit=True) as c:
    out["user"] = c.execute("SELECT session_user").fetchone()[0]
    for table in ["mt5_order_requests", "mt5_deals", "mt5_account_snapshots"]:
        out[table] = c.execute(f"SELECT count(*) FILTER (WHERE login = 5001001), count(*) FILTER (WHERE login <> 5001001) FROM {table}").fetchone()
    c.execute("SET ROLE mt5_writer")
    out["as_group"] = c.execute("SELECT count(*) FROM mt5_order_requests WHERE login <> 5001001").fetchone()[0]
    c.execute("RESET ROLE")
    for name, sql in {"insert_other": "INSERT INTO mt5_account_snapshots (record_id, login, taken_at, balance, equity, margin, margin_free,"
                                      " margin_level, profit, positions, orders, raw) VALUES (gen_random_uuid(), 5001002, now(),"
                                      " 0, 0, 0, 0, 0, 0, 0, 0, '{}')",
                      "delete_other": "DELETE FROM mt5_account_snapshots WHERE login = 5001002",
                      "update_other": "UPDATE mt5_order_requests SET http_status = 0 WHERE login = 5001002"}.items():
        try:
            cur = c.execute(sql)
            out[name] = f"ok {cur.rowcount}"
        except psycopg.Error as e:
            out[name] = type(e).__name__
print(json.dumps(out))
"""
    for _ in range(30):  # the order of 5001002 and a snapshot of 5001001 reach Postgres
        if int(psql(host, "SELECT count(*) FROM mt5_order_requests WHERE login = 5001002")) and int(
            psql(host, "SELECT count(*) FROM mt5_account_snapshots WHERE login = 5001001")
        ):
            break
        time.sleep(1)
    out = in_account(host, 5001001, script)
    assert out["user"] == "mt5_account_5001001"
    assert out["mt5_order_requests"][0] > 0 and out["mt5_account_snapshots"][0] > 0
    assert [out[t][1] for t in ["mt5_order_requests", "mt5_deals", "mt5_account_snapshots"]] == [0, 0, 0]
    assert out["as_group"] == 0
    assert out["insert_other"] == "InsufficientPrivilege"  # new row violates row-level security policy
    assert out["delete_other"] == "ok 0"  # DELETE is granted (its own old snapshots), other rows are invisible
    assert out["update_other"] == "InsufficientPrivilege"  # no UPDATE at all
    assert int(psql(host, "SELECT count(*) FROM mt5_account_snapshots WHERE login = 5001002")) > 0
    # Grafana's read-only role still reads every account.
    assert int(psql(host, "SELECT count(DISTINCT login) FROM mt5_order_requests", "mt5_reader", "molecule-test-postgres-reader")) >= 2


def test_prometheus_scrapes_the_accounts_with_the_metrics_token(host):
    token = host.check_output("cat /etc/mt5farm/platform/prometheus/secrets/metrics_token")
    assert token == derived(KEY, "metrics_token", 1)
    digest = hashlib.sha256(token.encode()).hexdigest()
    for login in ACCOUNTS:
        assert host.file(f"/etc/mt5farm/secrets/{login}/metrics_token_sha256").content_string.strip() == digest
    config = host.file("/etc/mt5farm/platform/prometheus/prometheus.yml").content_string
    assert "credentials_file: /etc/prometheus/secrets/metrics_token" in config and token not in config
