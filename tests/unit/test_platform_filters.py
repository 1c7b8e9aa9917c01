"""The platform filters: the whole inventory as Nginx routes, scrape targets, wiring and API keys."""

from __future__ import annotations

import re

import pytest

from mt5farm import platform
from mt5farm.errors import FarmError

GROUPS = {"mt5_linux": ["farm-01", "farm-02"], "mt5_windows": ["win-01"], "platform": ["farm-01"]}


def hosts(**overrides):
    view = {
        "farm-01": {
            "mt5_bind_address": "10.0.0.11",
            "mt5_accounts": [
                {"login": 5001002, "server": "Demo", "backend": "simulator"},
                {"login": 5001001, "server": "Demo", "vnc": True, "vnc_password": "x"},
                {"login": 5001009, "server": "Demo", "enabled": False},
            ],
        },
        "farm-02": {"mt5_bind_address": "10.0.0.12", "mt5_accounts": [{"login": 7000123, "server": "Live", "api_port": 25000}]},
        "win-01": {"mt5_bind_address": "10.0.0.21", "mt5_accounts": [{"login": 8000001, "server": "Live"}]},
        "monitor-only": {"mt5_accounts": [{"login": 1, "server": "x"}]},
    }
    view.update(overrides)
    return view


# --- mt5_platform_accounts --------------------------------------------------------------


def test_accounts_cover_every_farm_host_sorted_by_login_with_the_units_ports():
    accounts = platform.mt5_platform_accounts(hosts(), GROUPS)
    assert [(a["login"], a["host"], a["address"], a["api_port"], a["vnc_port"]) for a in accounts] == [
        (5001001, "farm-01", "10.0.0.11", 21001, 31001),
        (5001002, "farm-01", "10.0.0.11", 21002, None),
        (7000123, "farm-02", "10.0.0.12", 25000, None),
        (8000001, "win-01", "10.0.0.21", 20001, None),
    ]
    assert accounts[0]["upstream"] == "mt5_5001001"
    assert accounts[1]["backend"] == "simulator"


def test_disabled_accounts_and_hosts_outside_the_farm_groups_are_left_out():
    logins = [a["login"] for a in platform.mt5_platform_accounts(hosts(), GROUPS)]
    assert 5001009 not in logins and 1 not in logins


def test_bind_address_defaults_to_loopback():
    view = hosts()
    del view["farm-02"]["mt5_bind_address"]
    accounts = platform.mt5_platform_accounts(view, GROUPS)
    assert next(a for a in accounts if a["login"] == 7000123)["address"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("view", "groups", "message"),
    [
        ("farm-01", GROUPS, "hosts must map host names"),
        (hosts(**{"farm-02": {"mt5_accounts": [{"login": 5001001, "server": "Demo"}]}}), GROUPS, "login 5001001 is on both"),
        (hosts(), ["mt5_linux"], "groups must be the inventory"),
        (hosts(**{"farm-02": {"mt5_accounts": [{"login": "7", "server": "x"}]}}), GROUPS, "positive integer login"),
    ],
)
def test_accounts_errors_name_the_filter_and_the_problem(view, groups, message):
    with pytest.raises(FarmError, match=message):
        platform.mt5_platform_accounts(view, groups)


# --- scrape targets ---------------------------------------------------------------------


def test_account_targets_carry_login_server_and_host():
    targets = platform.mt5_platform_account_targets(platform.mt5_platform_accounts(hosts(), GROUPS))
    assert targets[0] == {"targets": ["10.0.0.11:21001"], "labels": {"login": "5001001", "server": "Demo", "host": "farm-01"}}
    assert len(targets) == 4


def test_account_targets_want_a_list():
    with pytest.raises(FarmError, match="mt5_platform_account_targets"):
        platform.mt5_platform_account_targets({"login": 1})
    with pytest.raises(FarmError, match="https_hosts must be a list"):
        platform.mt5_platform_account_targets([], "farm-01")


def test_account_targets_of_https_hosts_are_scraped_over_https():
    targets = platform.mt5_platform_account_targets(platform.mt5_platform_accounts(hosts(), GROUPS), ["farm-01", "farm-02"])
    assert [(t["labels"]["host"], t["labels"].get("__scheme__")) for t in targets] == [
        ("farm-01", "https"),
        ("farm-01", "https"),
        ("farm-02", "https"),
        ("win-01", None),  # Windows account services serve plain HTTP
    ]


