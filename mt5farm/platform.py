"""The platform services' view of the whole inventory: routes, scrape targets, wiring, API keys.

Every account is reached at the host and port the account model gives
(``mt5farm.accounts.mt5_resolved_accounts``, never recomputed here): its host's ``mt5_bind_address`` (default
127.0.0.1) and its ``api_port`` / ``vnc_port``. The platform roles call these filters once,
with the variables of every farm host:

    {{ dict(_farm | zip(_farm | map('extract', hostvars))) | mt5_platform_accounts(groups) }}

and the account containers get their Redis/Postgres URLs from ``mt5_platform_url``.
Pure functions: no Ansible state, errors name the filter and the bad value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from mt5farm.accounts import OS_GROUPS, mt5_resolved_accounts
from mt5farm.credentials import scram_sha256_matches
from mt5farm.errors import FarmError

# Container names of the platform services. Fixed, so that account containers on the
# platform host can reach Redis and Postgres by name on the accounts' Docker network.
CONTAINERS: dict[str, str] = {
    "nginx": "mt5-nginx",
    "redis": "mt5-redis",
    "postgres": "mt5-postgres",
    "prometheus": "mt5-prometheus",
    "grafana": "mt5-grafana",
    "node_exporter": "mt5-node-exporter",
    "redis_exporter": "mt5-redis-exporter",
    "postgres_exporter": "mt5-postgres-exporter",
}
# Ports inside the containers (the image contract), whatever is published.
SERVICE_PORTS: dict[str, int] = {"redis": 6379, "postgres": 5432}
# Fleet defaults the account wiring and the platform roles share.
DEFAULT_DATABASE = "mt5farm"
WRITER_ROLE = "mt5_writer"
# API keys go into Nginx map strings: keep them to characters that need no quoting.
KEY_RE = re.compile(r"^[A-Za-z0-9._+/=-][A-Za-z0-9._~+/=-]{15,255}$")
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
RATE_RE = re.compile(r"^[1-9][0-9]*r/[sm]$")


def _type_name(value: Any) -> str:
    return type(value).__name__


def _members(groups: Any, name: str) -> list[str]:
    if not isinstance(groups, Mapping):
        raise FarmError(f"mt5_platform: groups must be the inventory's `groups` mapping, got {_type_name(groups)}")
    members = groups.get(name) or []
    return [str(host) for host in members]


def _get(view: Any, key: str, default: Any = None) -> Any:
    """view[key] or default, for dicts and Ansible's hostvars views alike."""
    try:
        if key in view:
            value = view[key]
            return default if value is None else value
    except Exception as exc:  # a value that cannot be templated
        raise FarmError(f"mt5_platform: {key} could not be read ({type(exc).__name__}: {exc})") from exc
    return default


