"""Inventory validation: every account of every farm host checked as a whole, all problems at once.

playbooks/validate.yml calls this once, on the controller, before any host is touched:

    {{ dict(groups['all'] | zip(groups['all'] | map('extract', hostvars)))
       | mt5_inventory_report(groups) }}

Each problem names the host, the account, what is wrong and what to do. Secrets are never
quoted: password and vnc_password are only checked for presence, and values of unknown keys
are never printed (a misspelt "passwrd" holds a password too).

With Ansible 2.19's lazy templating, an account whose password is "{{ vault_x['123'] }}" and
whose vault was not loaded would crash any ordinary filter that touches it. The filters are
marked ``accept_lazy_markers`` (filter_plugins/mt5_inventory.py), so such a value arrives
here as an undefined marker (a ``jinja2.Undefined``) and becomes a problem message instead.
The account schema and the ports are the account model's (mt5farm.accounts); the density
rules are mt5farm.density's.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import jinja2

from mt5farm import density
from mt5farm.accounts import (
    ALL_KEYS,
    API_PORT_BASE,
    API_PORT_RANGE,
    BACKENDS,
    COMMON_KEYS,
    DEFAULT_BACKEND,
    ISOLATION_MODES,
    OS_GROUPS,
    OS_KEYS,
    PORT_SPAN,
    account_ports,
)
from mt5farm.errors import FarmError
from mt5farm.values import is_int, type_name

# Ansible's own undefined and inline-vault types, when Ansible is there (the package does
# not need it): validation must recognise them, never template or decrypt them.
try:
    from ansible.template import AnsibleUndefined
except ImportError:  # pragma: no cover - without ansible-core >= 2.19 only jinja2's undefined types exist
    AnsibleUndefined = jinja2.Undefined

try:
    from ansible.parsing.vault import EncryptedString
except ImportError:  # pragma: no cover - before 2.19 inline vault values are str subclasses
    EncryptedString = str

OS_LABEL: dict[str, str] = {"linux": "Linux", "windows": "Windows"}

# The inventory variables validation reads from each host.
HOST_VARS: tuple[str, ...] = (
    "mt5_accounts",
    "mt5_host_memory_gb",
    "mt5_host_cpus",
    "mt5_density_profiles",
    "mt5_platform_service_memory_gb",
    "mt5_density_headroom_gb",
    "mt5_density_reserved_cpus",
)

_MISSING: Any = object()
_UNDEFINED_NAME_RE = re.compile(r"'([^']+)' is undefined")
_MISSING_KEY_RE = re.compile(r"has no attribute '([^']*)'")


@dataclass(frozen=True, order=True)
class Problem:
    """One finding; sorts by host, then host-level before accounts before density, then item,
    then (sorted() being stable) the order in which the checks found them: login first."""

    host: str
    section: int  # 0 host, 1 account, 2 density
    item: int
    text: str = field(compare=False)


# ---------------------------------------------------------------------------------------
# Reading values that may be unresolved templates
# ---------------------------------------------------------------------------------------


def _read(mapping: Mapping[str, Any], key: str) -> Any:
    """mapping[key], _MISSING when absent; a templating error becomes a jinja2.Undefined."""
    if key not in mapping:
        return _MISSING
    try:
        return mapping[key]
    # Blind on purpose: an eager templar (plain HostVarsVars access) raises whatever the
    # template raised, and any such error is a problem to report, not a crash.
    except Exception as exc:  # noqa: BLE001
        return jinja2.Undefined(hint=f"{type(exc).__name__}: {exc}")


def _unresolved(value: Any, secret: bool) -> str | None:
    """If value is an undefined/failed template: a description safe to print, else None."""
    if not isinstance(value, jinja2.Undefined):
        return None
    try:
        message = str(value._undefined_message)
    # Blind on purpose: a marker's message is best effort and must never crash validation.
    except Exception:  # noqa: BLE001  # pragma: no cover
        message = ""
    is_undefined = isinstance(value, AnsibleUndefined) or type(value) in (jinja2.Undefined, jinja2.StrictUndefined)
    if not secret:
        return f"could not be templated ({message})" if message else "could not be templated"
    # For secrets print only a variable name or a dictionary key, never a message that
    # could carry a decrypted value.
    if is_undefined and (found := _UNDEFINED_NAME_RE.search(message)):
        return f"refers to an undefined variable ({found.group(1)})"
    if is_undefined and (found := _MISSING_KEY_RE.search(message)):
        return f"refers to a vault entry that is not defined (key {found.group(1)!r})"
    if is_undefined:
        return "refers to an undefined variable"
    return "could not be templated (details hidden because they may concern a secret)"


def _error_text(exc: FarmError) -> str:
    """The first line of a FarmError's message (a problem is one line)."""
    return str(exc).split("\n", 1)[0]


