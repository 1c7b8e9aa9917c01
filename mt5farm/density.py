"""Density caps: how many MT5 accounts (one container each) a host can carry.

    memory cap = floor((host memory - co-located infrastructure - headroom) / per-account memory limit)
    CPU cap    = floor((host CPUs - CPUs kept for the host) / per-account CPU reservation)
    cap        = min(memory cap, CPU cap)   (memory cap alone when the CPU count is unknown)

Which numbers come from where:

* The PRD (seed 001, sections 3.4 and 4.4): per-account memory limit 1.2 GiB,
  reservation 768 MiB, CPU limit 0.5, reservation 0.25 (Linux, docker-stack-linux.yml);
  1.8 GiB per account on Windows; service sizes nginx 1 GiB (Linux), redis 4, postgres 8,
  prometheus 2, grafana 2 GiB. Given its own inputs (64 GiB host, 16 GiB infrastructure on
  Linux, 17.5 GiB on Windows, 2 GiB margin) these functions reproduce its caps, 38 and 24.
  Note the PRD's Linux "16 GB infrastructure" leaves out its own 1 GiB Nginx; counted, the
  same host holds 37 (see filter_plugins/README.md).
* Ours: 2 GiB headroom, 1 CPU kept back for the host, the Windows memory reservation
  (1.2 GiB) and CPU figures, node_exporter's 64 MiB, and the rule that platform services
  run only on Linux hosts in the ``platform`` group.

All arithmetic is exact (``fractions.Fraction`` built from the decimal text of each input), so
46 / 1.2 is 38.33..., never 37.999... or 38.000...1. Results handed back to Jinja are plain
int/float/str/list/dict values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

from mt5farm.errors import FarmError

# The operating systems an account runs on (a host is in mt5_linux or mt5_windows).
OSES: tuple[str, ...] = ("linux", "windows")

# Per-account resources. Linux figures are the PRD's docker-stack-linux.yml limits and
# reservations; Windows memory limit is the PRD's 1.8 GiB, the rest is ours. `simulator` is
# ours too, for accounts of the simulator backend on either OS (no terminal, no Wine: the
# account service and its simulator, about 85 MiB measured on the demo with docker stats): a
# quarter GiB limit and a twentieth of a CPU reserved, so a demo host carries tens of them.
DEFAULT_PROFILES: dict[str, dict[str, Fraction]] = {
    "linux": {
        "memory_limit": Fraction("1.2"),
        "memory_reservation": Fraction("0.75"),  # the PRD's 768M
        "cpu_limit": Fraction("0.5"),
        "cpu_reservation": Fraction("0.25"),
    },
    "windows": {
        "memory_limit": Fraction("1.8"),
        "memory_reservation": Fraction("1.2"),
        "cpu_limit": Fraction("0.5"),
        "cpu_reservation": Fraction("0.25"),
    },
    "simulator": {
        "memory_limit": Fraction("0.25"),
        "memory_reservation": Fraction("0.125"),
        "cpu_limit": Fraction("0.5"),
        "cpu_reservation": Fraction("0.05"),
    },
}
# The profiles mt5_density_profiles may override: one per OS, and the simulator backend's.
PROFILE_NAMES: tuple[str, ...] = (*OSES, "simulator")
PROFILE_KEYS: tuple[str, ...] = ("memory_limit", "memory_reservation", "cpu_limit", "cpu_reservation")

# Memory (GiB) of the services that may share a host with the accounts. The PRD's figures
# (its Linux table), except node_exporter and alertmanager (its container limit), which are ours.
DEFAULT_SERVICE_MEMORY_GIB: dict[str, Fraction] = {
    "nginx": Fraction(1),
    "redis": Fraction(4),
    "postgres": Fraction(8),
    "prometheus": Fraction(2),
    "grafana": Fraction(2),
    "alertmanager": Fraction("0.25"),
    "node_exporter": Fraction("0.0625"),
}
# What a host in the `platform` group runs, and what every farm host runs.
PLATFORM_GROUP_SERVICES: tuple[str, ...] = ("nginx", "redis", "postgres", "prometheus", "grafana", "alertmanager")
FARM_HOST_SERVICES: tuple[str, ...] = ("node_exporter",)

DEFAULT_HEADROOM_GIB = Fraction(2)  # ours: the host OS, Docker, page cache
DEFAULT_RESERVED_CPUS = Fraction(1)  # ours: the host OS, Docker, co-located services

_UNITS_GIB: dict[str, Fraction] = {
    "": Fraction(1),  # a bare number is GiB
    "b": Fraction(1, 1024**3),
    "k": Fraction(1, 1024**2),
    "m": Fraction(1, 1024),
    "g": Fraction(1),
    "t": Fraction(1024),
}
_SIZE_RE = re.compile(r"^\s*(?P<num>[-+]?[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>b|[kmgt](?:i?b)?)?\s*$", re.IGNORECASE)
_NUMBER_RE = re.compile(r"^\s*(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*$")
_SIZE_HINT = 'a number of GiB (64, 1.2) or a string with a binary unit ("64G", "64GiB", "768M", "65536MiB")'
_CPU_HINT = "a number of CPUs (16, 0.5)"


# --------------------------------------------------------------------------------------
# Parsing (exact). These raise FarmError naming the filter, argument and value.
# --------------------------------------------------------------------------------------


def _bad(filter_name: str, arg: str, value: Any, why: str, hint: str) -> FarmError:
    return FarmError(f"{filter_name}: {arg} {why}: got {value!r} ({type(value).__name__}); expected {hint}")


def _number(value: Any, filter_name: str, arg: str, hint: str) -> Fraction:
    """A real number as an exact Fraction; rejects bool, None, NaN, infinities and junk."""
    if isinstance(value, bool) or value is None:
        raise _bad(filter_name, arg, value, "is not a number", hint)
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(int(value))
    if isinstance(value, (float, Decimal)):
        if not math.isfinite(value):
            raise _bad(filter_name, arg, value, "is not a finite number", hint)
        return Fraction(str(value))
    if isinstance(value, str) and _NUMBER_RE.match(value):
        return Fraction(value.strip())
    raise _bad(filter_name, arg, value, "is not a number", hint)


def parse_size_gib(value: Any, filter_name: str = "mt5_size_gib", arg: str = "size", *, allow_zero: bool = False) -> Fraction:
    """Parse a memory size to an exact number of GiB.

    Numbers are GiB. Strings carry a binary unit as Docker reads them: K, M, G, T, optionally
    followed by ``i``/``B`` ("768M", "768MiB", "1.2g", "64GB" are all binary).
    """
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise _bad(filter_name, arg, value, "is not a size", _SIZE_HINT)
        unit = (match.group("unit") or "")[:1].lower()
        size = Fraction(match.group("num")) * _UNITS_GIB[unit]
    else:
        size = _number(value, filter_name, arg, _SIZE_HINT)
    if size < 0 or (size == 0 and not allow_zero):
        why = "must be zero or more" if allow_zero else "must be more than zero"
        raise _bad(filter_name, arg, value, why, _SIZE_HINT)
    return size


def parse_cpus(value: Any, filter_name: str, arg: str, *, allow_zero: bool = False) -> Fraction:
    """Parse a CPU count (may be fractional) to an exact Fraction."""
    cpus = _number(value, filter_name, arg, _CPU_HINT)
    if cpus < 0 or (cpus == 0 and not allow_zero):
        why = "must be zero or more" if allow_zero else "must be more than zero"
        raise _bad(filter_name, arg, value, why, _CPU_HINT)
    return cpus


def parse_os(value: Any, filter_name: str) -> str:
    """``linux`` or ``windows`` (any case, trimmed); raises FarmError for anything else."""
    if not isinstance(value, str) or value.strip().lower() not in OSES:
        raise _bad(filter_name, "os", value, "is not a known OS", " or ".join(repr(name) for name in OSES))
    return value.strip().lower()


def fmt(value: Fraction, places: int = 4) -> str:
    """A short decimal for messages: 64, 1.2, 0.0625, 17.0625 (truncated, never rounded up)."""
    if value.denominator == 1:
        return str(value.numerator)
    scaled = math.floor(value * 10**places) if value >= 0 else -math.floor(-value * 10**places)
    text = f"{Decimal(scaled).scaleb(-places):f}".rstrip("0").rstrip(".")
    return text or "0"


def _gib_float(value: Fraction) -> float:
    return float(value)


def gib_to_bytes(value_gib: Fraction) -> int:
    """Bytes of a size in GiB, rounded down (as Docker reads ``1.2g``)."""
    return math.floor(value_gib * 1024**3)


# --------------------------------------------------------------------------------------
# Exact building blocks (used by mt5farm.inventory and mt5farm.accounts as well)
# --------------------------------------------------------------------------------------


def profile_name(os: Any, backend: Any = None, filter_name: str = "mt5_density_profile") -> str:
    """Which profile an account gets: ``simulator`` for the simulator backend, else its host's OS."""
    return "simulator" if backend == "simulator" else parse_os(os, filter_name)


