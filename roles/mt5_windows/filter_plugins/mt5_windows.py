"""Filters of the mt5_windows role: what runs on a Windows host, as data.

Pure functions over the account units of ``mt5_account_units(accounts, 'windows')``
(filter_plugins/mt5_inventory.py): the container spec of each account (the input of
library/mt5_containers.py, run from the controller against the host's engine), the
Windows firewall rules, the Defender exclusions, and the image's input hash (the same
function as the Linux image's, loaded from roles/mt5_image by path: one copy).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

SERVICE_PORT = 8000  # the account service, as in every Linux image
SECRETS_TARGET = "C:\\secrets"
DATA_TARGET = "C:\\data"
ISOLATION_MODES = ("process", "hyperv")
# Docker on Windows publishes NAT ports on every host address: it refuses any other host
# IP ("Windows does not support host IP addresses in NAT settings"). The Windows firewall
# rules below are what limit who reaches the published ports.
PUBLISH_ADDRESS = "0.0.0.0"
FIREWALL_GROUP = "MT5 Farm"


def _fail(name: str, message: str) -> None:
    raise AnsibleFilterError(f"{name}: {message}")


def _isolation_by_login(accounts: Any, default: str) -> dict[int, str]:
    if not isinstance(accounts, list):
        _fail("mt5_windows_container_specs", f"accounts must be the host's mt5_accounts list, got {type(accounts).__name__}")
    result = {}
    for account in accounts:
        mode = account.get("isolation") or default
        if mode not in ISOLATION_MODES:
            _fail(
                "mt5_windows_container_specs",
                f"account {account.get('login')}: isolation {mode!r} is not one of {', '.join(ISOLATION_MODES)}",
            )
        result[account.get("login")] = mode
    return result


def mt5_windows_container_specs(
    units: list[Mapping[str, Any]], accounts: list[Mapping[str, Any]], settings: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Container specs for the enabled units of one Windows host.

    settings: image, bind_address (the address Nginx and Prometheus reach the host at:
    ADVERTISE_URL and the endpoint label), secrets_root (e.g. ``C:\\mt5farm\\secrets``),
    poll_interval, healthcheck ({interval, timeout, retries, start_period}), stop_timeout,
    env (extra environment, never secrets), isolation (the default, ``process``).

    Only what a Windows engine accepts: a memory limit and a CPU quota (no memory
    reservation, pids limit, capabilities, security options or uid: the Windows daemon
    refuses them), ports published on 0.0.0.0 (it refuses a host IP), the secrets read-only
    at C:\\secrets, the data volume at C:\\data, the default ``nat`` network.
    """
    isolation = _isolation_by_login(accounts, settings.get("isolation") or "process")
    root = str(settings["secrets_root"]).rstrip("\\")
    specs = []
    for unit in units:
        if not unit["enabled"]:
            continue
        login = str(unit["login"])
        endpoint = f"http://{settings['bind_address']}:{unit['api_port']}"
        env = _role_filters("mt5_linux", "mt5_linux_containers.py").account_service_env(
            unit, settings, SECRETS_TARGET, f"{DATA_TARGET}\\service", endpoint
        )
        health = settings["healthcheck"]
        specs.append(
            {
                "name": unit["container"],
                "image": settings["image"],
                "hostname": unit["container"],
                "env": env,
                "labels": {**unit["labels"], "mt5farm.endpoint": endpoint, "mt5farm.platform": "windows"},
                "ports": [{"container_port": SERVICE_PORT, "host_port": unit["api_port"], "host_ip": PUBLISH_ADDRESS, "protocol": "tcp"}],
                "mounts": [
                    {"type": "bind", "source": f"{root}\\{login}", "target": SECRETS_TARGET, "read_only": True},
                    {"type": "volume", "source": unit["volume"], "target": DATA_TARGET, "read_only": False},
                ],
                "memory": unit["memory_bytes"],
                "nano_cpus": unit["nano_cpus"],
                "isolation": isolation.get(unit["login"], "process"),
                "healthcheck": {"test": ["CMD", "C:\\Python\\python.exe", "-m", "mt5_account_service", "healthcheck"], **health},
                "restart_policy": "unless-stopped",
                "stop_timeout": settings["stop_timeout"],
            }
        )
    return specs


