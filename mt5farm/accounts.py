"""The account model: what an inventory account is, and what the roles deploy for it.

An account of a host's ``mt5_accounts`` (schema: docs/inventory.md; checked as a whole by
``mt5farm.inventory`` before any role runs) becomes a *resolved account*
(``mt5_resolved_accounts``): the same account with its defaults filled in and everything
derived from it named once, its container and volume, its published ports, its memory and
CPU limits and its labels. Linux and Windows build on the same record, so an account is
called and reached the same way on either OS. Its secrets (``mt5_account_secrets``) are
kept apart: they only ever reach a no_log module argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mt5farm import density
from mt5farm.credentials import mt5_account_credential
from mt5farm.errors import FarmError
from mt5farm.values import is_int, type_name

# ---------------------------------------------------------------------------------------
# The account schema (docs/inventory.md mirrors these tables)
# ---------------------------------------------------------------------------------------
COMMON_KEYS: tuple[str, ...] = (
    "login",
    "server",
    "password",
    "enabled",
    "name",
    "backend",
    "memory",
    "cpus",
    "api_port",
    "experts",
    "comment",
)
# Keys an account may carry only on one OS.
# canary: the account is one of the broker compatibility canaries (playbooks/canary.yml), a
# test of the Linux (Wine) path.
OS_KEYS: dict[str, tuple[str, ...]] = {"linux": ("vnc", "vnc_password", "canary"), "windows": ("isolation",)}
ALL_KEYS: tuple[str, ...] = COMMON_KEYS + OS_KEYS["linux"] + OS_KEYS["windows"]
BACKENDS: dict[str, tuple[str, ...]] = {"linux": ("mt5linux", "mt5", "simulator"), "windows": ("mt5", "simulator")}
DEFAULT_BACKEND: dict[str, str] = {"linux": "mt5linux", "windows": "mt5"}
# Windows container isolation (docker run --isolation); process is the default.
ISOLATION_MODES: tuple[str, ...] = ("process", "hyperv")
# The inventory group of the hosts of each OS.
OS_GROUPS: dict[str, str] = {"linux": "mt5_linux", "windows": "mt5_windows"}
API_PORT_RANGE: tuple[int, int] = (1024, 65535)
# Ports an account's container publishes, unless the account sets api_port: computed from
# the login, so they are stable across runs and hosts (base + login mod span).
API_PORT_BASE: int = 20000
VNC_PORT_BASE: int = 30000
PORT_SPAN: int = 10000


def account_ports(login: int, api_port: int | None = None) -> tuple[int, int]:
    """The (API, VNC) host ports of an account: its api_port if set, else computed from the login."""
    computed = login % PORT_SPAN
    return (api_port if api_port is not None else API_PORT_BASE + computed), VNC_PORT_BASE + computed


def _resolve(account: Any, os: str, profile: Mapping[str, Any]) -> dict[str, Any]:
    """One resolved account (see mt5_resolved_accounts); raises FarmError on a login that is not one."""
    login = account.get("login") if isinstance(account, Mapping) else None
    if not is_int(login) or login <= 0:
        raise FarmError(f"mt5_resolved_accounts: every account needs a positive integer login (run playbooks/validate.yml), got {login!r}")
    backend = account.get("backend") or DEFAULT_BACKEND[os]
    limit_bytes = density.gib_to_bytes(profile["memory_limit"])
    memory = account.get("memory")
    memory_bytes = (
        density.gib_to_bytes(density.parse_size_gib(memory, "mt5_resolved_accounts", "memory")) if memory is not None else limit_bytes
    )
    cpus = account.get("cpus")
    cpu_limit = density.parse_cpus(cpus, "mt5_resolved_accounts", "cpus") if cpus is not None else profile["cpu_limit"]
    vnc = os == "linux" and account.get("vnc") is True
    api_port, vnc_port = account_ports(login, account.get("api_port"))
    return {
        "login": login,
        "server": account.get("server"),
        "backend": backend,
        "enabled": account.get("enabled", True) is not False,
        "name": account.get("name") or f"mt5-{login}",
        "container": f"mt5-{login}",
        "volume": f"mt5-{login}-data",
        "api_port": api_port,
        "vnc": vnc,
        "vnc_port": vnc_port if vnc else None,
        "memory_bytes": memory_bytes,
        "memory_reservation_bytes": min(density.gib_to_bytes(profile["memory_reservation"]), memory_bytes),
        "nano_cpus": int(cpu_limit * 10**9),
        "isolation": account.get("isolation") if os == "windows" else None,
        "experts": list(account.get("experts") or []),
        "labels": {"mt5farm.login": str(login), "mt5farm.server": str(account.get("server")), "mt5farm.backend": backend},
    }


def mt5_resolved_accounts(accounts: Any, os: str = "linux", profiles: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every account of a host's (validated) mt5_accounts, resolved: names, ports, limits, labels.

    The one place that turns an inventory account into what runs: the container and volume
    names, the published ports, the memory and CPU limits (the density profile of ``os``,
    'linux' or 'windows', or the simulator's for a simulator account, with ``profiles`` =
    mt5_density_profiles overrides, or the account's own memory/cpus) and the labels. Secrets are not copied.

    Returns, per account in inventory order: login, server, backend, enabled, name,
    container (mt5-<login>), volume (mt5-<login>-data), api_port, vnc, vnc_port (None when
    vnc is off), memory_bytes, memory_reservation_bytes (never above memory_bytes),
    nano_cpus, isolation (the account's own on Windows, else None), experts, labels.
    Raises FarmError when ``accounts`` is not a list or an account has no positive login.
    """
    if not isinstance(accounts, list):
        raise FarmError(f"mt5_resolved_accounts: accounts must be a host's mt5_accounts list, got {type_name(accounts)}")
    name = density.parse_os(os, "mt5_resolved_accounts")
    by_profile = {
        kind: density.profile_exact(name, profiles, "mt5_resolved_accounts", "profiles", backend=kind) for kind in (name, "simulator")
    }
    return [_resolve(account, name, by_profile[_profile_of(account, name)]) for account in accounts]