def mt5_platform_accounts(hosts: Mapping[str, Any], groups: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every enabled account of every farm host, with the address Nginx and Prometheus reach it at.

    ``hosts``: host name → that host's variables (hostvars), for the hosts of ``mt5_linux``
    and ``mt5_windows`` (others are ignored). Per account, sorted by login: login, server,
    backend, host, address (the host's mt5_bind_address, default 127.0.0.1), api_port,
    vnc_port (None without VNC), upstream (the Nginx upstream name ``mt5_<login>``).
    """
    if not isinstance(hosts, Mapping):
        raise FarmError(f"mt5_platform_accounts: hosts must map host names to their variables, got {_type_name(hosts)}")
    os_of = {}
    for os, group in OS_GROUPS.items():
        for host in _members(groups, group):
            os_of[host] = os
    out: list[dict[str, Any]] = []
    seen: dict[int, str] = {}
    for host in sorted(hosts):
        if host not in os_of:
            continue
        view = hosts[host]
        accounts = _get(view, "mt5_accounts", [])
        address = str(_get(view, "mt5_bind_address", "127.0.0.1"))
        for account in mt5_resolved_accounts(list(accounts), os_of[host], _get(view, "mt5_density_profiles")):
            if not account["enabled"]:
                continue
            login = account["login"]
            if login in seen:
                raise FarmError(f"mt5_platform_accounts: login {login} is on both {seen[login]} and {host}; run playbooks/validate.yml")
            seen[login] = host
            out.append(
                {
                    "login": login,
                    "server": str(account["server"]),
                    "backend": account["backend"],
                    "host": host,
                    "address": address,
                    "api_port": account["api_port"],
                    "vnc_port": account["vnc_port"],
                    "upstream": f"mt5_{login}",
                }
            )
    return sorted(out, key=lambda item: item["login"])


def _https_hosts(https_hosts: Any, filter_name: str) -> set[str]:
    """The host names of a filter's ``https_hosts`` argument (None: none); FarmError when it is not a list."""
    if https_hosts is None:
        return set()
    if not isinstance(https_hosts, list):
        raise FarmError(f"{filter_name}: https_hosts must be a list of host names, got {_type_name(https_hosts)}")
    return {str(host) for host in https_hosts}


def mt5_platform_account_targets(accounts: list[Mapping[str, Any]], https_hosts: Any = None) -> list[dict[str, Any]]:
    """Prometheus static_configs for the accounts: one target per account, labels login, server, host.

    ``https_hosts``: the hosts whose account services serve HTTPS (TLS between hosts: the
    Linux farm hosts); their targets get ``__scheme__: https`` (the job's tls_config verifies
    them), the others stay ``http``.
    """
    if not isinstance(accounts, list):
        raise FarmError(f"mt5_platform_account_targets: accounts must be mt5_platform_accounts' list, got {_type_name(accounts)}")
    secure = _https_hosts(https_hosts, "mt5_platform_account_targets")
    out = []
    for account in accounts:
        labels = {"login": str(account["login"]), "server": str(account["server"]), "host": str(account["host"])}
        if str(account["host"]) in secure:
            labels["__scheme__"] = "https"
        out.append({"targets": [f"{account['address']}:{account['api_port']}"], "labels": labels})
    return out


def mt5_fleet_status_accounts(hosts: Mapping[str, Any], groups: Mapping[str, Any], https_hosts: Any = None) -> list[dict[str, Any]]:
    """The fleet status report's accounts file (mt5farm/fleet_status.py): every account of every
    farm host, disabled ones too, sorted by login, each {login, server, host, url, enabled}.

    ``url`` is where its account service answers, at the address Nginx and Prometheus use
    (the host's mt5_bind_address and the account's api_port): ``https://`` for the hosts in
    ``https_hosts`` (TLS between hosts: the Linux farm hosts), else ``http://``.
    """
    if not isinstance(hosts, Mapping):
        raise FarmError(f"mt5_fleet_status_accounts: hosts must map host names to their variables, got {_type_name(hosts)}")
    secure = _https_hosts(https_hosts, "mt5_fleet_status_accounts")
    out = []
    for os, group in OS_GROUPS.items():
        for host in _members(groups, group):
            if host not in hosts:
                continue
            view = hosts[host]
            address = str(_get(view, "mt5_bind_address", "127.0.0.1"))
            netloc = f"[{address}]" if ":" in address else address
            scheme = "https" if host in secure else "http"
            for account in mt5_resolved_accounts(list(_get(view, "mt5_accounts", [])), os, _get(view, "mt5_density_profiles")):
                out.append(
                    {
                        "login": account["login"],
                        "server": str(account["server"]),
                        "host": host,
                        "url": f"{scheme}://{netloc}:{account['api_port']}",
                        "enabled": bool(account["enabled"]),
                    }
                )
    return sorted(out, key=lambda item: item["login"])


def mt5_platform_node_targets(hosts: Mapping[str, Any], groups: Mapping[str, Any], port: int = 9100) -> list[dict[str, Any]]:
    """Prometheus static_configs for node exporter on every Linux farm host and platform host (label host)."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise FarmError(f"mt5_platform_node_targets: port must be a TCP port, got {port!r}")
    names = sorted(set(_members(groups, "mt5_linux")) | set(_members(groups, "platform")))
    out = []
    for host in names:
        view = hosts.get(host) if isinstance(hosts, Mapping) else None
        if view is None:
            raise FarmError(f"mt5_platform_node_targets: no variables given for host {host!r}")
        address = str(_get(view, "mt5_bind_address", "127.0.0.1"))
        out.append({"targets": [f"{address}:{port}"], "labels": {"host": host}})
    return out


# Descriptors a worker needs beyond its connections: log files, the config, temp files.
NGINX_SPARE_FILES = 1024


def mt5_platform_nginx_connections(accounts: int, keepalive: int, base: int) -> dict[str, int]:
    """Nginx's worker_connections and worker_rlimit_nofile for a fleet of ``accounts`` accounts.

    Each worker keeps up to ``keepalive`` idle connections to every account it has proxied to
    (the upstreams' ``keepalive``), and with requests spread over the fleet every worker ends up
    holding such a pool for nearly every account: up to accounts x keepalive connections that
    count against worker_connections. ``base`` (platform_nginx_worker_connections) is the room
    for everything else: clients, their proxied connections, WebSockets. Too few, and Nginx
    refuses work ("worker_connections are not enough"; bench/fleet saw it at 5,000 accounts
    with 4096). Returns {worker_connections: base + accounts x keepalive, rlimit_nofile: that
    plus NGINX_SPARE_FILES}, both per worker. Raises FarmError for a negative or non-integer
    argument, or a base of zero.
    """
    for name, value in (("accounts", accounts), ("keepalive", keepalive), ("base", base)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise FarmError(f"mt5_platform_nginx_connections: {name} must be a whole number >= 0, got {value!r}")
    if base == 0:
        raise FarmError("mt5_platform_nginx_connections: base (platform_nginx_worker_connections) must be above 0")
    connections = base + accounts * keepalive
    return {"worker_connections": connections, "rlimit_nofile": connections + NGINX_SPARE_FILES}


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def mt5_platform_url(groups: Mapping[str, Any], kind: str, farm_host: str, hostvars: Mapping[str, Any], tls: bool = False) -> str:
    """The URL (never a password) an account container on ``farm_host`` uses for Redis or Postgres.

    No platform host: "" (the account services run without them). On the platform host
    itself the account containers share a Docker network with Redis and Postgres and use
    their container names; elsewhere they use the platform host's ``mt5_platform_address``
    (default its mt5_bind_address) and the published port (``mt5_platform_redis_port``,
    ``mt5_platform_postgres_port``), which must then not be loopback.
    ``tls`` (mt5farm.pki.mt5_tls_enabled): ``rediss://`` and ``?sslmode=verify-full`` — the
    service verifies the server's certificate against the farm's CA (its secret file
    ``tls_ca.pem``) and the name dialled (a subjectAltName of the certificate).
    """
    if kind not in SERVICE_PORTS:
        raise FarmError(f"mt5_platform_url: kind must be one of {sorted(SERVICE_PORTS)}, got {kind!r}")
    platforms = _members(groups, "platform")
    if not platforms:
        return ""
    platform = platforms[0]
    view = hostvars[platform] if platform in hostvars else {}
    database = str(_get(view, "mt5_platform_postgres_database", DEFAULT_DATABASE))
    if farm_host == platform:
        host, port = CONTAINERS[kind], SERVICE_PORTS[kind]
    else:
        host = str(_get(view, "mt5_platform_address", _get(view, "mt5_bind_address", "127.0.0.1")))
        port = int(_get(view, f"mt5_platform_{kind}_port", SERVICE_PORTS[kind]))
        if _is_loopback(host):
            raise FarmError(
                f"mt5_platform_url: {farm_host} cannot reach {kind} on the platform host {platform} at {host}: "
                f"set mt5_platform_address (or mt5_bind_address) of {platform} to its private address"
            )
    if not isinstance(tls, bool):
        raise FarmError(f"mt5_platform_url: tls must be true or false, got {tls!r}")
    if kind == "redis":
        return f"{'rediss' if tls else 'redis'}://{host}:{port}/0"
    return f"postgresql://{WRITER_ROLE}@{host}:{port}/{database}" + ("?sslmode=verify-full" if tls else "")


def mt5_platform_api_keys(
    keys: Any, accounts: list[Mapping[str, Any]], default_rate: str = "100r/s", default_burst: int = 200
) -> list[dict[str, Any]]:
    """Normalise Nginx's API keys: name, key, scope, access, zone, rate, burst, for the key map
    and limits.

    ``keys``: a list of {name, key, accounts: "all" or [logins], access: "trade" or "read",
    rate?, burst?}, or a string of keys one per line (each fleet-wide and trading, named
    fleet-1, fleet-2, ...). scope is "*" (every account) or ",login,login," for the map that
    checks a key against the account asked for; access "read" (a dashboard's key) may GET
    and open the WebSocket only, and Nginx sends the account its read-only key for it
    (issue 15); rate "off" exempts a key from limiting. Keys with the same rate share a zone.
    The result holds secrets: render it only into root-only files, with no_log.
    """
    if isinstance(keys, str):
        keys = [
            {"name": f"fleet-{index}", "key": line.strip()}
            for index, line in enumerate((line for line in keys.splitlines() if line.strip()), start=1)
        ]
    if not isinstance(keys, list):
        raise FarmError(
            f"mt5_platform_api_keys: keys must be a list of {{name, key, accounts}} or a string of keys, got {_type_name(keys)}"
        )
    known = {int(account["login"]) for account in accounts}
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    values: set[str] = set()
    for index, entry in enumerate(keys, start=1):
        if not isinstance(entry, Mapping):
            raise FarmError(f"mt5_platform_api_keys: entry {index} must be a mapping, got {_type_name(entry)}")
        name = str(entry.get("name", f"key-{index}"))
        if not KEY_NAME_RE.match(name) or name in names:
            raise FarmError(f"mt5_platform_api_keys: entry {index}: name {name!r} must be unique, 1-64 of A-Z a-z 0-9 _ . -")
        key = entry.get("key")
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise FarmError(
                f"mt5_platform_api_keys: key {name!r} must be 16-256 characters of A-Z a-z 0-9 . _ ~ + / = -, not starting with ~ (the value is not shown)"
            )
        if key in values:
            raise FarmError(f"mt5_platform_api_keys: key {name!r} repeats another key's value")
        scope_in = entry.get("accounts", "all")
        if scope_in == "all":
            scope = "*"
        elif isinstance(scope_in, list) and scope_in and all(isinstance(x, int) and not isinstance(x, bool) for x in scope_in):
            unknown = sorted(set(scope_in) - known)
            if unknown:
                raise FarmError(f"mt5_platform_api_keys: key {name!r} names accounts no host carries: {unknown}")
            scope = "," + ",".join(str(x) for x in sorted(set(scope_in))) + ","
        else:
            raise FarmError(f'mt5_platform_api_keys: key {name!r}: accounts must be "all" or a list of logins, got {scope_in!r}')
        access = entry.get("access", "trade")
        if access not in ("trade", "read"):
            raise FarmError(f'mt5_platform_api_keys: key {name!r}: access must be "trade" or "read", got {access!r}')
        rate = str(entry.get("rate", default_rate))
        if rate != "off" and not RATE_RE.match(rate):
            raise FarmError(f"mt5_platform_api_keys: key {name!r}: rate must be like 100r/s, 600r/m or off, got {rate!r}")
        burst = entry.get("burst", default_burst)
        if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0:
            raise FarmError(f"mt5_platform_api_keys: key {name!r}: burst must be a whole number >= 0, got {burst!r}")
        names.add(name)
        values.add(key)
        zone = "" if rate == "off" else "mt5_key_" + rate.replace("/", "_per_") + f"_b{burst}"
        out.append({"name": name, "key": key, "scope": scope, "access": access, "rate": rate, "burst": burst, "zone": zone})
    if not out:
        raise FarmError("mt5_platform_api_keys: no API key given: set mt5_api_key (vault) or platform_nginx_api_keys")
    return out


DATASOURCE_TYPES: dict[str, str] = {"prometheus": "prometheus", "postgres": "grafana-postgresql-datasource"}


def _grafana_target(kind: str, index: int, target: Mapping[str, Any], datasource: dict[str, str], panel_type: str) -> dict[str, Any]:
    ref = chr(ord("A") + index)
    if kind == "postgres":
        return {
            "refId": ref,
            "datasource": datasource,
            "rawSql": str(target["sql"]),
            "format": "table",
            "editorMode": "code",
            "rawQuery": True,
        }
    return {
        "refId": ref,
        "datasource": datasource,
        "expr": str(target["expr"]),
        "legendFormat": str(target.get("legend", "__auto")),
        "instant": panel_type in ("stat", "table"),
        "range": panel_type == "timeseries",
    }


def mt5_grafana_dashboard(spec: Mapping[str, Any], datasources: Mapping[str, str]) -> dict[str, Any]:
    """A Grafana dashboard (schema 39) from a compact spec, panels laid out left to right.

    spec: uid, title, tags?, refresh?, time?, variables?: [{name, label?, query (PromQL
    label_values(...))}], panels: [{title, type (timeseries|stat|table), datasource?
    (prometheus|postgres, default prometheus), targets: [{expr, legend?}] or [{sql}] for
    postgres, unit?, width? (of 24, default 12), height? (default 8), description?}].
    datasources: kind → the uid of the provisioned datasource.
    """
    if not isinstance(spec, Mapping) or not spec.get("uid") or not spec.get("title"):
        raise FarmError(f"mt5_grafana_dashboard: spec must be a mapping with uid and title, got {spec!r:.80}")
    if not isinstance(datasources, Mapping) or "prometheus" not in datasources:
        raise FarmError(f"mt5_grafana_dashboard: datasources must map prometheus (and postgres) to uids, got {datasources!r}")
    panels_in = spec.get("panels")
    if not isinstance(panels_in, list) or not panels_in:
        raise FarmError(f"mt5_grafana_dashboard: {spec['uid']}: panels must be a non-empty list")
    panels = []
    x = y = row_height = 0
    for number, panel in enumerate(panels_in, start=1):
        name = panel.get("title", number)
        kind = panel.get("type", "timeseries")
        if kind not in ("timeseries", "stat", "table"):
            raise FarmError(f"mt5_grafana_dashboard: {spec['uid']} panel {name!r}: type must be timeseries, stat or table, got {kind!r}")
        source = panel.get("datasource", "prometheus")
        if source not in DATASOURCE_TYPES or source not in datasources:
            raise FarmError(
                f"mt5_grafana_dashboard: {spec['uid']} panel {name!r}: datasource {source!r} is not one of {sorted(datasources)}"
            )
        field = "sql" if source == "postgres" else "expr"
        targets = panel.get("targets") or []
        if not targets or not all(isinstance(t, Mapping) and t.get(field) for t in targets):
            raise FarmError(
                f"mt5_grafana_dashboard: {spec['uid']} panel {name!r}: every target needs {'an' if field == 'expr' else 'a'} {field}"
            )
        width, height = int(panel.get("width", 12)), int(panel.get("height", 8))
        if not 1 <= width <= 24:
            raise FarmError(f"mt5_grafana_dashboard: {spec['uid']} panel {name!r}: width must be 1-24, got {width}")
        if x + width > 24:
            x, y, row_height = 0, y + row_height, 0
        datasource = {"type": DATASOURCE_TYPES[source], "uid": str(datasources[source])}
        panels.append(
            {
                "id": number,
                "type": kind,
                "title": str(panel.get("title", f"Panel {number}")),
                "description": str(panel.get("description", "")),
                "datasource": datasource,
                "gridPos": {"x": x, "y": y, "w": width, "h": height},
                "fieldConfig": {"defaults": {"unit": str(panel.get("unit", "short"))}, "overrides": []},
                "options": {"legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
                "targets": [_grafana_target(source, index, target, datasource, kind) for index, target in enumerate(targets)],
            }
        )
        x += width
        row_height = max(row_height, height)
    prometheus = {"type": "prometheus", "uid": str(datasources["prometheus"])}
    variables = [
        {
            "name": str(var["name"]),
            "label": str(var.get("label", var["name"])),
            "type": "query",
            "datasource": prometheus,
            "query": {"query": str(var["query"]), "refId": "variable"},
            "definition": str(var["query"]),
            "refresh": 2,
            "sort": 3,
            "includeAll": False,
            "multi": False,
        }
        for var in spec.get("variables") or []
    ]
    return {
        "uid": str(spec["uid"]),
        "title": str(spec["title"]),
        "tags": list(spec.get("tags") or ["mt5farm"]),
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": str(spec.get("refresh", "30s")),
        "time": dict(spec.get("time") or {"from": "now-1h", "to": "now"}),
        "timezone": "utc",
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": panels,
    }


# The attributes every account role has (platform_postgres: LOGIN,INHERIT,NOSUPERUSER,
# NOCREATEDB,NOCREATEROLE), as pg_authid's columns.
ACCOUNT_ROLE_ATTRIBUTES: dict[str, bool] = {
    "rolcanlogin": True,
    "rolinherit": True,
    "rolsuper": False,
    "rolcreatedb": False,
    "rolcreaterole": False,
}


def mt5_postgres_account_roles(found: Any, wanted: Any) -> dict[str, list[str]]:
    """What the account roles need, from one read of ``pg_authid``: only those are touched.

    ``found``: rows ``{rolname, rolpassword, member, <ACCOUNT_ROLE_ATTRIBUTES columns>}`` of
    the account roles there are (``member``: in the writer group). ``wanted``: role name →
    its password (derived per account), every enabled account's. Returns ``{"set": roles
    to create or correct (missing, another password, other attributes), "join": roles to
    make members of the writer group, "drop": roles of accounts that went away}``, each
    sorted. A password is compared with the stored SCRAM verifier
    (:func:`mt5farm.credentials.scram_sha256_matches`), so a rotated base secret sets every
    role again and an unchanged one sets none: one query instead of one module run per
    account (about 0.4 s each). Raises FarmError on a row or mapping of the wrong shape.
    """
    if not isinstance(wanted, Mapping):
        raise FarmError(f"mt5_postgres_account_roles: wanted must map role names to passwords, got {_type_name(wanted)}")
    if isinstance(found, Mapping) and not found:
        found = []  # postgresql_query's query_result for a query that returned no row is {}, not []
    if not isinstance(found, list) or not all(isinstance(row, Mapping) and "rolname" in row for row in found):
        raise FarmError("mt5_postgres_account_roles: found must be the query's rows, each with rolname")
    rows = {str(row["rolname"]): row for row in found}
    to_set = [
        role
        for role, password in wanted.items()
        if role not in rows
        or any(bool(rows[role].get(column)) != value for column, value in ACCOUNT_ROLE_ATTRIBUTES.items())
        or not scram_sha256_matches(rows[role].get("rolpassword"), str(password))
    ]
    return {
        "set": sorted(to_set),
        "join": sorted(role for role in wanted if role not in rows or not rows[role].get("member")),
        "drop": sorted(set(rows) - set(wanted)),
    }
