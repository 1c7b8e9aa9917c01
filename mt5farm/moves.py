"""Accounts moving between Linux farm hosts: which data volume comes from where.

Moving an account is an inventory change only: its entry leaves one host's ``mt5_accounts``
and joins another's. Its data volume (``mt5-<login>-data``: terminal data, the service's
idempotency store and Postgres spool) must follow it, or a retried order would be placed
again. Before the accounts stage changes anything, every ``mt5_linux`` host reports the
account volumes it holds (the role's output fact ``mt5_linux_volumes``); from those reports
this module decides, for one host, what the accounts stage does with each of its enabled
accounts:

* its volume is here, and on no other host: nothing (the usual case);
* its volume is on exactly one other host: **move** it from there;
* its volume is nowhere and every farm host reported: a new account, it starts empty;
* its volume is nowhere but some farm host did not report (unreachable, failed, outside
  ``--limit``): a **problem**, since its data may be there, unless the operator listed the
  login in ``start_without_data`` (it then starts empty: its idempotency keys are forgotten);
* its volume is on two or more hosts: a **problem** (which copy is current cannot be told).

Pure functions: no Ansible state; the filter shim is filter_plugins/mt5_moves.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mt5farm.accounts import mt5_resolved_accounts
from mt5farm.errors import FarmError
from mt5farm.values import is_int, type_name

# The volume list a host reports (the role's output fact).
VOLUMES_FACT = "mt5_linux_volumes"


@dataclass(frozen=True)
class Move:
    """One account whose data volume comes from another host: ``volume`` on ``source`` to here."""

    login: int
    container: str
    volume: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"login": self.login, "container": self.container, "volume": self.volume, "source": self.source}


@dataclass
class MovePlan:
    """What one host does with its enabled accounts' data volumes (see the module docstring).

    ``moves``: volumes to bring here; ``fresh``: logins that start with an empty volume
    although a farm host did not report (the operator's ``start_without_data``);
    ``problems``: sentences naming the account, the hosts and the fix (nothing may move
    while there is one); ``keep``: volume names this host holds for accounts that another
    host carries now (they are moving: never purge them here).
    """

    moves: list[Move] = field(default_factory=list)
    fresh: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "moves": [move.as_dict() for move in self.moves],
            "fresh": list(self.fresh),
            "problems": list(self.problems),
            "keep": list(self.keep),
        }


def plan_moves(
    host: str,
    accounts: Sequence[Mapping[str, Any]],
    holdings: Mapping[str, Sequence[str] | None],
    start_without_data: Sequence[int] = (),
    elsewhere: Sequence[str] = (),
) -> MovePlan:
    """The move plan of ``host`` from every farm host's volume report.

    ``accounts``: the host's resolved accounts (mt5farm.accounts: login, enabled, container,
    volume); disabled ones are left alone. ``holdings``: every farm host (``host`` included)
    → the account volume names it reported, or None when it did not report. Hosts are
    compared in sorted order, so messages are stable. ``start_without_data``: logins allowed
    to start empty although a host did not report. ``elsewhere``: the volume names of the
    accounts other farm hosts carry (enabled), returned in ``keep`` where ``host`` holds them.
    Raises FarmError when ``host`` itself did not report (the volumes step did not run here).
    """
    if holdings.get(host) is None:
        raise FarmError(
            f"mt5_account_moves: {host} has not reported its account volumes ({VOLUMES_FACT}); "
            "run the accounts stage whole (playbooks/accounts.yml lists every host's volumes first)"
        )
    allowed = set(start_without_data)
    silent = sorted(name for name, volumes in holdings.items() if volumes is None)
    plan = MovePlan(keep=sorted(set(elsewhere) & set(holdings[host] or ())))
    for account in accounts:
        if not account["enabled"]:
            continue
        login, volume = account["login"], account["volume"]
        holders = sorted(name for name, volumes in holdings.items() if volumes is not None and volume in volumes)
        if len(holders) > 1:
            plan.problems.append(_conflict(host, login, volume, holders))
        elif holders == [host]:
            continue
        elif holders:
            plan.moves.append(Move(login=login, container=account["container"], volume=volume, source=holders[0]))
        elif silent and login not in allowed:
            plan.problems.append(_unreported(host, login, volume, silent))
        elif silent:
            plan.fresh.append(login)
    return plan


def _conflict(host: str, login: int, volume: str, holders: list[str]) -> str:
    """The message for a volume held by several hosts."""
    return (
        f"account {login}: its data volume {volume} is on {' and '.join(holders)}, and which copy is current cannot be told "
        f"(the inventory puts the account on {host}). Keep the copy of the host that ran the account last, remove the other "
        f"(`docker volume rm {volume}` on that host; its container mt5-{login} must be gone first), then run again: "
        f"a copy kept on another host than {host} is moved to {host}"
    )


def _unreported(host: str, login: int, volume: str, silent: list[str]) -> str:
    """The message for an account whose volume may sit on a host that did not report."""
    return (
        f"account {login}: its data volume {volume} is not on {host}, and {', '.join(silent)} did not report its account "
        f"volumes (unreachable, failed, or outside --limit), so its data (terminal data, idempotency keys, Postgres spool) "
        f"may be there. Bring {'that host' if len(silent) == 1 else 'those hosts'} back and run the whole accounts stage; "
        f"or, if the account is new or its data is to be given up, list {login} in mt5_linux_start_without_data for {host} "
        "(it starts empty: orders retried with an old Idempotency-Key are placed again)"
    )


def _volumes(view: Any, name: str) -> list[str] | None:
    """The volume names a host reported, None when it did not; FarmError on anything else."""
    try:
        value = view[VOLUMES_FACT] if VOLUMES_FACT in view else None
    except Exception as exc:  # a hostvars value that cannot be templated
        raise FarmError(f"mt5_account_moves: {VOLUMES_FACT} of {name} could not be read ({type(exc).__name__}: {exc})") from exc
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FarmError(f"mt5_account_moves: {VOLUMES_FACT} of {name} must be a list of volume names, got {type_name(value)}")
    return value


def _enabled_volumes(view: Any) -> list[str]:
    """The data volumes of a host's enabled accounts, from its inventory ``mt5_accounts``."""
    accounts = view["mt5_accounts"] if "mt5_accounts" in view else None
    profiles = view["mt5_density_profiles"] if "mt5_density_profiles" in view else None
    resolved = mt5_resolved_accounts(list(accounts or []), "linux", profiles)
    return [account["volume"] for account in resolved if account["enabled"]]