def profile_exact(
    os: Any, profiles: Any = None, filter_name: str = "mt5_density_profile", arg: str = "profiles", backend: Any = None
) -> dict[str, Fraction]:
    """The per-account resources for an account of ``backend`` on an ``os`` host (profile_name):
    defaults with `profiles` overrides merged in."""
    parse_os(os, filter_name)
    name = profile_name(os, backend, filter_name)
    merged = dict(DEFAULT_PROFILES[name])
    if profiles is not None:
        if not isinstance(profiles, Mapping):
            raise _bad(filter_name, arg, profiles, "is not a mapping", "e.g. {linux: {memory_limit: 1.2G}}")
        unknown = sorted(str(k) for k in profiles if k not in PROFILE_NAMES)
        if unknown:
            raise _bad(filter_name, arg, unknown, "names an unknown profile", " or ".join(PROFILE_NAMES))
        override = profiles.get(name)
        if override is not None:
            if not isinstance(override, Mapping):
                raise _bad(filter_name, f"{arg}.{name}", override, "is not a mapping", "keys " + ", ".join(PROFILE_KEYS))
            for key in override:
                if key not in PROFILE_KEYS:
                    raise _bad(filter_name, f"{arg}.{name}", key, "has an unknown key", "keys " + ", ".join(PROFILE_KEYS))
                if key.startswith("memory"):
                    merged[key] = parse_size_gib(override[key], filter_name, f"{arg}.{name}.{key}")
                else:
                    merged[key] = parse_cpus(override[key], filter_name, f"{arg}.{name}.{key}")
    if merged["memory_reservation"] > merged["memory_limit"]:
        raise FarmError(
            f"{filter_name}: {arg}.{name}: memory_reservation ({fmt(merged['memory_reservation'])} GiB) is above "
            f"memory_limit ({fmt(merged['memory_limit'])} GiB); Docker refuses that: lower the reservation"
        )
    return merged