# ---------------------------------------------------------------------------------------
# One account
# ---------------------------------------------------------------------------------------


class _AccountChecker:
    """Checks one account dict; collects problems for it."""

    def __init__(self, host: str, index: int, os: str | None, profile: dict[str, Fraction] | None, host_cpus: Fraction | None):
        self.host = host
        self.index = index
        self.os = os
        self.profile = profile
        self.host_cpus = host_cpus
        self.label = f"host {host}, account #{index + 1} in mt5_accounts"
        self.login_key = "<login>"  # the vault key to suggest, once the login is known
        self.problems: list[Problem] = []

    def add(self, what: str) -> None:
        self.problems.append(Problem(self.host, 1, self.index, f"{self.label}: {what}"))

    # Each check returns the parsed value (or None) so the host checks can use it.

    def login(self, account: Mapping[str, Any]) -> int | None:
        value = _read(account, "login")
        if value is _MISSING:
            self.add("login is missing; add `login: <MT5 account number>` (a whole number, no quotes)")
            return None
        if (why := _unresolved(value, secret=False)) is not None:
            self.add(f"login {why}; write the account number itself")
            return None
        if is_int(value):
            if value > 0:
                self.label = f"host {self.host}, account {value}"
                self.login_key = str(int(value))
                return int(value)
            self.add(f"login must be a positive whole number, got {value}; write the MT5 account number (e.g. 12345678)")
            return None
        if isinstance(value, str) and value.strip().isdigit():
            self.add(f"login is quoted ({value!r}); write {value.strip()} without quotes")
            return None
        if isinstance(value, bool):
            self.add("login is true/false; write the MT5 account number (e.g. 12345678)")
            return None
        shown = repr(value) if isinstance(value, (str, float)) else type_name(value)
        self.add(f"login must be a positive whole number, got {shown}; write the MT5 account number (e.g. 12345678)")
        return None

    def server(self, account: Mapping[str, Any]) -> None:
        value = _read(account, "server")
        if value is _MISSING:
            self.add("server is missing; add `server: <broker server name, as in the MT5 login dialog>`")
        elif (why := _unresolved(value, secret=False)) is not None:
            self.add(f"server {why}; define the variable or write the server name")
        elif isinstance(value, str) and not value.strip():
            self.add("server is empty; write the broker's server name, as in the MT5 login dialog")
        elif not isinstance(value, str):
            self.add(f"server must be text, got {type_name(value)}; write the broker's server name")

    def backend(self, account: Mapping[str, Any]) -> str | None:
        value = _read(account, "backend")
        if value is _MISSING:
            return DEFAULT_BACKEND.get(self.os or "")
        if (why := _unresolved(value, secret=False)) is not None:
            self.add(f"backend {why}")
            return None
        if self.os is None:
            choices = sorted(set(BACKENDS["linux"]) | set(BACKENDS["windows"]))
        else:
            choices = list(BACKENDS[self.os])
        if isinstance(value, str) and value in choices:
            return value
        where = f" on {OS_LABEL[self.os]} hosts" if self.os else ""
        shown = repr(value) if isinstance(value, str) else type_name(value)
        self.add(f"backend {shown} is not available{where}; use one of {', '.join(choices)}")
        return None

    def secret(self, account: Mapping[str, Any], key: str, required_because: str, vault_var: str) -> None:
        example = f"\"{{{{ {vault_var}['{self.login_key}'] }}}}\""
        value = _read(account, key)
        if value is _MISSING:
            self.add(f"{key} is missing ({required_because}); add `{key}: {example}` and the password to the vault file")
            return
        if (why := _unresolved(value, secret=True)) is not None:
            if why.startswith("refers to"):
                fix = "add it to the vault file (see inventories/example/group_vars/all/vault.yml.example) and run with the vault"
            else:
                fix = f"check the expression (e.g. {example})"
            self.add(f"{key} {why}; {fix}")
            return
        if isinstance(value, EncryptedString) and not isinstance(value, str):
            return  # an inline !vault value: present; decrypted only where it is used
        if value is None or (isinstance(value, str) and not value.strip()):
            self.add(f"{key} is empty ({required_because}); set it from the vault, e.g. `{key}: {example}`")
        elif not isinstance(value, str):
            self.add(f"{key} must be a string, got {type_name(value)}; quote it (better: keep it in the vault)")

    def enabled(self, account: Mapping[str, Any]) -> bool:
        value = _read(account, "enabled")
        if value is _MISSING:
            return True
        if isinstance(value, bool):
            return value
        why = _unresolved(value, secret=False) or f"must be true or false, got {type_name(value)}"
        self.add(f"enabled {why}; write `enabled: true` or `enabled: false`")
        return True  # count it: an account we cannot read stays in the density check

    def text(self, account: Mapping[str, Any], key: str) -> None:
        value = _read(account, key)
        if value is _MISSING:
            return
        if (why := _unresolved(value, secret=False)) is not None:
            self.add(f"{key} {why}")
        elif not isinstance(value, str):
            self.add(f"{key} must be text, got {type_name(value)}; quote it")

    def memory(self, account: Mapping[str, Any]) -> Fraction | None:
        value = _read(account, "memory")
        if value is _MISSING:
            return None
        if (why := _unresolved(value, secret=False)) is not None:
            self.add(f"memory {why}")
            return None
        try:
            size = density.parse_size_gib(value, "mt5_inventory", "memory")
        except FarmError:
            self.add(f"memory {value!r} is not a size; write e.g. 1.5G, 2048M or 2 (GiB)")
            return None
        if self.profile is not None and size < self.profile["memory_reservation"]:
            self.add(
                f"memory {value!r} ({density.fmt(size)} GiB) is below the profile's memory reservation "
                f"({density.fmt(self.profile['memory_reservation'])} GiB), which Docker refuses; raise it or lower "
                f"memory_reservation in mt5_density_profiles"
            )
        return size

    def cpus(self, account: Mapping[str, Any]) -> None:
        value = _read(account, "cpus")
        if value is _MISSING:
            return
        if (why := _unresolved(value, secret=False)) is not None:
            self.add(f"cpus {why}")
            return
        try:
            cpus = density.parse_cpus(value, "mt5_inventory", "cpus")
        except FarmError:
            shown = repr(value) if isinstance(value, (str, int, float)) else type_name(value)
            self.add(f"cpus must be a number of CPUs above zero, got {shown}; write e.g. 0.5 or 1")
            return
        if self.host_cpus is not None and cpus > self.host_cpus:
            self.add(f"cpus {density.fmt(cpus)} is more than the host's {density.fmt(self.host_cpus)} CPUs; lower it")

    def api_port(self, account: Mapping[str, Any]) -> int | None:
        value = _read(account, "api_port")
        if value is _MISSING:
            return None
        low, high = API_PORT_RANGE
        if (why := _unresolved(value, secret=False)) is not None:
            self.add(f"api_port {why}")
        elif not is_int(value):
            shown = f"{value!r}" if isinstance(value, str) else type_name(value)
            self.add(
                f"api_port must be a whole number from {low} to {high}, got {shown}; write it without quotes, or remove it to use the computed port"
            )
        elif not low <= value <= high:
            self.add(f"api_port {value} is outside {low}-{high}; pick a port in that range, or remove it to use the computed port")
        else:
            return int(value)
        return None

    def experts(self, account: Mapping[str, Any]) -> None:
        value = _read(account, "experts")
        if value is _MISSING:
            return
        if (why := _unresolved(value, secret=False)) is not None:
            self.add(f"experts {why}")
            return
        if isinstance(value, str) or not isinstance(value, list):
            self.add(f"experts must be a list of .ex5 file names, got {type_name(value)}; write `experts: [MyExpert.ex5]`")
            return
        for position, item in enumerate(value, start=1):
            if not isinstance(item, str) or not item.strip() or not item.lower().endswith(".ex5"):
                shown = repr(item) if isinstance(item, str) else type_name(item)
                self.add(f"experts item {position} ({shown}) is not a .ex5 file name; list compiled experts such as MyExpert.ex5")

    def linux_keys(self, account: Mapping[str, Any]) -> None:
        canary = _read(account, "canary")
        if canary is not _MISSING:
            if (why := _unresolved(canary, secret=False)) is not None:
                self.add(f"canary {why}")
            elif not isinstance(canary, bool):
                self.add(f"canary must be true or false, got {type_name(canary)}")
        vnc = _read(account, "vnc")
        if vnc is _MISSING:
            return
        if (why := _unresolved(vnc, secret=False)) is not None:
            self.add(f"vnc {why}")
        elif not isinstance(vnc, bool):
            self.add(f"vnc must be true or false, got {type_name(vnc)}")
        elif vnc:
            self.secret(account, "vnc_password", "vnc is true", "vault_mt5_vnc_passwords")

    def windows_keys(self, account: Mapping[str, Any]) -> None:
        value = _read(account, "isolation")
        if value is _MISSING:
            return
        if (why := _unresolved(value, secret=False)) is not None:
            self.add(f"isolation {why}")
        elif value not in ISOLATION_MODES:
            shown = repr(value) if isinstance(value, str) else type_name(value)
            self.add(f"isolation {shown} is not one of {', '.join(ISOLATION_MODES)}; use process (the default) or hyperv")

    def keys(self, account: Mapping[str, Any]) -> None:
        """Unknown keys (with a did-you-mean) and keys of the other OS."""
        if self.os is None:  # OS unknown (host in both groups): accept every known key
            allowed = set(ALL_KEYS)
        else:
            allowed = set(COMMON_KEYS) | set(OS_KEYS[self.os])
        for key in account:
            if key in allowed:
                continue
            name = key if isinstance(key, str) else repr(key)
            other = next((name for name, keys in OS_KEYS.items() if key in keys), None)
            if other is not None and self.os is not None:
                here = OS_LABEL[self.os]
                self.add(
                    f"{name} is a {OS_LABEL[other]}-only key but this is a {here} host; remove it, "
                    f"or move the account to a host in {OS_GROUPS[other]}"
                )
                continue
            close = difflib.get_close_matches(str(key), ALL_KEYS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.add(f"unknown key {name!r}{hint}; known keys: {', '.join(sorted(allowed))}")


def _check_account(
    host: str, index: int, account: Any, os: str | None, profiles: Mapping[str, dict[str, Fraction]] | None, host_cpus: Fraction | None
) -> tuple[list[Problem], dict[str, Any]]:
    """Problems of one account, and what the host checks need (login, enabled, memory, api_port,
    and profile: the density profile it gets, its backend's or its OS's)."""
    check = _AccountChecker(host, index, os, None, host_cpus)
    facts: dict[str, Any] = {
        "login": None,
        "enabled": True,
        "memory": None,
        "api_port": None,
        "vnc": False,
        "label": check.label,
        "profile": os,
    }
    if not isinstance(account, Mapping):
        if (why := _unresolved(account, secret=False)) is not None:
            check.add(f"the account {why}")
        else:
            check.add(
                f"is {type_name(account)}, not an account; write each account as a mapping: `- login: 12345678` with server and password"
            )
        return check.problems, facts

    facts["login"] = check.login(account)
    check.server(account)
    backend = check.backend(account)
    if os is not None:
        facts["profile"] = density.profile_name(os, backend)
        check.profile = None if profiles is None else profiles[facts["profile"]]
    if backend != "simulator":
        why = f"the {backend} backend logs in to a broker" if backend else "needed unless backend is simulator"
        check.secret(account, "password", why, "vault_mt5_passwords")
    facts["enabled"] = check.enabled(account)
    check.text(account, "name")
    check.text(account, "comment")
    facts["memory"] = check.memory(account)
    check.cpus(account)
    facts["api_port"] = check.api_port(account)
    check.experts(account)
    facts["vnc"] = os == "linux" and _read(account, "vnc") is True
    if os == "linux":
        check.linux_keys(account)
    elif os == "windows":
        check.windows_keys(account)
    check.keys(account)
    facts["label"] = check.label
    return check.problems, facts


# ---------------------------------------------------------------------------------------
# One host, then the whole inventory
# ---------------------------------------------------------------------------------------


def _group_members(groups: Mapping[str, Any], name: str) -> set[str]:
    members = groups.get(name) if isinstance(groups, Mapping) else None
    return {str(h) for h in members} if isinstance(members, list) else set()


def _setting(view: Mapping[str, Any], key: str, host: str, problems: list[Problem]) -> Any:
    """A host setting (None when absent); an unresolved template becomes a host problem."""
    value = _read(view, key)
    if value is _MISSING:
        return None
    if (why := _unresolved(value, secret=False)) is not None:
        problems.append(Problem(host, 0, -1, f"host {host}: {key} {why}; define it or remove it"))
        return None
    return value


def _host_report(
    host: str, view: Mapping[str, Any], os: str | None, in_platform_group: bool, measured: Mapping[str, Any] | None
) -> tuple[list[Problem], list[str], dict[str, Any], list[dict[str, Any]]]:
    """Problems, notes, a summary and the per-account facts of one farm host."""
    problems: list[Problem] = []
    notes: list[str] = []
    summary: dict[str, Any] = {"os": os, "accounts": 0, "enabled": 0, "density": None, "checked": False}

    settings = {key: _setting(view, key, host, problems) for key in HOST_VARS if key != "mt5_accounts"}
    # The OS's profile and the simulator's (accounts of the simulator backend get theirs).
    profiles: dict[str, dict[str, Fraction]] | None = None
    if os is not None:
        try:
            profiles = {
                kind: density.profile_exact(os, settings["mt5_density_profiles"], f"host {host}", "mt5_density_profiles", backend=kind)
                for kind in (os, "simulator")
            }
        except FarmError as exc:
            problems.append(Problem(host, 0, -1, _error_text(exc)))

    # Capacity: what the docker host stage measured (facts), else what the inventory declares.
    memory_source, memory = "mt5_host_memory_gb", settings["mt5_host_memory_gb"]
    cpus_source, cpus = "mt5_host_cpus", settings["mt5_host_cpus"]
    if measured is not None:
        memory_source, memory = "measured memory", measured.get("memory")
        cpus_source, cpus = "measured cpus", measured.get("cpus")
    host_cpus: Fraction | None = None
    if cpus is not None:
        try:
            host_cpus = density.parse_cpus(cpus, cpus_source, "value")
        except FarmError:
            shown = repr(cpus) if isinstance(cpus, (str, int, float)) else type_name(cpus)
            problems.append(
                Problem(host, 0, -1, f"host {host}: {cpus_source} must be a number of CPUs above zero, got {shown}; write e.g. 16")
            )

    accounts = _read(view, "mt5_accounts")
    account_facts: list[dict[str, Any]] = []
    if accounts is _MISSING or accounts is None:
        if accounts is None:
            notes.append(f"host {host}: mt5_accounts is empty; the host carries no accounts")
        accounts = []
    elif (why := _unresolved(accounts, secret=False)) is not None:
        problems.append(Problem(host, 0, -1, f"host {host}: mt5_accounts {why}; define it as a list of accounts"))
        accounts = []
    elif not isinstance(accounts, list):
        if isinstance(accounts, Mapping):
            fix = "write it as a list: each account starts with `- ` (`mt5_accounts:` then `  - login: 12345678`)"
        else:
            fix = "write it as a list of accounts (`mt5_accounts:` then `  - login: 12345678`, server, password)"
        problems.append(Problem(host, 0, -1, f"host {host}: mt5_accounts is {type_name(accounts)}, not a list; {fix}"))
        accounts = []

    for index, account in enumerate(accounts):
        found, facts = _check_account(host, index, account, os, profiles, host_cpus)
        problems.extend(found)
        facts["index"] = index
        account_facts.append(facts)

    # Every account's ports, explicit or computed from its login, must be unique on the host
    # (disabled accounts too: enabling one later must not collide).
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for facts in account_facts:
        if facts["login"] is None:
            continue
        api_port, vnc_port = account_ports(facts["login"], facts["api_port"])
        wanted = [("api_port", api_port)] + ([("vnc port", vnc_port)] if facts["vnc"] else [])
        for kind, port in wanted:
            other = seen.setdefault((kind, port), facts)
            if other is facts or other["login"] == facts["login"]:  # a duplicate login is its own problem
                continue
            how = "set" if kind == "api_port" and facts["api_port"] is not None else "computed from the login"
            problems.append(
                Problem(
                    host,
                    1,
                    facts["index"],
                    f"{facts['label']}: {kind} {port} ({how}) is also the {kind} of account {other['login']} on this host; "
                    f"set api_port on one of them to a free port (computed ports are {API_PORT_BASE} + login mod {PORT_SPAN})"
                    if kind == "api_port"
                    else f"{facts['label']}: vnc port {port} (computed from the login) is also the vnc port of account {other['login']} on this host; "
                    f"turn vnc off for one of them, or move one to another host",
                )
            )

    enabled = [f for f in account_facts if f["enabled"]]
    summary.update(accounts=len(account_facts), enabled=len(enabled))
    if os is None or profiles is None:
        return problems, notes, summary, account_facts
    if memory is None:
        notes.append(
            f"host {host} ({os}): density not checked here because mt5_host_memory_gb is not declared; "
            f"the docker host stage checks it from the host's facts before changing anything "
            f"(declare mt5_host_memory_gb and mt5_host_cpus to check it now)"
        )
        return problems, notes, summary, account_facts

    # Parse the host's settings under their inventory names, so a bad one says which variable.
    where = f"host {host}"
    kinds = {f["profile"] for f in enabled}
    single = next(iter(kinds)) if len(kinds) == 1 else os
    try:
        host_memory = density.parse_size_gib(memory, where, memory_source)
        service_memory = settings["mt5_platform_service_memory_gb"]
        if service_memory is not None:
            if not isinstance(service_memory, Mapping):
                raise FarmError(f"{where}: mt5_platform_service_memory_gb must map service names to sizes, got {type_name(service_memory)}")
            service_memory = {
                key: density.parse_size_gib(value, where, f"mt5_platform_service_memory_gb.{key}", allow_zero=True)
                for key, value in service_memory.items()
            }
        headroom = settings["mt5_density_headroom_gb"]
        if headroom is not None:
            headroom = density.parse_size_gib(headroom, where, "mt5_density_headroom_gb", allow_zero=True)
        reserved = settings["mt5_density_reserved_cpus"]
        if reserved is not None:
            reserved = density.parse_cpus(reserved, where, "mt5_density_reserved_cpus", allow_zero=True)
        cap = density.density_exact(
            host_memory,
            os,
            cpus=host_cpus,
            services=density.host_services(["platform"] if in_platform_group else []),
            service_memory=service_memory,
            headroom=headroom,
            reserved_cpus=reserved,
            profiles=settings["mt5_density_profiles"],
            filter_name=where,
            backend=single,
        )
    except FarmError as exc:
        problems.append(Problem(host, 0, -1, _error_text(exc)))
        return problems, notes, summary, account_facts

    summary.update(density=density.to_plain(cap), checked=True)
    count = len(enabled)
    # Accounts of one profile: the cap counts them. Of several (simulator and terminal
    # accounts on one host): their memory limits and CPU reservations are added up instead.
    if len(kinds) <= 1 and count > cap["cap"]:
        over = count - cap["cap"]
        problems.append(
            Problem(
                host,
                2,
                0,
                f"host {host}: {count} enabled accounts exceed its density cap of {cap['cap']} by {over} "
                f"({cap['reason']}); move {over} account{'s' if over != 1 else ''} to another host or disable "
                f"{'them' if over != 1 else 'it'}, or declare the real mt5_host_memory_gb / mt5_host_cpus if the host is bigger",
            )
        )
    if len(kinds) > 1 and host_cpus is not None:
        cpu_needed = sum((profiles[f["profile"]]["cpu_reservation"] for f in enabled), Fraction(0))
        spare = host_cpus - cap["reserved_cpus"]
        if cpu_needed > spare:
            problems.append(
                Problem(
                    host,
                    2,
                    0,
                    f"host {host}: the enabled accounts' CPU reservations add up to {density.fmt(cpu_needed)} CPUs, "
                    f"{density.fmt(cpu_needed - spare)} more than the {density.fmt(max(spare, Fraction(0)))} left for accounts "
                    f"(({density.fmt(host_cpus)} − {density.fmt(cap['reserved_cpus'])}) CPUs; profiles {', '.join(sorted(kinds))}); "
                    f"move accounts to another host or disable some, or declare the real mt5_host_cpus if the host is bigger",
                )
            )
    if len(kinds) > 1 or any(f["memory"] is not None for f in enabled):
        needed = sum((f["memory"] if f["memory"] is not None else profiles[f["profile"]]["memory_limit"] for f in enabled), Fraction(0))
        room = cap["available_memory"]
        if needed > room:
            problems.append(
                Problem(
                    host,
                    2,
                    1,
                    f"host {host}: the enabled accounts' memory limits add up to {density.fmt(needed)} GiB, "
                    f"{density.fmt(needed - room)} GiB more than the {density.fmt(room)} GiB left for accounts "
                    f"(({density.fmt(cap['host_memory'])} − {density.fmt(cap['infrastructure'])} − {density.fmt(cap['headroom'])}) GiB); "
                    f"lower the per-account memory overrides, move accounts to another host or disable some, or declare the real mt5_host_memory_gb",
                )
            )
    return problems, notes, summary, account_facts


def _address(view: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, str]:
    """(the first of ``keys`` the host sets, its value as text); ("", "") when none is set."""
    for key in keys:
        value = _read(view, key)
        if value is _MISSING or value is None:
            continue
        unresolved = _unresolved(value, secret=False)
        return key, f"<{unresolved}>" if unresolved else str(value).strip()
    return "", ""


def _private_address_problem(address: str) -> str | None:
    """Why ``address`` cannot be where other hosts connect to, or None when it can."""
    if address.startswith("<"):  # a template that did not resolve
        return f"it {address[1:-1]}"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None if address and address != "localhost" else "it is not an IP address"
    if ip.is_loopback:
        return "it is a loopback address, which another host cannot reach"
    if ip.is_unspecified:
        return "it is the unspecified address (every interface), which names no host to connect to"
    return None


def _address_problems(hosts: Mapping[str, Mapping[str, Any]], farm: set[str], platform_group: set[str]) -> list[Problem]:
    """The addresses hosts connect to each other at, when the fleet spans more than one host.

    Nginx and Prometheus on the platform host reach every account at its host's
    ``mt5_bind_address`` (default 127.0.0.1); the accounts on the other hosts reach Redis and
    Postgres at the platform host's ``mt5_platform_address`` (default its mt5_bind_address).
    With one host, loopback is right; with more, a loopback default would send the platform's
    requests to its own loopback (another account's port, or nothing). Two farm hosts with
    the same address would route to one of them. Only hosts in ``hosts`` are examined.
    """
    problems: list[Problem] = []
    platform = sorted(platform_group)[0] if platform_group else None
    if platform is None or not (farm - {platform}):
        return problems
    fix = "set mt5_bind_address to {host}'s private address"
    seen: dict[str, str] = {}
    for host in sorted(set(hosts) & farm):
        key, address = _address(hosts[host], ("mt5_bind_address",))
        if host != platform and not key:
            text = (
                f"host {host}: mt5_bind_address is not set, so the platform host {platform} would reach its accounts at "
                f"127.0.0.1 (its own loopback); " + fix.format(host=host)
            )
            problems.append(Problem(host, 0, -1, text))
        elif host != platform and (why := _private_address_problem(address)):
            text = (
                f"host {host}: the platform host {platform} cannot reach its accounts at mt5_bind_address {address!r}: {why}; "
                + fix.format(host=host)
            )
            problems.append(Problem(host, 0, -1, text))
        elif address in seen:
            text = (
                f"host {host}: mt5_bind_address {address} is also {seen[address]}'s; each farm host needs its own address "
                f"(Nginx and Prometheus reach the accounts by it): correct one of them"
            )
            problems.append(Problem(host, 0, -1, text))
        elif address and not address.startswith("<"):
            seen[address] = host
    if platform in hosts:
        key, address = _address(hosts[platform], ("mt5_platform_address", "mt5_bind_address"))
        why = "it is not set (the default is 127.0.0.1)" if not key else _private_address_problem(address)
        if why:
            where = f"{key} {address!r}" if key else "mt5_bind_address"
            text = (
                f"platform host {platform}: the accounts on the other hosts reach Redis and Postgres at its {where}, but {why}; "
                f"set mt5_bind_address (or mt5_platform_address) of {platform} to its private address"
            )
            problems.append(Problem(platform, 0, -1, text))
    return problems


def _summary_line(host: str, summary: Mapping[str, Any]) -> str:
    os = summary["os"] or "unknown OS"
    line = f"{host} ({os}): {summary['enabled']} enabled of {summary['accounts']} accounts"
    if summary["density"] is not None:
        line += f", cap {summary['density']['cap']} — {summary['density']['reason']}"
    elif summary["os"] is not None:
        line += ", cap not checked (no declared capacity)"
    return line


def mt5_inventory_report(
    hosts: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Any], measured: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """Check every account of every farm host; return all problems at once.

    * hosts: host name → that host's variables (``hostvars[host]``, or a plain dict). Read:
      mt5_accounts, mt5_host_memory_gb, mt5_host_cpus, mt5_density_profiles,
      mt5_platform_service_memory_gb, mt5_density_headroom_gb, mt5_density_reserved_cpus.
      Only these hosts are checked (pass one host to check one host).
    * groups: the inventory's ``groups``; mt5_linux, mt5_windows and platform are read.
    * measured: optional host name → {memory: size, cpus: number} from facts; replaces the
      declared capacity of those hosts (the docker host stage's second check).

    Returns {problems: [str] sorted by host then account, notes: [str], summary: [str],
    hosts: {host: {os, accounts, enabled, checked, density (mt5_density_cap's dict or None)}}}.
    """
    if not isinstance(hosts, Mapping):
        raise FarmError(f"mt5_inventory_report: hosts must be a mapping of host name to its vars, got {type_name(hosts)}")
    if not isinstance(groups, Mapping):
        raise FarmError(f"mt5_inventory_report: groups must be the inventory's groups mapping, got {type_name(groups)}")
    if measured is not None and not isinstance(measured, Mapping):
        raise FarmError(f"mt5_inventory_report: measured must map host names to {{memory, cpus}}, got {type_name(measured)}")

    linux, windows, platform_group = (_group_members(groups, g) for g in ("mt5_linux", "mt5_windows", "platform"))
    problems: list[Problem] = []
    notes: list[str] = []
    summaries: dict[str, dict[str, Any]] = {}
    logins: dict[int, tuple[str, int]] = {}

    for host in sorted(str(h) for h in hosts):
        view = hosts[host]
        if not isinstance(view, Mapping):
            raise FarmError(f"mt5_inventory_report: hosts[{host!r}] must be that host's vars, got {type_name(view)}")
        is_linux, is_windows = host in linux, host in windows
        if not (is_linux or is_windows):
            accounts = _read(view, "mt5_accounts")
            if accounts is not _MISSING and accounts not in (None, []) and not isinstance(accounts, jinja2.Undefined):
                problems.append(
                    Problem(
                        host,
                        0,
                        -1,
                        f"host {host} defines mt5_accounts but is in neither mt5_linux nor mt5_windows, so they would never run; add the host to one of those groups",
                    )
                )
            continue
        os: str | None = "linux" if is_linux else "windows"
        if is_linux and is_windows:
            os = None
            # "platform" here means the OS: an operator-facing message kept word for word
            # (tests/test_validate_playbook.py asserts it).
            problems.append(
                Problem(
                    host, 0, -1, f"host {host} is in both mt5_linux and mt5_windows; a host runs one platform: remove it from one group"
                )
            )
        if is_windows and host in platform_group:
            problems.append(
                Problem(
                    host,
                    0,
                    -1,
                    f"host {host} is in mt5_windows and platform; platform services run on Linux hosts only: move it out of platform",
                )
            )
        host_measured = measured.get(host) if measured is not None else None
        found, host_notes, summary, account_facts = _host_report(host, view, os, host in platform_group, host_measured)
        problems.extend(found)
        notes.extend(host_notes)
        summaries[host] = summary

        for facts in account_facts:
            login = facts["login"]
            if login is None:
                continue
            item = facts["index"] + 1
            if login in logins:
                first_host, first_item = logins[login]
                first = f"item {first_item} on this host" if first_host == host else f"host {first_host} (mt5_accounts item {first_item})"
                problems.append(
                    Problem(
                        host,
                        1,
                        facts["index"],
                        f"{facts['label']} (mt5_accounts item {item}): login {login} is also used by {first}; "
                        f"a login may appear once in the whole inventory (it names the container mt5-{login}): "
                        f"remove one of them or correct the number",
                    )
                )
            else:
                logins[login] = (host, item)

    problems.extend(_address_problems(hosts, linux | windows, platform_group))
    return {
        "problems": [p.text for p in sorted(problems)],
        "notes": notes,
        "summary": [_summary_line(h, s) for h, s in sorted(summaries.items())],
        "hosts": summaries,
    }


def mt5_inventory_problems(
    hosts: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Any], measured: Mapping[str, Mapping[str, Any]] | None = None
) -> list[str]:
    """The ``problems`` list of mt5_inventory_report (same arguments); empty when all is well."""
    return mt5_inventory_report(hosts, groups, measured)["problems"]