def _profile_of(account: Any, os: str) -> str:
    """The density profile an account gets (density.profile_name): its backend's, else its OS's."""
    backend = account.get("backend") if isinstance(account, Mapping) else None
    return density.profile_name(os, backend or DEFAULT_BACKEND[os])


def mt5_account_secrets(
    accounts: Any, common: Mapping[str, Any] | None = None, derived: Mapping[str, Any] | None = None
) -> dict[str, dict[str, str]]:
    """The secret files each enabled account's container gets: login (text) → file name → content.

    From the account: ``password`` (absent for simulator accounts) and, with vnc on,
    ``vnc_password``. ``common`` adds files every account gets alike (e.g. the SHA-256 of the
    fleet's metrics token); ``derived`` maps a file name to a base secret, and each account's
    file holds its own credential ``base | mt5_account_credential(<file name>, login)``
    (mt5farm.credentials: api_key, redis_password, postgres_password), so that no account
    holds a credential that opens another. Empty values and bases are left out.
    The result is secret: use it only as a no_log module argument.
    """
    if not isinstance(accounts, list):
        raise FarmError(f"mt5_account_secrets: accounts must be a host's mt5_accounts list, got {type_name(accounts)}")
    if derived is not None and not isinstance(derived, Mapping):
        raise FarmError(f"mt5_account_secrets: derived must map file names to base secrets, got {type_name(derived)}")
    shared = {name: str(value) for name, value in (common or {}).items() if value not in (None, "")}
    bases = {name: value for name, value in (derived or {}).items() if value not in (None, "") and str(value).strip()}
    secrets: dict[str, dict[str, str]] = {}
    for account in accounts:
        if account.get("enabled", True) is False:
            continue
        files = dict(shared)
        for name, base in bases.items():
            files[name] = mt5_account_credential(base, name, account["login"])
        if account.get("password") not in (None, ""):
            files["password"] = str(account["password"])
        if account.get("vnc") is True and account.get("vnc_password") not in (None, ""):
            files["vnc_password"] = str(account["vnc_password"])
        secrets[str(account["login"])] = files
    return secrets
