"""mt5farm.operations (the mt5_account_targets filter): which hosts carry the named accounts, and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from mt5farm.errors import FarmError
from mt5farm.operations import mt5_account_targets, parse_logins

GROUPS = {"mt5_linux": ["farm-a", "farm-b"], "mt5_windows": ["win-1"], "platform": ["farm-a"]}
HOSTS: dict[str, Any] = {
    "farm-a": {"mt5_accounts": [{"login": 1001, "server": "S"}, {"login": 1002, "server": "S", "enabled": False}]},
    "farm-b": {"mt5_accounts": [{"login": 2001, "server": "S"}, {"login": 2002, "server": "S", "enabled": True}]},
    "win-1": {"mt5_accounts": [{"login": 3001, "server": "S"}]},
}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1001,2001", [1001, 2001]),
        (" 1001 , 2001,", [1001, 2001]),
        ("1001 2001", [1001, 2001]),
        (1001, [1001]),
        ([2001, "1001", 2001], [2001, 1001]),
    ],
)
def test_logins_are_read_from_a_string_a_number_or_a_list(given: Any, expected: list[int]) -> None:
    assert parse_logins(given) == expected


@pytest.mark.parametrize(
    ("given", "says"),
    [("1001,abc", "'abc' is not a login"), ([0], "0 is not a login"), ("", "no login given"), ({}, "a mapping"), ([True], "True")],
)
def test_a_bad_login_list_is_refused_naming_the_bad_entry(given: Any, says: str) -> None:
    with pytest.raises(FarmError, match="mt5_account_targets") as error:
        parse_logins(given)
    assert says in str(error.value)


def test_each_host_gets_its_own_named_accounts_in_the_order_given() -> None:
    assert mt5_account_targets("2002,1001,2001", GROUPS, HOSTS) == {
        "hosts": {"farm-b": [2002, 2001], "farm-a": [1001]},
        "logins": [2002, 1001, 2001],
        "problems": [],
    }


def test_unknown_disabled_and_windows_accounts_are_all_named_and_nothing_is_targeted() -> None:
    result = mt5_account_targets([1001, 9999, 1002, 3001, 8888], GROUPS, HOSTS)
    assert result["hosts"] == {}
    assert result["problems"] == [
        "not in the inventory (no host's mt5_accounts lists them): 9999, 8888; check the login or the inventory (-i)",
        "disabled in the inventory (enabled: false; they have no container): 1002; enable them and run site.yml to start them",
        "on a Windows host (win-1): 3001; these commands do not support Windows accounts yet",
    ]


def test_a_login_on_two_hosts_is_refused() -> None:
    hosts = dict(HOSTS, **{"farm-b": {"mt5_accounts": [{"login": 1001, "server": "S"}]}})
    assert mt5_account_targets("1001", GROUPS, hosts)["problems"] == [
        "login 1001 is on several hosts (farm-a, farm-b); run playbooks/validate.yml"
    ]


def test_hosts_outside_the_farm_groups_and_hosts_without_accounts_are_ignored() -> None:
    groups = {"mt5_linux": ["farm-a", "empty"], "platform": ["other"]}
    hosts = dict(HOSTS, other={"mt5_accounts": [{"login": 7}]}, empty={})
    assert mt5_account_targets("7", groups, hosts)["problems"][0].startswith("not in the inventory")


def test_groups_must_be_a_mapping() -> None:
    with pytest.raises(FarmError, match="mt5_account_targets: groups must be"):
        mt5_account_targets("1", ["mt5_linux"], {})  # type: ignore[arg-type]


def test_all_and_a_hosts_name_stand_for_their_enabled_linux_accounts() -> None:
    assert mt5_account_targets("all", GROUPS, HOSTS)["hosts"] == {"farm-a": [1001], "farm-b": [2001, 2002]}
    assert mt5_account_targets("host:farm-b", GROUPS, HOSTS)["logins"] == [2001, 2002]
    assert mt5_account_targets("1001,host:farm-b", GROUPS, HOSTS)["logins"] == [1001, 2001, 2002]


@pytest.mark.parametrize("given", ["host:win-1", "host:nowhere"])
def test_a_host_that_is_no_linux_farm_host_is_refused(given: str) -> None:
    with pytest.raises(FarmError, match="names no Linux farm host"):
        mt5_account_targets(given, GROUPS, HOSTS)
