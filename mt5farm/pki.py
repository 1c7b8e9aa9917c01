"""TLS between the farm's hosts: when it is on, and which names each host's certificate carries.

A site of one host keeps every connection on that host (loopback, a Docker network): TLS
would protect nothing there. As soon as the inventory has a second host (Linux farm,
Windows farm or platform), Redis, Postgres and the account services' APIs are reached across
a network, and TLS is on by default (``mt5_tls: auto``); ``mt5_tls: true|false`` decides
explicitly. The certificates come from a CA kept on the controller (roles/mt5_pki).

Pure functions: no Ansible state; errors name the filter and the bad value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from mt5farm.errors import FarmError

#: The groups whose hosts count towards "more than one host".
HOST_GROUPS = ("mt5_linux", "mt5_windows", "platform")
#: The platform services' container names: the account containers on the platform host reach
#: Redis and Postgres by these names on the accounts' network, and verify them as such.
PLATFORM_SERVICE_NAMES = ("mt5-redis", "mt5-postgres")
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME_RE = re.compile(rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*$")


def _hosts(groups: Any, filter_name: str) -> set[str]:
    if not isinstance(groups, Mapping):
        raise FarmError(f"{filter_name}: groups must be the inventory's `groups` mapping, got {type(groups).__name__}")
    return {str(host) for name in HOST_GROUPS for host in (groups.get(name) or [])}


def mt5_tls_enabled(setting: Any, groups: Mapping[str, Any]) -> bool:
    """Whether traffic between the farm's hosts goes over TLS (``mt5_tls``).

    ``setting``: ``"auto"`` (or None / empty) — on when ``mt5_linux`` ∪ ``mt5_windows`` ∪
    ``platform`` has more than one distinct host; a boolean (or the strings true/false,
    yes/no, on/off) decides. ``groups``: the inventory's ``groups``.
    Raises FarmError for any other value.
    """
    hosts = _hosts(groups, "mt5_tls_enabled")
    if setting is None or (isinstance(setting, str) and setting.strip().lower() in ("", "auto")):
        return len(hosts) > 1
    if isinstance(setting, bool):
        return setting
    if isinstance(setting, str):
        word = setting.strip().lower()
        if word in ("true", "yes", "on", "1"):
            return True
        if word in ("false", "no", "off", "0"):
            return False
    raise FarmError(f"mt5_tls_enabled: mt5_tls must be auto, true or false, got {setting!r}")


def _san(name: str) -> str:
    try:
        return f"IP:{ipaddress.ip_address(name)}"
    except ValueError:
        return f"DNS:{name}"


def mt5_pki_names(host: str, view: Mapping[str, Any], groups: Mapping[str, Any], extra: Any = None) -> list[str]:
    """The subjectAltName entries of ``host``'s server certificate, in a stable order.

    Every name a client on another host (or a container on this one) dials it by: the
    inventory name when it is a DNS name, ``mt5_bind_address``, ``mt5_platform_address``,
    ``127.0.0.1`` and ``localhost`` (the services' own healthchecks and the loopback clients
    of the platform host), on a ``platform`` host also the container names ``mt5-redis`` and
    ``mt5-postgres``, then ``extra`` (the operator's own names). ``view``: the host's
    variables. Returns ``["DNS:…", "IP:…", …]``, repeats left out.
    Raises FarmError when ``extra`` is not a list of names, or a name is blank or has spaces.
    """
    _hosts(groups, "mt5_pki_names")  # refuses anything but the inventory's groups
    platform = host in [str(member) for member in groups.get("platform") or []]
    if extra is None:
        extra = []
    if not isinstance(extra, list):
        raise FarmError(f"mt5_pki_names: extra names must be a list of host names or addresses, got {type(extra).__name__}")
    names: list[str] = []
    if _DNS_NAME_RE.match(host):
        names.append(host)
    for key in ("mt5_bind_address", "mt5_platform_address"):
        value = view.get(key) if isinstance(view, Mapping) else None
        if value not in (None, ""):
            names.append(str(value))
    names += ["127.0.0.1", "localhost"]
    if platform:
        names += list(PLATFORM_SERVICE_NAMES)
    names += [str(name) for name in extra]
    entries: list[str] = []
    for name in names:
        text = name.strip()
        if not text or any(ch.isspace() for ch in text):
            raise FarmError(f"mt5_pki_names: {host}: {name!r} is not a host name or an address")
        entry = _san(text)
        if entry not in entries:
            entries.append(entry)
    return entries
