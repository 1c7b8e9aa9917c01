"""The Docker container spec of each account (the input of library/mt5_containers.py).

One builder for both OSes: an account container is the same thing on Linux and Windows
(the account service on port 8000, its secrets as read-only files, its data on a named
volume, the resolved account's limits and labels), and what differs is what each engine
accepts, kept in one table (``OS_RULES``):

=====================  ==============================  ==========================================
                       linux                           windows
=====================  ==============================  ==========================================
secrets, data          /run/secrets/mt5, /data         C:\\secrets, C:\\data
ports published on     the host's bind_address         0.0.0.0 (the Windows NAT refuses a host IP;
                                                       the Windows firewall limits who connects)
noVNC (vnc on)         published, MT5_VNC in env       never (no VNC on Windows)
healthcheck            mt5-account-service             C:\\Python\\python.exe -m mt5_account_service
limits                 memory, reservation, CPUs,      memory, CPUs (the daemon refuses the rest)
                       pids limit
hardening              user uid:uid, cap_drop ALL,     isolation (process or hyperv)
                       no-new-privileges, network
update hosts blocked   a terminal's (not simulator)    not set
                       accounts: settings'
                       blocked_hosts -> 127.0.0.1
labels                 the account's, endpoint         the account's, endpoint, mt5farm.platform
=====================  ==============================  ==========================================

Nothing secret goes into a spec: the secrets are files under ``<secrets_root>/<login>``,
mounted read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mt5farm.accounts import ISOLATION_MODES
from mt5farm.density import parse_os
from mt5farm.errors import FarmError

SERVICE_PORT = 8000  # the account service, in every image variant on either OS
NOVNC_PORT = 6080  # noVNC on the terminal's screen (Linux wine variant, when vnc is on)
# Each account's own identities on the platform (least privilege): its Redis ACL user and
# its Postgres role (roles/platform_redis, roles/platform_postgres create them).
#: Where the terminal's update hosts point (settings' blocked_hosts): loopback, where nothing
#: serves them, so LiveUpdate cannot fetch a new build (issue 12, fault 9).
BLOCKED_ADDRESS = "127.0.0.1"
REDIS_USER = "mt5-account-{login}"
DATABASE_ROLE = "mt5_account_{login}"


def account_url(url: str, login: Any) -> str:
    """``url`` (REDIS_URL or DATABASE_URL, from mt5_platform_url) with the account's own user.

    ``redis://host:port/0`` (or ``rediss://``, over TLS) gets the account's ACL user,
    ``postgresql://<role>@host...`` the account's role in place of the fleet's; any other URL
    (a site's own) is left as it is.
    """
    for scheme in ("redis://", "rediss://"):
        if url.startswith(scheme) and "@" not in url.split("/", 3)[2]:
            return scheme + REDIS_USER.format(login=login) + "@" + url[len(scheme) :]
    if url.startswith("postgresql://") and "@" in url.split("/", 3)[2]:
        rest = url[len("postgresql://") :]
        return "postgresql://" + DATABASE_ROLE.format(login=login) + rest[rest.index("@") :]
    return url


def account_service_env(
    account: Mapping[str, Any], settings: Mapping[str, Any], secrets_dir: str, state_dir: str, endpoint: str
) -> dict[str, str]:
    """The account service's environment in an account container, never a secret.

    The same on Linux and Windows: the service finds its secrets as files in
    ``secrets_dir`` and keeps its state in ``state_dir``. REDIS_URL and DATABASE_URL in
    ``settings["env"]`` name the account's own Redis user and Postgres role (account_url).
    ``account`` is a resolved account (login, server, backend are read).
    """
    extra = {key: str(value) for key, value in (settings.get("env") or {}).items()}
    for key in ("REDIS_URL", "DATABASE_URL"):
        if extra.get(key):
            extra[key] = account_url(extra[key], account["login"])
    return {
        "MT5_LOGIN": str(account["login"]),
        "MT5_SERVER": str(account["server"]),
        "MT5_BACKEND": account["backend"],
        "POLL_INTERVAL": str(settings["poll_interval"]),
        "SERVICE_PORT": str(SERVICE_PORT),
        "MT5_SECRETS_DIR": secrets_dir,
        "STATE_DIR": state_dir,
        "ADVERTISE_URL": endpoint,
        **extra,
    }


def _linux_options(account: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """What only a Linux engine is given: the reservation, the network, the hardening, and
    for an account that runs the MT5 terminal (any backend but the simulator) its update
    hosts resolved to loopback (settings' ``blocked_hosts``; none: the key is left out)."""
    options: dict[str, Any] = {
        "memory_reservation": account["memory_reservation_bytes"],
        "network": settings["network"],
        "user": f"{settings['uid']}:{settings['uid']}",
        "pids_limit": settings["pids_limit"],
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
    }
    blocked = settings.get("blocked_hosts") or []
    if blocked and account["backend"] != "simulator":
        options["extra_hosts"] = {str(name): BLOCKED_ADDRESS for name in blocked}
    return options


def _windows_isolation(account: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """The account's isolation, else the host's default (settings' isolation), else process."""
    mode = account.get("isolation") or settings.get("isolation") or "process"
    if mode not in ISOLATION_MODES:
        raise FarmError(
            f"mt5_container_specs: account {account.get('login')}: isolation {mode!r} is not one of {', '.join(ISOLATION_MODES)}"
        )
    return str(mode)


def _windows_options(account: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """What only a Windows engine is given: the isolation mode."""
    return {"isolation": _windows_isolation(account, settings)}


@dataclass(frozen=True)
class OsRules:
    """How an account container differs on one OS (see the module's table)."""

    secrets_target: str  # the account's secret files, mounted read-only
    data_target: str  # the account's data volume
    separator: str  # path separator inside the container and on the host
    healthcheck: tuple[str, ...]  # Docker's test, run inside the container
    publish_address: str | None  # the host IP ports are published on; None: settings' bind_address
    vnc_env: bool  # the image reads MT5_VNC (the Linux wine variant starts noVNC with it)
    options: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]  # (account, settings) → OS-only keys
    labels: Mapping[str, str] = field(default_factory=dict)  # added to every container's labels


OS_RULES: dict[str, OsRules] = {
    "linux": OsRules(
        secrets_target="/run/secrets/mt5",
        data_target="/data",
        separator="/",
        healthcheck=("CMD", "mt5-account-service", "healthcheck"),
        publish_address=None,
        vnc_env=True,
        options=_linux_options,
    ),
    "windows": OsRules(
        secrets_target="C:\\secrets",
        data_target="C:\\data",
        separator="\\",
        healthcheck=("CMD", "C:\\Python\\python.exe", "-m", "mt5_account_service", "healthcheck"),
        # Docker on Windows publishes NAT ports on every host address: it refuses any other
        # host IP ("Windows does not support host IP addresses in NAT settings"). The
        # Windows firewall rules (mt5farm.windows) are what limit who reaches them.
        publish_address="0.0.0.0",
        vnc_env=False,
        options=_windows_options,
        labels={"mt5farm.platform": "windows"},
    ),
}


def _spec(account: Mapping[str, Any], settings: Mapping[str, Any], rules: OsRules) -> dict[str, Any]:
    """The container spec of one enabled resolved account."""
    sep = rules.separator
    # HTTPS when the service has the host's certificate (settings' tls: TLS between hosts).
    scheme = "https" if settings.get("tls") is True else "http"
    endpoint = f"{scheme}://{settings['bind_address']}:{account['api_port']}"
    publish = rules.publish_address or settings["bind_address"]
    env = account_service_env(account, settings, rules.secrets_target, f"{rules.data_target}{sep}service", endpoint)
    if rules.vnc_env:
        env["MT5_VNC"] = "1" if account["vnc"] else "0"
    ports = [{"container_port": SERVICE_PORT, "host_port": account["api_port"], "host_ip": publish, "protocol": "tcp"}]
    if account["vnc"]:
        ports.append({"container_port": NOVNC_PORT, "host_port": account["vnc_port"], "host_ip": publish, "protocol": "tcp"})
    secrets_source = f"{str(settings['secrets_root']).rstrip(sep)}{sep}{account['login']}"
    return {
        "name": account["container"],
        "image": settings["image"],
        "hostname": account["container"],
        "env": env,
        "labels": {**account["labels"], "mt5farm.endpoint": endpoint, **rules.labels},
        "ports": ports,
        "mounts": [
            {"type": "bind", "source": secrets_source, "target": rules.secrets_target, "read_only": True},
            {"type": "volume", "source": account["volume"], "target": rules.data_target, "read_only": False},
        ],
        "memory": account["memory_bytes"],
        "nano_cpus": account["nano_cpus"],
        "healthcheck": {"test": list(rules.healthcheck), **settings["healthcheck"]},
        "restart_policy": "unless-stopped",
        "stop_timeout": settings["stop_timeout"],
        **rules.options(account, settings),
    }


def mt5_container_specs(accounts: Any, os: str, settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Container specs for the enabled accounts of one host, in the order given.

    * accounts: the host's resolved accounts (``mt5_resolved_accounts(accounts, os)``,
      mt5farm.accounts), disabled ones included (they get no spec).
    * os: 'linux' or 'windows' (picks the row of OS_RULES).
    * settings: image, bind_address (the address Nginx and Prometheus reach the host at:
      ADVERTISE_URL, the endpoint label and, on Linux, where ports are published),
      secrets_root (the host's folder of per-login secret folders), poll_interval,
      healthcheck ({interval, timeout, retries, start_period}), stop_timeout, env (extra
      environment, never secrets); on Linux also network, uid, pids_limit and optional
      blocked_hosts (host names a terminal's container resolves to 127.0.0.1); on Windows
      isolation (the host's default, ``process`` when absent); optional tls (True: the
      service serves HTTPS with the host's certificate from its secrets, so ADVERTISE_URL
      and the endpoint label say ``https://``).

    Raises FarmError when ``accounts`` is not a list, ``os`` is unknown or a Windows
    account's isolation is not process or hyperv.
    """
    name = parse_os(os, "mt5_container_specs")
    if not isinstance(accounts, list):
        raise FarmError(
            f"mt5_container_specs: accounts must be the host's resolved accounts (mt5_resolved_accounts), got {type(accounts).__name__}"
        )
    rules = OS_RULES[name]
    if name == "windows":  # every account's isolation, disabled ones too, as an enabled one would get it
        for account in accounts:
            _windows_isolation(account, settings)
    return [_spec(account, settings, rules) for account in accounts if account["enabled"]]