def test_node_targets_cover_linux_farm_hosts_and_the_platform_host_once():
    groups = {"mt5_linux": ["farm-01", "farm-02"], "platform": ["farm-01", "db-01"]}
    view = hosts(**{"db-01": {"mt5_bind_address": "10.0.0.5"}})
    assert platform.mt5_platform_node_targets(view, groups, 9100) == [
        {"targets": ["10.0.0.5:9100"], "labels": {"host": "db-01"}},
        {"targets": ["10.0.0.11:9100"], "labels": {"host": "farm-01"}},
        {"targets": ["10.0.0.12:9100"], "labels": {"host": "farm-02"}},
    ]


@pytest.mark.parametrize(
    ("groups", "port", "message"),
    [(GROUPS, 0, "port must be a TCP port"), ({"mt5_linux": ["ghost"]}, 9100, "no variables given for host 'ghost'")],
)
def test_node_targets_errors(groups, port, message):
    with pytest.raises(FarmError, match=message):
        platform.mt5_platform_node_targets(hosts(), groups, port)


# --- wiring of the account containers ---------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "farm_host", "expected"),
    [
        ("redis", "farm-01", "redis://mt5-redis:6379/0"),
        ("postgres", "farm-01", "postgresql://mt5_writer@mt5-postgres:5432/mt5farm"),
        ("redis", "farm-02", "redis://10.0.0.11:6379/0"),
        ("postgres", "farm-02", "postgresql://mt5_writer@10.0.0.11:5432/mt5farm"),
    ],
)
def test_url_is_the_container_name_on_the_platform_host_and_its_address_elsewhere(kind, farm_host, expected):
    assert platform.mt5_platform_url(GROUPS, kind, farm_host, hosts()) == expected


def test_url_reads_the_platform_address_ports_and_database():
    view = hosts()
    view["farm-01"].update(
        mt5_platform_address="10.9.9.9",
        mt5_platform_redis_port=16379,
        mt5_platform_postgres_port=15432,
        mt5_platform_postgres_database="fund",
    )
    assert platform.mt5_platform_url(GROUPS, "redis", "farm-02", view) == "redis://10.9.9.9:16379/0"
    assert platform.mt5_platform_url(GROUPS, "postgres", "farm-02", view) == "postgresql://mt5_writer@10.9.9.9:15432/fund"


@pytest.mark.parametrize(
    ("kind", "farm_host", "expected"),
    [
        ("redis", "farm-01", "rediss://mt5-redis:6379/0"),
        ("postgres", "farm-01", "postgresql://mt5_writer@mt5-postgres:5432/mt5farm?sslmode=verify-full"),
        ("redis", "farm-02", "rediss://10.0.0.11:6379/0"),
        ("postgres", "farm-02", "postgresql://mt5_writer@10.0.0.11:5432/mt5farm?sslmode=verify-full"),
    ],
)
def test_url_with_tls_asks_for_tls_and_a_verified_server(kind, farm_host, expected):
    assert platform.mt5_platform_url(GROUPS, kind, farm_host, hosts(), True) == expected


def test_url_tls_must_be_a_boolean():
    with pytest.raises(FarmError, match="tls must be true or false, got 'yes'"):
        platform.mt5_platform_url(GROUPS, "redis", "farm-02", hosts(), "yes")


def test_url_is_empty_without_a_platform_host():
    assert platform.mt5_platform_url({"mt5_linux": ["farm-01"], "platform": []}, "redis", "farm-01", hosts()) == ""


@pytest.mark.parametrize(
    ("kind", "view", "message"),
    [
        ("mongo", hosts(), "kind must be one of"),
        ("redis", hosts(**{"farm-01": {"mt5_accounts": []}}), "cannot reach redis on the platform host farm-01 at 127.0.0.1"),
    ],
)
def test_url_errors(kind, view, message):
    with pytest.raises(FarmError, match=message):
        platform.mt5_platform_url(GROUPS, kind, "farm-02", view)


# --- API keys ---------------------------------------------------------------------------

ACCOUNTS = [{"login": 5001001}, {"login": 5001002}]


def test_a_string_of_keys_is_fleet_wide_one_per_line():
    keys = platform.mt5_platform_api_keys("first-key-0123456789\n\n second-key-0123456789 \n", ACCOUNTS)
    assert [(k["name"], k["key"], k["scope"], k["zone"]) for k in keys] == [
        ("fleet-1", "first-key-0123456789", "*", "mt5_key_100r_per_s_b200"),
        ("fleet-2", "second-key-0123456789", "*", "mt5_key_100r_per_s_b200"),
    ]


