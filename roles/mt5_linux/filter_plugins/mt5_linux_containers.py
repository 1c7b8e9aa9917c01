"""The Docker container spec of each Linux account unit (input of the mt5_containers module)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SERVICE_PORT = 8000  # the account service, in every image variant
NOVNC_PORT = 6080  # noVNC on the terminal's screen (wine variant, when vnc is on)
SECRETS_TARGET = "/run/secrets/mt5"
DATA_TARGET = "/data"
# Each account's own identities on the platform (least privilege): its Redis ACL user and
# its Postgres role (roles/platform_redis, roles/platform_postgres create them).
REDIS_USER = "mt5-account-{login}"
DATABASE_ROLE = "mt5_account_{login}"


def account_url(url: str, login: Any) -> str:
    """``url`` (REDIS_URL or DATABASE_URL, from mt5_platform_url) with the account's own user.

    ``redis://host:port/0`` gets the account's ACL user, ``postgresql://<role>@host...`` the
    account's role in place of the fleet's; any other URL (a site's own) is left as it is.
    """
    if url.startswith("redis://") and "@" not in url.split("/", 3)[2]:
        return "redis://" + REDIS_USER.format(login=login) + "@" + url[len("redis://") :]
    if url.startswith("postgresql://") and "@" in url.split("/", 3)[2]:
        rest = url[len("postgresql://") :]
        return "postgresql://" + DATABASE_ROLE.format(login=login) + rest[rest.index("@") :]
    return url


def account_service_env(
    unit: Mapping[str, Any], settings: Mapping[str, Any], secrets_dir: str, state_dir: str, endpoint: str
) -> dict[str, str]:
    """The account service's environment in an account container, never a secret.

    The same on Linux and Windows (roles/mt5_windows loads this file for it): the service
    finds its secrets as files in ``secrets_dir`` and keeps its state in ``state_dir``.
    REDIS_URL and DATABASE_URL in ``settings["env"]`` name the account's own Redis user and
    Postgres role (account_url).
    """
    extra = {key: str(value) for key, value in (settings.get("env") or {}).items()}
    for key in ("REDIS_URL", "DATABASE_URL"):
        if extra.get(key):
            extra[key] = account_url(extra[key], unit["login"])
    return {
        "MT5_LOGIN": str(unit["login"]),
        "MT5_SERVER": str(unit["server"]),
        "MT5_BACKEND": unit["backend"],
        "POLL_INTERVAL": str(settings["poll_interval"]),
        "SERVICE_PORT": str(SERVICE_PORT),
        "MT5_SECRETS_DIR": secrets_dir,
        "STATE_DIR": state_dir,
        "ADVERTISE_URL": endpoint,
        **extra,
    }


def mt5_linux_container_specs(units: list[Mapping[str, Any]], settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Container specs for the enabled units (mt5_account_units) of one Linux host.

    settings: image, bind_address, network, secrets_root, uid, poll_interval, healthcheck
    ({interval, timeout, retries, start_period}), env (extra environment, no secrets),
    pids_limit, stop_timeout. Nothing secret goes in: the secrets are files in
    <secrets_root>/<login>, mounted read-only.
    """
    specs = []
    for unit in units:
        if not unit["enabled"]:
            continue
        login = str(unit["login"])
        endpoint = f"http://{settings['bind_address']}:{unit['api_port']}"
        env = {
            **account_service_env(unit, settings, SECRETS_TARGET, f"{DATA_TARGET}/service", endpoint),
            "MT5_VNC": "1" if unit["vnc"] else "0",
        }
        ports = [{"container_port": SERVICE_PORT, "host_port": unit["api_port"], "host_ip": settings["bind_address"], "protocol": "tcp"}]
        if unit["vnc"]:
            ports.append(
                {"container_port": NOVNC_PORT, "host_port": unit["vnc_port"], "host_ip": settings["bind_address"], "protocol": "tcp"}
            )
        health = settings["healthcheck"]
        specs.append(
            {
                "name": unit["container"],
                "image": settings["image"],
                "hostname": unit["container"],
                "env": env,
                "labels": {**unit["labels"], "mt5farm.endpoint": endpoint},
                "ports": ports,
                "mounts": [
                    {"type": "bind", "source": f"{settings['secrets_root']}/{login}", "target": SECRETS_TARGET, "read_only": True},
                    {"type": "volume", "source": unit["volume"], "target": DATA_TARGET, "read_only": False},
                ],
                "memory": unit["memory_bytes"],
                "memory_reservation": unit["memory_reservation_bytes"],
                "nano_cpus": unit["nano_cpus"],
                "healthcheck": {"test": ["CMD", "mt5-account-service", "healthcheck"], **health},
                "restart_policy": "unless-stopped",
                "network": settings["network"],
                "user": f"{settings['uid']}:{settings['uid']}",
                "stop_timeout": settings["stop_timeout"],
                "pids_limit": settings["pids_limit"],
                "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"],
            }
        )
    return specs


class FilterModule:
    """mt5_linux's own filter."""

    def filters(self) -> dict[str, Any]:
        return {"mt5_linux_container_specs": mt5_linux_container_specs}