def host_services(group_names: Any, filter_name: str = "mt5_host_services") -> list[str]:
    """The infrastructure services a farm host runs, from the groups it is in."""
    if isinstance(group_names, str) or not isinstance(group_names, Iterable):
        raise _bad(filter_name, "group_names", group_names, "is not a list of group names", "e.g. group_names")
    groups = {str(g) for g in group_names}
    services = list(FARM_HOST_SERVICES)
    if "platform" in groups:
        services = list(PLATFORM_GROUP_SERVICES) + services
    return services


def infrastructure_exact(services: Any, service_memory: Any = None, filter_name: str = "mt5_infrastructure_gib") -> Fraction:
    """Sum of the memory of the named services (GiB), from the default table with overrides."""
    if isinstance(services, str) or not isinstance(services, Iterable):
        raise _bad(filter_name, "services", services, "is not a list of service names", "e.g. ['nginx', 'redis']")
    table = dict(DEFAULT_SERVICE_MEMORY_GIB)
    if service_memory is not None:
        if not isinstance(service_memory, Mapping):
            raise _bad(filter_name, "service_memory", service_memory, "is not a mapping", "e.g. {postgres: 16}")
        for key, value in service_memory.items():
            table[str(key)] = parse_size_gib(value, filter_name, f"service_memory.{key}", allow_zero=True)
    total = Fraction(0)
    for service in services:
        if not isinstance(service, str) or service not in table:
            known = ", ".join(sorted(table))
            raise _bad(filter_name, "services", service, "names a service of unknown size", f"one of {known}, or add it to service_memory")
        total += table[service]
    return total