def _addresses(name: str, value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not value:
        _fail(name, f"{what} must be a non-empty list of addresses or networks (e.g. ['10.0.0.5', '10.0.1.0/24']), got {value!r}")
    for item in value:
        try:
            network = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            _fail(name, f"{what}: {item!r} is not an IP address or network")
        if network.prefixlen == 0:
            _fail(name, f"{what}: {item!r} is every address; name the controller's or the platform's address instead")
    return [str(item) for item in value]


def mt5_windows_firewall_rules(
    units: list[Mapping[str, Any]], api_allowed_from: Any, docker_api_port: int, docker_api_allowed_from: Any
) -> list[dict[str, Any]]:
    """Every inbound rule the role keeps on a Windows host, and nothing else.

    One rule per enabled account (its published API port, from ``api_allowed_from``: the
    platform host's Nginx and Prometheus) and one for the Docker API (``docker_api_port``,
    from ``docker_api_allowed_from``: the controller). Each: {name, localport, remoteip
    (comma-separated), protocol, direction, action, group, description}.
    """
    api_from = (
        _addresses("mt5_windows_firewall_rules", api_allowed_from, "mt5_windows_api_allowed_from")
        if any(u["enabled"] for u in units)
        else []
    )
    docker_from = _addresses("mt5_windows_firewall_rules", docker_api_allowed_from, "mt5_windows_docker_api_allowed_from")
    rules = [
        {
            "name": f"{FIREWALL_GROUP} Docker API {docker_api_port}",
            "localport": str(docker_api_port),
            "remoteip": ",".join(docker_from),
            "protocol": "tcp",
            "direction": "in",
            "action": "allow",
            "group": FIREWALL_GROUP,
            "description": "Docker Engine API over mutual TLS, from the Ansible controller only",
        }
    ]
    for unit in sorted((u for u in units if u["enabled"]), key=lambda u: u["api_port"]):
        rules.append(
            {
                "name": f"{FIREWALL_GROUP} account {unit['login']}",
                "localport": str(unit["api_port"]),
                "remoteip": ",".join(api_from),
                "protocol": "tcp",
                "direction": "in",
                "action": "allow",
                "group": FIREWALL_GROUP,
                "description": f"Account service of {unit['container']} (REST, WebSocket, /health, /metrics)",
            }
        )
    return rules


def mt5_windows_defender_paths(units: list[Mapping[str, Any]], docker_root: str) -> list[str]:
    """Defender exclusions for the terminal data: each enabled account's data volume folder."""
    root = str(docker_root).rstrip("\\")
    return [f"{root}\\volumes\\{unit['volume']}" for unit in units if unit["enabled"]]


def mt5_windows_san(names: Any) -> list[str]:
    """subjectAltName entries for the engine's certificate: IP:... for addresses, DNS:... else."""
    if not isinstance(names, list) or not names:
        _fail("mt5_windows_san", f"names must be a non-empty list of host names or addresses, got {names!r}")
    entries = []
    for name in names:
        text = str(name).strip()
        try:
            ipaddress.ip_address(text)
        except ValueError:
            entry = f"DNS:{text}"
        else:
            entry = f"IP:{text}"
        if text and entry not in entries:
            entries.append(entry)
    return entries


def mt5_windows_input_source(item: Mapping[str, Any], cache: str) -> dict[str, str]:
    """Where an operator-supplied input is on the controller, and its declared sha256.

    ``item`` is an entry of the role's input table ({key, label, spec: {path|url, sha256},
    context_path}); a URL input is in ``cache`` as ``<sha256>-<context file name>``.
    """
    spec = item.get("spec") or {}
    digest = str(spec.get("sha256", "")).lower()
    if "path" in spec:
        return {"src": str(spec["path"]), "sha256": digest}
    if "url" in spec:
        return {"src": f"{cache}/{digest}-{str(item['context_path']).rsplit('/', 1)[-1]}", "sha256": digest}
    _fail("mt5_windows_input_source", f"{item.get('label')}: neither path nor url")
    return {}


def mt5_windows_pair(pair: Any) -> dict[str, str]:
    """A (source, context path) pair, or a dict item {key: context path, value: {src}}, as {src, dest}."""
    if isinstance(pair, Mapping) and "key" in pair:
        return {"src": str(pair["value"]["src"]), "dest": str(pair["key"])}
    source, dest = pair
    return {"src": str(source), "dest": str(dest)}


def mt5_windows_path(name: Any, parent: str) -> str:
    """``parent\\name``: a Windows path joined without regex or Jinja escaping pitfalls."""
    return f"{str(parent).rstrip(chr(92))}\\{name}"


def _role_filters(role: str, filename: str) -> Any:
    """Another role's filter file (roles/<role>/filter_plugins/<filename>), loaded by path
    under a private name: one copy of the Linux image's input hash and of the account
    service's environment."""
    name = f"_mt5_farm_role_{role}_{Path(filename).stem}"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / role / "filter_plugins" / filename
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[name]
            raise
    return sys.modules[name]


def mt5_windows_input_hash(inputs: Mapping[str, Any]) -> str:
    """The Linux image's input hash (mt5_image_input_hash), over the Windows image's inputs."""
    return _role_filters("mt5_image", "mt5_image.py").mt5_image_input_hash(inputs)


class FilterModule:
    """mt5_windows's own filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "mt5_windows_container_specs": mt5_windows_container_specs,
            "mt5_windows_firewall_rules": mt5_windows_firewall_rules,
            "mt5_windows_defender_paths": mt5_windows_defender_paths,
            "mt5_windows_san": mt5_windows_san,
            "mt5_windows_input_hash": mt5_windows_input_hash,
            "mt5_windows_input_source": mt5_windows_input_source,
            "mt5_windows_pair": mt5_windows_pair,
            "mt5_windows_path": mt5_windows_path,
        }
