"""What runs around the account containers on a Windows host, as data.

Pure functions over the host's resolved accounts (``mt5_resolved_accounts(accounts,
'windows')``, mt5farm.accounts): the Windows firewall rules, the Defender exclusions, the
engine certificate's subjectAltName, and the small path and input helpers of the Windows
image build. The container specs themselves are mt5farm.container_specs' (one builder for
both OSes), the image's tag is mt5farm.image_hash's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, NoReturn

from mt5farm.errors import FarmError

FIREWALL_GROUP = "MT5 Farm"


def _fail(name: str, message: str) -> NoReturn:
    raise FarmError(f"{name}: {message}")


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
    accounts: list[Mapping[str, Any]], api_allowed_from: Any, docker_api_port: int, docker_api_allowed_from: Any
) -> list[dict[str, Any]]:
    """Every inbound rule the role keeps on a Windows host, and nothing else.

    One rule per enabled account (its published API port, from ``api_allowed_from``: the
    platform host's Nginx and Prometheus) and one for the Docker API (``docker_api_port``,
    from ``docker_api_allowed_from``: the controller). Each: {name, localport, remoteip
    (comma-separated), protocol, direction, action, group, description}. Raises FarmError
    when a source list is empty, names something that is not an address or network, or is
    every address (/0).
    """
    api_from = (
        _addresses("mt5_windows_firewall_rules", api_allowed_from, "mt5_windows_api_allowed_from")
        if any(account["enabled"] for account in accounts)
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
    for account in sorted((a for a in accounts if a["enabled"]), key=lambda a: a["api_port"]):
        rules.append(
            {
                "name": f"{FIREWALL_GROUP} account {account['login']}",
                "localport": str(account["api_port"]),
                "remoteip": ",".join(api_from),
                "protocol": "tcp",
                "direction": "in",
                "action": "allow",
                "group": FIREWALL_GROUP,
                "description": f"Account service of {account['container']} (REST, WebSocket, /health, /metrics)",
            }
        )
    return rules


def mt5_windows_defender_paths(accounts: list[Mapping[str, Any]], docker_root: str) -> list[str]:
    """Defender exclusions for the terminal data: each enabled account's data volume folder."""
    root = str(docker_root).rstrip("\\")
    return [f"{root}\\volumes\\{account['volume']}" for account in accounts if account["enabled"]]


def mt5_windows_san(names: Any) -> list[str]:
    """subjectAltName entries for the engine's certificate: IP:... for addresses, DNS:... else.

    Blank and repeated names are left out; raises FarmError unless ``names`` is a non-empty list.
    """
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
    Raises FarmError when the spec has neither path nor url.
    """
    spec = item.get("spec") or {}
    digest = str(spec.get("sha256", "")).lower()
    if "path" in spec:
        return {"src": str(spec["path"]), "sha256": digest}
    if "url" in spec:
        return {"src": f"{cache}/{digest}-{str(item['context_path']).rsplit('/', 1)[-1]}", "sha256": digest}
    _fail("mt5_windows_input_source", f"{item.get('label')}: neither path nor url")


def mt5_windows_pair(pair: Any) -> dict[str, str]:
    """A (source, context path) pair, or a dict item {key: context path, value: {src}}, as {src, dest}."""
    if isinstance(pair, Mapping) and "key" in pair:
        return {"src": str(pair["value"]["src"]), "dest": str(pair["key"])}
    source, dest = pair
    return {"src": str(source), "dest": str(dest)}


def mt5_windows_path(name: Any, parent: str) -> str:
    """``parent\\name``: a Windows path joined without regex or Jinja escaping pitfalls."""
    return f"{str(parent).rstrip(chr(92))}\\{name}"