def density_exact(
    host_memory: Any,
    os: Any = "linux",
    cpus: Any = None,
    infrastructure: Any = None,
    services: Any = None,
    headroom: Any = None,
    reserved_cpus: Any = None,
    profiles: Any = None,
    service_memory: Any = None,
    filter_name: str = "mt5_density_cap",
    backend: Any = None,
) -> dict[str, Any]:
    """The cap with exact inputs (Fractions); see mt5_density_cap for the arguments. ``backend``
    picks the per-account profile with ``os`` (profile_name: the simulator's, or the OS's)."""
    name = parse_os(os, filter_name)
    memory = parse_size_gib(host_memory, filter_name, "host_memory")
    profile = profile_exact(name, profiles, filter_name, backend=backend)
    if infrastructure is not None:
        infra = parse_size_gib(infrastructure, filter_name, "infrastructure", allow_zero=True)
        used_services = None
    else:
        wanted = FARM_HOST_SERVICES if services is None else services
        infra = infrastructure_exact(wanted, service_memory, filter_name)
        used_services = [str(s) for s in wanted]
    room = DEFAULT_HEADROOM_GIB if headroom is None else parse_size_gib(headroom, filter_name, "headroom", allow_zero=True)
    kept = DEFAULT_RESERVED_CPUS if reserved_cpus is None else parse_cpus(reserved_cpus, filter_name, "reserved_cpus", allow_zero=True)
    host_cpus = None if cpus is None else parse_cpus(cpus, filter_name, "cpus")

    per_account = profile["memory_limit"]
    available = memory - infra - room
    memory_quotient = available / per_account
    memory_cap = max(0, math.floor(memory_quotient))
    if available > 0:
        memory_why = f"({fmt(memory)} − {fmt(infra)} − {fmt(room)}) GiB / {fmt(per_account)} GiB = {fmt(memory_quotient, 1)} → {memory_cap}"
    else:
        memory_why = f"({fmt(memory)} − {fmt(infra)} − {fmt(room)}) GiB leaves no memory for accounts → 0"

    cpu_cap: int | None = None
    cpu_why = ""
    if host_cpus is not None:
        per_cpu = profile["cpu_reservation"]
        cpu_quotient = (host_cpus - kept) / per_cpu
        cpu_cap = max(0, math.floor(cpu_quotient))
        if host_cpus > kept:
            cpu_why = f"({fmt(host_cpus)} − {fmt(kept)}) CPUs / {fmt(per_cpu)} CPU = {fmt(cpu_quotient, 1)} → {cpu_cap}"
        else:
            cpu_why = f"({fmt(host_cpus)} − {fmt(kept)}) CPUs leaves no CPU for accounts → 0"

    if cpu_cap is None:
        cap, bound = memory_cap, "memory"
        reason = f"memory-bound: {memory_why} (CPU count unknown: CPU bound not checked)"
    elif cpu_cap < memory_cap:
        cap, bound = cpu_cap, "cpu"
        reason = f"cpu-bound: {cpu_why} (memory would allow {memory_cap}: {memory_why})"
    else:
        cap, bound = memory_cap, "memory"
        reason = f"memory-bound: {memory_why} (CPU would allow {cpu_cap}: {cpu_why})"

    return {
        "cap": cap,
        "memory_cap": memory_cap,
        "cpu_cap": cpu_cap,
        "bound": bound,
        "reason": reason,
        "os": name,
        "profile": profile_name(name, backend, filter_name),
        "host_memory": memory,
        "infrastructure": infra,
        "services": used_services,
        "headroom": room,
        "available_memory": max(Fraction(0), available),
        "account_memory": per_account,
        "host_cpus": host_cpus,
        "reserved_cpus": kept,
        "account_cpu_reservation": profile["cpu_reservation"],
    }


# --------------------------------------------------------------------------------------
# The filters (plain values in and out)
# --------------------------------------------------------------------------------------


def mt5_size_gib(value: Any) -> float:
    """A memory size in GiB: ``"768M" | mt5_size_gib`` → 0.75, ``64`` → 64.0.

    Raises FarmError for bool, None, zero, negative, NaN/inf and unparsable strings.
    """
    return _gib_float(parse_size_gib(value, "mt5_size_gib", "size"))