def test_keys_per_account_rate_and_burst():
    keys = platform.mt5_platform_api_keys(
        [
            {"name": "fund-a", "key": "fund-a-key-0123456789", "accounts": [5001002, 5001001], "rate": "20r/s", "burst": 5},
            {"name": "bench", "key": "bench-key-0123456789", "rate": "off"},
            {"name": "dashboard", "key": "dashboard-key-0123456789", "access": "read"},
        ],
        ACCOUNTS,
        "50r/s",
        10,
    )
    assert keys[0]["scope"] == ",5001001,5001002," and keys[0]["zone"] == "mt5_key_20r_per_s_b5"
    assert keys[1]["scope"] == "*" and keys[1]["zone"] == "" and keys[1]["rate"] == "off"
    assert [k["access"] for k in keys] == ["trade", "trade", "read"]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (42, "keys must be a list"),
        (["x"], "entry 1 must be a mapping"),
        ([{"name": "bad name", "key": "k" * 20}], "name 'bad name' must be unique"),
        ([{"name": "a", "key": "short"}], "key 'a' must be 16-256 characters"),
        ([{"name": "a", "key": "~regex-looking-key-123"}], "not starting with ~"),
        ([{"name": "a", "key": "has space in the key 0123"}], "key 'a' must be"),
        ([{"name": "a", "key": "k" * 20}, {"name": "b", "key": "k" * 20}], "repeats another key"),
        ([{"name": "a", "key": "k" * 20}, {"name": "a", "key": "j" * 20}], "must be unique"),
        ([{"name": "a", "key": "k" * 20, "accounts": [9]}], r"names accounts no host carries: \[9\]"),
        ([{"name": "a", "key": "k" * 20, "accounts": "5001001"}], "accounts must be"),
        ([{"name": "a", "key": "k" * 20, "rate": "fast"}], "rate must be like"),
        ([{"name": "a", "key": "k" * 20, "burst": -1}], "burst must be"),
        ([{"name": "a", "key": "k" * 20, "access": "write"}], 'access must be "trade" or "read"'),
        ("", "no API key given"),
    ],
)
def test_key_errors_never_show_the_key(keys, message):
    with pytest.raises(FarmError, match=message) as caught:
        platform.mt5_platform_api_keys(keys, ACCOUNTS)
    assert "k" * 20 not in str(caught.value) and "regex-looking" not in str(caught.value)


# --- mt5_platform_nginx_connections -----------------------------------------------------


@pytest.mark.parametrize(
    "accounts,keepalive,base,connections",
    [(0, 4, 4096, 4096), (10, 4, 4096, 4136), (5000, 4, 4096, 24096), (5000, 16, 4096, 84096), (3, 0, 512, 512)],
)
def test_nginx_connections_leave_every_account_its_keep_alive_pool_in_each_worker(accounts, keepalive, base, connections):
    # 5,000 accounts with the old fixed 4096 ran out within 20 s of spread traffic (bench/fleet).
    assert platform.mt5_platform_nginx_connections(accounts, keepalive, base) == {
        "worker_connections": connections,
        "rlimit_nofile": connections + platform.NGINX_SPARE_FILES,
    }


@pytest.mark.parametrize(
    "accounts,keepalive,base,message",
    [
        (-1, 4, 4096, "accounts must be a whole number >= 0, got -1"),
        (10, "4", 4096, "keepalive must be a whole number >= 0, got '4'"),
        (10, 4, True, "base must be a whole number >= 0, got True"),
        (10, 4, 0, "base (platform_nginx_worker_connections) must be above 0"),
    ],
)
def test_nginx_connections_errors(accounts, keepalive, base, message):
    with pytest.raises(FarmError, match=r"^mt5_platform_nginx_connections: " + re.escape(message)):
        platform.mt5_platform_nginx_connections(accounts, keepalive, base)


# --- Grafana dashboards -----------------------------------------------------------------