def mt5_account_moves(hosts: Any, host: Any, accounts: Any, start_without_data: Any = None) -> dict[str, Any]:
    """The filter: ``host``'s move plan (see plan_moves) from every farm host's variables.

    ``hosts``: every ``mt5_linux`` host → its hostvars (read: ``mt5_linux_volumes``, unset
    when the host did not report, and ``mt5_accounts``/``mt5_density_profiles`` of the
    others, for ``keep``). ``accounts``: the host's resolved accounts. ``start_without_data``:
    a list of logins. Returns MovePlan.as_dict():
    ``{moves: [{login, container, volume, source}], fresh: [login], problems: [str], keep: [volume]}``.
    Raises FarmError on arguments of the wrong shape.
    """
    if not isinstance(hosts, Mapping):
        raise FarmError(f"mt5_account_moves: hosts must map each mt5_linux host to its variables, got {type_name(hosts)}")
    name = str(host)
    if name not in hosts:
        raise FarmError(f"mt5_account_moves: host {name!r} is not one of the mt5_linux hosts given ({', '.join(sorted(hosts))})")
    if not isinstance(accounts, list):
        raise FarmError(f"mt5_account_moves: accounts must be the host's resolved accounts, got {type_name(accounts)}")
    allowed = [] if start_without_data is None else start_without_data
    if not isinstance(allowed, list) or not all(is_int(login) for login in allowed):
        raise FarmError(f"mt5_account_moves: start_without_data must be a list of logins, got {allowed!r}")
    holdings = {str(other): _volumes(view, str(other)) for other, view in hosts.items()}
    elsewhere = [volume for other, view in hosts.items() if str(other) != name for volume in _enabled_volumes(view)]
    return plan_moves(name, accounts, holdings, [int(login) for login in allowed], elsewhere).as_dict()