def mt5_density_profile(os: str, profiles: Mapping[str, Any] | None = None, backend: str | None = None) -> dict[str, Any]:
    """The per-account resource profile for an account of ``backend`` on an ``os`` host
    ('linux' or 'windows'): the simulator backend's own profile, else the OS's.

    ``profiles`` is the inventory's ``mt5_density_profiles`` (optional): per profile (linux,
    windows, simulator), any of memory_limit, memory_reservation (sizes), cpu_limit,
    cpu_reservation (CPUs).

    Returns {os, profile, memory_limit_gib, memory_reservation_gib, memory_limit_bytes,
    memory_reservation_bytes, cpu_limit, cpu_reservation} (bytes rounded down, as Docker does).
    """
    profile = profile_exact(os, profiles, backend=backend)
    return {
        "os": parse_os(os, "mt5_density_profile"),
        "profile": profile_name(os, backend),
        "memory_limit_gib": _gib_float(profile["memory_limit"]),
        "memory_reservation_gib": _gib_float(profile["memory_reservation"]),
        "memory_limit_bytes": gib_to_bytes(profile["memory_limit"]),
        "memory_reservation_bytes": gib_to_bytes(profile["memory_reservation"]),
        "cpu_limit": float(profile["cpu_limit"]),
        "cpu_reservation": float(profile["cpu_reservation"]),
    }


def mt5_host_services(group_names: list[str]) -> list[str]:
    """The infrastructure services co-located on a farm host, from its ``group_names``.

    Every farm host runs node_exporter; a host in ``platform`` also runs nginx, redis,
    postgres, prometheus, grafana and alertmanager.
    """
    return host_services(group_names)


def mt5_infrastructure_gib(services: list[str], service_memory: Mapping[str, Any] | None = None) -> float:
    """Memory (GiB) of the co-located services named in ``services``.

    ``service_memory`` is the inventory's ``mt5_platform_service_memory_gb`` (optional):
    service name → size, merged over the defaults (nginx 1, redis 4, postgres 8,
    prometheus 2, grafana 2, alertmanager 0.25, node_exporter 0.0625).
    """
    return _gib_float(infrastructure_exact(services, service_memory))


def mt5_density_cap(
    host_memory: Any,
    os: str = "linux",
    cpus: Any = None,
    infrastructure: Any = None,
    services: list[str] | None = None,
    headroom: Any = None,
    reserved_cpus: Any = None,
    profiles: Mapping[str, Any] | None = None,
    service_memory: Mapping[str, Any] | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """How many accounts a host can carry, and why.

    ``host_memory`` | mt5_density_cap(os, cpus=, infrastructure= | services=, headroom=,
    reserved_cpus=, profiles=, service_memory=, backend=)

    * host_memory: size (number = GiB, or "64G", "65536MiB", ...).
    * os: 'linux' or 'windows' (selects the per-account profile); backend: 'simulator'
      selects the simulator's profile instead (accounts of one backend).
    * cpus: the host's CPU count; None (default) = unknown, CPU bound not checked.
    * infrastructure: an explicit size of what else runs on the host; when omitted it is the
      sum of ``services`` (default ['node_exporter']) from the service memory table.
    * headroom: size kept free (default 2 GiB); reserved_cpus: CPUs kept back (default 1).

    Returns {cap, memory_cap, cpu_cap (None when cpus unknown), bound ('memory'|'cpu'),
    reason, os, profile, host_memory_gib, infrastructure_gib, services (None when an explicit
    infrastructure was given), headroom_gib, available_memory_gib, account_memory_gib,
    host_cpus, reserved_cpus, account_cpu_reservation}.
    """
    exact = density_exact(
        host_memory, os, cpus, infrastructure, services, headroom, reserved_cpus, profiles, service_memory, backend=backend
    )
    return to_plain(exact)


def to_plain(exact: Mapping[str, Any]) -> dict[str, Any]:
    """The dict of density_exact with Fractions turned into floats and *_gib names."""
    gib_keys = ("host_memory", "infrastructure", "headroom", "available_memory", "account_memory")
    plain: dict[str, Any] = {}
    for key, value in exact.items():
        if key in gib_keys:
            plain[f"{key}_gib"] = float(value)
        elif isinstance(value, Fraction):
            plain[key] = float(value)
        else:
            plain[key] = value
    return plain