SPEC = {
    "uid": "mt5-test",
    "title": "Test",
    "variables": [{"name": "login", "query": "label_values(mt5_account_info, login)"}],
    "panels": [
        {"title": "Up", "type": "stat", "width": 12, "targets": [{"expr": "up"}]},
        {"title": "Rate", "width": 16, "targets": [{"expr": "rate(x[1m])", "legend": "{{login}}"}]},
        {"title": "Orders", "type": "table", "datasource": "postgres", "width": 24, "targets": [{"sql": "SELECT 1"}]},
    ],
}
SOURCES = {"prometheus": "prom-uid", "postgres": "pg-uid"}


def test_dashboard_lays_panels_out_in_rows_and_points_at_the_datasources():
    dashboard = platform.mt5_grafana_dashboard(SPEC, SOURCES)
    assert [p["gridPos"] for p in dashboard["panels"]] == [
        {"x": 0, "y": 0, "w": 12, "h": 8},
        {"x": 0, "y": 8, "w": 16, "h": 8},
        {"x": 0, "y": 16, "w": 24, "h": 8},
    ]
    stat, rate, table = dashboard["panels"]
    assert stat["targets"][0] == {
        "refId": "A",
        "datasource": {"type": "prometheus", "uid": "prom-uid"},
        "expr": "up",
        "legendFormat": "__auto",
        "instant": True,
        "range": False,
    }
    assert rate["targets"][0]["legendFormat"] == "{{login}}" and rate["targets"][0]["range"] is True
    assert table["targets"][0]["rawSql"] == "SELECT 1" and table["datasource"]["type"] == "grafana-postgresql-datasource"
    assert dashboard["templating"]["list"][0]["query"]["query"] == "label_values(mt5_account_info, login)"
    assert dashboard["uid"] == "mt5-test" and dashboard["editable"] is False


@pytest.mark.parametrize(
    ("spec", "sources", "message"),
    [
        ({"title": "x", "panels": []}, SOURCES, "mapping with uid and title"),
        ({"uid": "u", "title": "x", "panels": []}, SOURCES, "panels must be a non-empty list"),
        ({"uid": "u", "title": "x", "panels": [{"type": "pie", "targets": [{"expr": "up"}]}]}, SOURCES, "type must be timeseries"),
        ({"uid": "u", "title": "x", "panels": [{"targets": [{"legend": "a"}]}]}, SOURCES, "every target needs an expr"),
        ({"uid": "u", "title": "x", "panels": [{"datasource": "postgres", "targets": [{"expr": "up"}]}]}, SOURCES, "needs a sql"),
        ({"uid": "u", "title": "x", "panels": [{"datasource": "loki", "targets": [{"expr": "up"}]}]}, SOURCES, "datasource 'loki'"),
        ({"uid": "u", "title": "x", "panels": [{"width": 30, "targets": [{"expr": "up"}]}]}, SOURCES, "width must be 1-24"),
        (SPEC, {"postgres": "pg"}, "datasources must map prometheus"),
    ],
)
def test_dashboard_errors(spec, sources, message):
    with pytest.raises(FarmError, match=message):
        platform.mt5_grafana_dashboard(spec, sources)


def test_the_role_dashboards_and_alert_rules_are_well_formed():
    """The monitoring role's own data goes through the filter, and every rule names its parts."""
    from pathlib import Path

    import yaml

    files = Path(__file__).resolve().parents[2] / "roles" / "monitoring" / "files"
    for spec in yaml.safe_load((files / "dashboards.yml").read_text()):
        assert platform.mt5_grafana_dashboard(spec, {"prometheus": "p", "postgres": "q"})["panels"]
    thresholds = yaml.safe_load((files.parent / "defaults" / "main.yml").read_text())["monitoring_alert_thresholds"]
    for rule in yaml.safe_load((files / "alert_rules.yml").read_text()):
        assert {"alert", "query", "op", "threshold", "for", "severity", "summary"} <= set(rule)
        assert rule["op"] in ("==", "!=", "<", ">", "<=", ">=")
        assert not isinstance(rule["threshold"], str) or rule["threshold"] in thresholds


# --- the fleet status report's accounts file ------------------------------------------------


def test_fleet_status_accounts_list_every_account_disabled_too_with_its_url():
    accounts = platform.mt5_fleet_status_accounts(hosts(), GROUPS, ["farm-01"])
    assert accounts == [
        {"login": 5001001, "server": "Demo", "host": "farm-01", "url": "https://10.0.0.11:21001", "enabled": True},
        {"login": 5001002, "server": "Demo", "host": "farm-01", "url": "https://10.0.0.11:21002", "enabled": True},
        {"login": 5001009, "server": "Demo", "host": "farm-01", "url": "https://10.0.0.11:21009", "enabled": False},
        {"login": 7000123, "server": "Live", "host": "farm-02", "url": "http://10.0.0.12:25000", "enabled": True},
        {"login": 8000001, "server": "Live", "host": "win-01", "url": "http://10.0.0.21:20001", "enabled": True},
    ]


