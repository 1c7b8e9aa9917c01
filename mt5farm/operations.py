"""Everyday operator commands on named accounts: which hosts carry them (playbooks/account.yml).

An operator names accounts by login (``-e logins=5001001,5001002``, or a YAML list); the
inventory says which host carries each (every host's ``mt5_accounts``). Before any host is
touched, every login must be an enabled account of a Linux farm host: an unknown login, a
disabled account (it has no container) or an account of a Windows host (not supported yet)
is refused, each named, all at once.

Pure functions: no Ansible state; the filter shim is filter_plugins/mt5_operations.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mt5farm.errors import FarmError
from mt5farm.values import is_int, type_name

ACTIONS = ("stop", "start", "restart", "logs")
# Inventory group -> what the commands can do there.
LINUX_GROUP = "mt5_linux"
WINDOWS_GROUP = "mt5_windows"


def parse_logins(logins: Any) -> list[int]:
    """The logins an operator gave: ``"5001001,5001002"``, ``5001001`` or a list of either.

    Returns them as ints, in the order given, without repeats. Raises FarmError naming the
    bad entry when one is not a positive whole number, or when none is given.
    """
    if is_int(logins):
        items: list[Any] = [logins]
    elif isinstance(logins, str):
        items = [part.strip() for part in logins.replace(" ", ",").split(",") if part.strip()]
    elif isinstance(logins, Sequence):
        items = list(logins)
    else:
        raise FarmError(
            f"mt5_account_targets: logins must be a comma-separated string or a list of logins, got {type_name(logins)}: "
            "e.g. make stop LOGINS=5001001,5001002 (-e mt5_logins=5001001,5001002)"
        )
    out: list[int] = []
    for item in items:
        text = str(item).strip() if isinstance(item, str | int) and not isinstance(item, bool) else ""
        if not text.isdigit() or int(text) <= 0:
            raise FarmError(
                f"mt5_account_targets: {item!r} is not a login (a positive whole number), e.g. make stop LOGINS=5001001,5001002 (-e mt5_logins=5001001,5001002)"
            )
        if int(text) not in out:
            out.append(int(text))
    if not out:
        raise FarmError("mt5_account_targets: no login given: add -e logins=<login>[,<login>...]")
    return out


def _view(hosts: Any, host: str) -> Any:
    try:
        return hosts[host]
    except KeyError:
        return {}


def _accounts(view: Any, host: str) -> list[Any]:
    try:
        accounts = view["mt5_accounts"] if "mt5_accounts" in view else []
    except Exception as exc:  # a value that cannot be templated
        raise FarmError(f"mt5_account_targets: mt5_accounts of {host} could not be read ({type(exc).__name__}: {exc})") from exc
    return list(accounts or [])


def expand_logins(logins: Any, groups: Mapping[str, Any], hosts: Mapping[str, Any]) -> Any:
    """``all`` or ``host:<name>`` (comma-separated, beside logins) become the enabled logins of
    every Linux farm host or of the named one; anything else is returned as it was given."""
    if not isinstance(logins, str) or not any(part.strip() == "all" or part.strip().startswith("host:") for part in logins.split(",")):
        return logins
    linux = sorted({str(h) for h in groups.get(LINUX_GROUP) or []})
    out: list[str] = []
    for part in (p.strip() for p in logins.split(",") if p.strip()):
        if part != "all" and not part.startswith("host:"):
            out.append(part)
            continue
        names = linux if part == "all" else [part.removeprefix("host:")]
        unknown = [name for name in names if name not in linux]
        if unknown:
            raise FarmError(
                f"mt5_account_targets: {part!r} names no Linux farm host of the inventory (mt5_linux: {', '.join(linux) or 'none'})"
            )
        for host in names:
            for account in _accounts(_view(hosts, host), host):
                if isinstance(account, Mapping) and "login" in account and account.get("enabled", True) is not False:
                    out.append(str(account["login"]))
    return ",".join(out)


def mt5_account_targets(logins: Any, groups: Mapping[str, Any], hosts: Mapping[str, Any]) -> dict[str, Any]:
    """Where the named accounts are, and why any of them cannot be acted on.

    ``logins``: as ``parse_logins`` takes them, or with ``all`` / ``host:<name>`` among them
    (``expand_logins``); ``groups``: the inventory's ``groups``;
    ``hosts``: ``hostvars``. Returns ``{"hosts": {host: [login, ...]}, "logins": [...],
    "problems": [sentence, ...]}``: ``hosts`` holds the Linux hosts carrying an enabled named
    account (logins in the order given); ``problems`` says, each login named, which are not
    in the inventory, disabled, on a Windows host, or on several hosts. A playbook acts only
    when ``problems`` is empty.
    """
    if not isinstance(groups, Mapping):
        raise FarmError(f"mt5_account_targets: groups must be the inventory's `groups` mapping, got {type_name(groups)}")
    wanted = parse_logins(expand_logins(logins, groups, hosts))
    found: dict[int, list[tuple[str, str, bool]]] = {}  # login -> [(host, group, enabled)]
    for group in (LINUX_GROUP, WINDOWS_GROUP):
        for host in sorted({str(h) for h in groups.get(group) or []}):
            for account in _accounts(_view(hosts, host), host):
                if not isinstance(account, Mapping) or "login" not in account:
                    continue
                login = account["login"]
                if isinstance(login, str) and login.isdigit():
                    login = int(login)
                if login in wanted:
                    found.setdefault(login, []).append((host, group, account.get("enabled", True) is not False))
    unknown = [login for login in wanted if login not in found]
    several = {login: places for login, places in found.items() if len(places) > 1}
    windows = [login for login, places in found.items() if login not in several and places[0][1] == WINDOWS_GROUP]
    disabled = [login for login, places in found.items() if login not in several and login not in windows and not places[0][2]]
    problems = []
    if unknown:
        problems.append(
            f"not in the inventory (no host's mt5_accounts lists them): {', '.join(map(str, unknown))}; check the login or the inventory (-i)"
        )
    if disabled:
        problems.append(
            f"disabled in the inventory (enabled: false; they have no container): {', '.join(map(str, sorted(disabled)))}; "
            "enable them and run site.yml to start them"
        )
    if windows:
        problems.append(
            f"on a Windows host ({', '.join(sorted({found[login][0][0] for login in windows}))}): "
            f"{', '.join(map(str, sorted(windows)))}; these commands do not support Windows accounts yet"
        )
    for login, places in sorted(several.items()):
        problems.append(f"login {login} is on several hosts ({', '.join(place[0] for place in places)}); run playbooks/validate.yml")
    targets: dict[str, list[int]] = {}
    if not problems:
        for login in wanted:
            targets.setdefault(found[login][0][0], []).append(login)
    return {"hosts": targets, "logins": wanted, "problems": problems}