def test_fleet_status_accounts_of_some_hosts_only_and_ipv6_addresses():
    view = {"farm-02": {"mt5_bind_address": "fd00::12", "mt5_accounts": [{"login": 7000123, "server": "Live"}]}}
    assert platform.mt5_fleet_status_accounts(view, GROUPS) == [
        {"login": 7000123, "server": "Live", "host": "farm-02", "url": "http://[fd00::12]:20123", "enabled": True}
    ]


@pytest.mark.parametrize(
    ("view", "https_hosts", "message"),
    [("farm-01", None, "hosts must map host names"), (hosts(), "farm-01", "https_hosts must be a list")],
)
def test_fleet_status_accounts_errors_name_the_filter(view, https_hosts, message):
    with pytest.raises(FarmError, match=f"mt5_fleet_status_accounts: {message}"):
        platform.mt5_fleet_status_accounts(view, GROUPS, https_hosts)


# --- mt5_postgres_account_roles ---------------------------------------------------------------

PENCIL = (
    "SCRAM-SHA-256$4096:vYnE+sbeuCOwJoRAOSCo9w==$ka2is1oEoEq3onA3RCAJA4Zs3W9wpN9cZ67N1/mGsj0=:g9y1Qfd3FlkX2QZGWWdZYm/ehP8HVPA6VnQ0urdcitQ="
)


def role_row(name, password=PENCIL, member=True, **attributes):
    return {"rolname": name, "rolpassword": password, "member": member, **platform.ACCOUNT_ROLE_ATTRIBUTES, **attributes}


def test_account_roles_that_match_are_left_alone():
    found = [role_row("mt5_account_5001001"), role_row("mt5_account_5001002")]
    wanted = {"mt5_account_5001001": "pencil", "mt5_account_5001002": "pencil"}
    assert platform.mt5_postgres_account_roles(found, wanted) == {"set": [], "join": [], "drop": []}


def test_account_roles_missing_differing_or_gone_are_named():
    found = [
        role_row("mt5_account_5001001", password="SCRAM-SHA-256$4096:AAAA$AAAA:AAAA"),  # another password
        role_row("mt5_account_5001002", rolsuper=True),  # other attributes
        role_row("mt5_account_5001003", member=False),  # not in the writer group
        role_row("mt5_account_5001004", password=None),  # no password
        role_row("mt5_account_5001009"),  # an account that went away
    ]
    wanted = {f"mt5_account_500100{n}": "pencil" for n in (1, 2, 3, 4, 5)}
    assert platform.mt5_postgres_account_roles(found, wanted) == {
        "set": ["mt5_account_5001001", "mt5_account_5001002", "mt5_account_5001004", "mt5_account_5001005"],
        "join": ["mt5_account_5001003", "mt5_account_5001005"],
        "drop": ["mt5_account_5001009"],
    }


def test_no_account_role_yet_is_an_empty_query_result():
    # community.postgresql's postgresql_query returns {} as query_result for no row (a fresh
    # Postgres): every account's role is to be made.
    for none in ({}, []):
        assert platform.mt5_postgres_account_roles(none, {"mt5_account_5001001": "pencil"}) == {
            "set": ["mt5_account_5001001"],
            "join": ["mt5_account_5001001"],
            "drop": [],
        }


def test_a_rotated_writer_secret_sets_every_role_again():
    found = [role_row("mt5_account_5001001"), role_row("mt5_account_5001002")]
    wanted = {"mt5_account_5001001": "rotated", "mt5_account_5001002": "rotated"}
    assert platform.mt5_postgres_account_roles(found, wanted)["set"] == ["mt5_account_5001001", "mt5_account_5001002"]


@pytest.mark.parametrize(("found", "wanted"), [({"rolname": "x"}, {}), ([{"name": "x"}], {}), ([], ["mt5_account_1"]), ("rows", {})])
def test_account_roles_of_the_wrong_shape_fail_clearly(found, wanted):
    with pytest.raises(FarmError, match="mt5_postgres_account_roles"):
        platform.mt5_postgres_account_roles(found, wanted)
