"""mt5farm.inventory (the mt5_inventory filters) called directly with plain host data."""

from __future__ import annotations

import copy
from typing import Any

import jinja2
import pytest

from mt5farm import inventory as inv
from mt5farm.errors import FarmError

SECRET = "s3cr3t-Never-Print-Me"


def acct(login: Any = 1001, **extra: Any) -> dict[str, Any]:
    account = {"login": login, "server": "Broker-Live", "password": SECRET}
    account.update(extra)
    return account


def linux(*accounts: dict[str, Any], **host_vars: Any) -> dict[str, Any]:
    return {"mt5_accounts": list(accounts), **host_vars}


GROUPS = {"mt5_linux": ["lin1", "lin2"], "mt5_windows": ["win1"], "platform": ["lin1"]}


def addressed(hosts: dict[str, Any]) -> dict[str, Any]:
    """Each host with its own private mt5_bind_address unless the test sets one (the fleet's
    address checks have their own tests below; the rest are about other things)."""
    return {
        name: {"mt5_bind_address": f"10.0.0.{index}", **view} if isinstance(view, dict) else view
        for index, (name, view) in enumerate(hosts.items(), start=11)
    }


def problems(hosts: dict[str, Any], groups: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
    return inv.mt5_inventory_problems(addressed(hosts), groups or GROUPS, **kwargs)


def only(hosts: dict[str, Any], groups: dict[str, Any] | None = None) -> str:
    found = problems(hosts, groups)
    assert len(found) == 1, found
    return found[0]


def test_a_valid_inventory_has_no_problems() -> None:
    hosts = {
        "lin1": linux(
            acct(1001),
            acct(1002, backend="mt5linux", vnc=True, vnc_password=SECRET, experts=["Grid.ex5"]),
            mt5_host_memory_gb=64,
            mt5_host_cpus=16,
        ),
        "lin2": linux(
            acct(2001, backend="simulator", password=None, memory="2G", cpus=1, api_port=18001, enabled=False, name="paper", comment="demo")
        ),
        "win1": linux(acct(3001, isolation="hyperv", backend="mt5"), mt5_host_memory_gb="64G"),
        "ctl": {"ansible_connection": "local"},
    }
    report = inv.mt5_inventory_report(addressed(hosts), GROUPS)
    assert report["problems"] == []
    assert report["hosts"]["lin1"]["density"]["cap"] == 37
    assert report["hosts"]["win1"]["density"]["cap"] == 34
    assert report["hosts"]["lin2"]["density"] is None
    assert report["notes"] == [
        "host lin2 (linux): density not checked here because mt5_host_memory_gb is not declared; the docker host "
        "stage checks it from the host's facts before changing anything (declare mt5_host_memory_gb and "
        "mt5_host_cpus to check it now)"
    ]
    assert report["summary"][0].startswith("lin1 (linux): 2 enabled of 2 accounts, cap 37 — memory-bound: (64 − 17.3125 − 2) GiB")


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        pytest.param(
            {"server": "B", "password": "x"},
            "host lin2, account #1 in mt5_accounts: login is missing; add `login: <MT5 account number>`",
            id="login-missing",
        ),
        pytest.param(
            acct("12345"), "host lin2, account #1 in mt5_accounts: login is quoted ('12345'); write 12345 without quotes", id="login-quoted"
        ),
        pytest.param(acct(0), "login must be a positive whole number, got 0", id="login-zero"),
        pytest.param(acct(-5), "login must be a positive whole number, got -5", id="login-negative"),
        pytest.param(acct(12.5), "login must be a positive whole number, got 12.5", id="login-float"),
        pytest.param(acct("abc"), "login must be a positive whole number, got 'abc'", id="login-word"),
        pytest.param(acct(True), "login is true/false; write the MT5 account number", id="login-bool"),
        pytest.param(
            {"login": 1, "password": "x"}, "host lin2, account 1: server is missing; add `server: <broker server name", id="server-missing"
        ),
        pytest.param(acct(server="  "), "server is empty; write the broker's server name", id="server-blank"),
        pytest.param(acct(server=42), "server must be text, got a whole number", id="server-number"),
        pytest.param(
            {"login": 1, "server": "B"},
            "password is missing (the mt5linux backend logs in to a broker); add `password:",
            id="password-missing",
        ),
        pytest.param(acct(password=""), "password is empty (the mt5linux backend logs in to a broker)", id="password-empty"),
        pytest.param(acct(password=None, backend="mt5"), "password is empty (the mt5 backend logs in to a broker)", id="password-null"),
        pytest.param(acct(password=123456), "password must be a string, got a whole number; quote it", id="password-number"),
        pytest.param(
            acct(backend="wine"),
            "backend 'wine' is not available on Linux hosts; use one of mt5linux, mt5, simulator",
            id="backend-unknown",
        ),
        pytest.param(acct(enabled="yes"), "enabled must be true or false, got a string", id="enabled-string"),
        pytest.param(acct(name=7), "name must be text, got a whole number; quote it", id="name-number"),
        pytest.param(acct(memory="lots"), "memory 'lots' is not a size; write e.g. 1.5G, 2048M or 2 (GiB)", id="memory-junk"),
        pytest.param(
            acct(memory="512M"),
            "memory '512M' (0.5 GiB) is below the profile's memory reservation (0.75 GiB)",
            id="memory-below-reservation",
        ),
        pytest.param(acct(cpus=0), "cpus must be a number of CPUs above zero, got 0", id="cpus-zero"),
        pytest.param(acct(api_port=80), "api_port 80 is outside 1024-65535", id="port-low"),
        pytest.param(
            acct(api_port="8080"),
            "api_port must be a whole number from 1024 to 65535, got '8080'; write it without quotes",
            id="port-quoted",
        ),
        pytest.param(acct(experts="Grid.ex5"), "experts must be a list of .ex5 file names, got a string", id="experts-string"),
        pytest.param(acct(experts=["Grid.mq5"]), "experts item 1 ('Grid.mq5') is not a .ex5 file name", id="experts-source"),
        pytest.param(acct(vnc=True), "vnc_password is missing (vnc is true)", id="vnc-without-password"),
        pytest.param(acct(vnc="on"), "vnc must be true or false, got a string", id="vnc-string"),
        pytest.param(
            acct(isolation="process"),
            "isolation is a Windows-only key but this is a Linux host; remove it, or move the account to a host in mt5_windows",
            id="windows-key-on-linux",
        ),
        pytest.param(acct(passwrd="x"), "unknown key 'passwrd' (did you mean 'password'?)", id="unknown-key-suggestion"),
        pytest.param(acct(canary="yes"), "canary must be true or false, got a string", id="canary-not-a-bool"),
        pytest.param(
            acct(colour="red"), "unknown key 'colour'; known keys: api_port, backend, canary, comment", id="unknown-key-no-suggestion"
        ),
        pytest.param(
            12345,
            "host lin2, account #1 in mt5_accounts: is a whole number, not an account; write each account as a mapping",
            id="not-a-mapping",
        ),
    ],
)
def test_one_bad_linux_account(account: Any, expected: str) -> None:
    message = only({"lin2": linux(account)})
    assert expected in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        pytest.param(
            acct(backend="mt5linux"), "backend 'mt5linux' is not available on Windows hosts; use one of mt5, simulator", id="linux-backend"
        ),
        pytest.param(
            acct(vnc=False),
            "vnc is a Linux-only key but this is a Windows host; remove it, or move the account to a host in mt5_linux",
            id="vnc-on-windows",
        ),
        pytest.param(
            acct(vnc_password=SECRET), "vnc_password is a Linux-only key but this is a Windows host", id="vnc-password-on-windows"
        ),
        pytest.param(acct(isolation="vm"), "isolation 'vm' is not one of process, hyperv", id="isolation-bad"),
    ],
)
def test_one_bad_windows_account(account: Any, expected: str) -> None:
    message = only({"win1": linux(account)})
    assert message.startswith("host win1, account 1001: ")
    assert expected in message
    assert SECRET not in message


def test_simulator_accounts_need_no_password() -> None:
    assert problems({"lin2": linux({"login": 1, "server": "Sim", "backend": "simulator"})}) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"login": 1}, "host lin2: mt5_accounts is a mapping, not a list; write it as a list: each account starts with `- `"),
        ("1001,1002", "host lin2: mt5_accounts is a string, not a list; write it as a list of accounts"),
        (42, "host lin2: mt5_accounts is a whole number, not a list"),
    ],
)
def test_mt5_accounts_must_be_a_list(value: Any, expected: str) -> None:
    assert only({"lin2": {"mt5_accounts": value}}).startswith(expected)


def test_empty_mt5_accounts_is_a_note_not_a_problem() -> None:
    report = inv.mt5_inventory_report(addressed({"lin2": {"mt5_accounts": None}}), GROUPS)
    assert report["problems"] == []
    assert "host lin2: mt5_accounts is empty; the host carries no accounts" in report["notes"]


def test_duplicate_login_on_one_host_names_both_items() -> None:
    message = only({"lin2": linux(acct(7), acct(8), acct(7))})
    assert message.startswith("host lin2, account 7 (mt5_accounts item 3): login 7 is also used by item 1 on this host;")
    assert "a login may appear once in the whole inventory" in message


def test_duplicate_login_across_hosts_names_both_hosts() -> None:
    message = only({"lin2": linux(acct(7)), "lin1": linux(acct(9), acct(7))})
    # Hosts are visited in name order: lin1 holds the first use.
    assert message.startswith("host lin2, account 7 (mt5_accounts item 1): login 7 is also used by host lin1 (mt5_accounts item 2);")


def test_disabled_accounts_still_need_unique_logins() -> None:
    assert "login 7 is also used" in only({"lin2": linux(acct(7), acct(7, enabled=False))})


def test_duplicate_api_port_on_one_host() -> None:
    message = only({"lin2": linux(acct(1, api_port=18000), acct(2, api_port=18000))})
    assert message.startswith(
        "host lin2, account 2: api_port 18000 (set) is also the api_port of account 1 on this host; set api_port on one of them"
    )


def test_computed_api_ports_that_clash_name_both_accounts_and_the_rule() -> None:
    # 20000 + login mod 10000: 10001 and 20001 both get 20001.
    message = only({"lin2": linux(acct(10001), acct(20001, enabled=False))})
    assert message.startswith("host lin2, account 20001: api_port 20001 (computed from the login) is also the api_port of account 10001")
    assert "computed ports are 20000 + login mod 10000" in message


def test_an_explicit_api_port_resolves_a_computed_clash() -> None:
    assert problems({"lin2": linux(acct(10001), acct(20001, api_port=25555))}) == []


def test_computed_ports_may_repeat_across_hosts() -> None:
    assert problems({"lin1": linux(acct(10001)), "lin2": linux(acct(20001))}) == []


def test_vnc_ports_clash_only_between_accounts_with_vnc() -> None:
    vnc = {"vnc": True, "vnc_password": SECRET}
    assert problems({"lin2": linux(acct(10001, **vnc), acct(20001, api_port=25555))}) == []
    message = only({"lin2": linux(acct(10001, **vnc), acct(20001, api_port=25555, **vnc))})
    assert "vnc port 30001 (computed from the login) is also the vnc port of account 10001" in message
    assert SECRET not in message


def test_host_in_both_os_groups() -> None:
    groups = {"mt5_linux": ["h"], "mt5_windows": ["h"], "platform": []}
    message = only({"h": linux(acct(1))}, groups)
    assert message == "host h is in both mt5_linux and mt5_windows; a host runs one platform: remove it from one group"


def test_windows_host_in_platform_group() -> None:
    groups = {"mt5_linux": [], "mt5_windows": ["w"], "platform": ["w"]}
    assert "host w is in mt5_windows and platform; platform services run on Linux hosts only" in only({"w": linux(acct(1))}, groups)


def test_accounts_on_a_host_outside_the_farm_groups() -> None:
    message = only({"db1": linux(acct(1))})
    assert message.startswith("host db1 defines mt5_accounts but is in neither mt5_linux nor mt5_windows")


def test_density_over_the_cap_says_by_how_many_and_what_to_do() -> None:
    # 16 GiB farm host: (16 − 0.0625 − 2) / 1.2 = 11.6 → 11.
    accounts = [acct(100 + i) for i in range(14)] + [acct(999, enabled=False)]
    message = only({"lin2": linux(*accounts, mt5_host_memory_gb=16)})
    assert message == (
        "host lin2: 14 enabled accounts exceed its density cap of 11 by 3 (memory-bound: (16 − 0.0625 − 2) GiB / 1.2 GiB = 11.6 → 11 "
        "(CPU count unknown: CPU bound not checked)); move 3 accounts to another host or disable them, or declare the real "
        "mt5_host_memory_gb / mt5_host_cpus if the host is bigger"
    )


def test_density_exactly_at_the_cap_passes() -> None:
    accounts = [acct(100 + i) for i in range(11)]
    assert problems({"lin2": linux(*accounts, mt5_host_memory_gb=16)}) == []


def test_density_is_cpu_bound_when_cpus_are_declared() -> None:
    accounts = [acct(100 + i) for i in range(5)]
    message = only({"lin2": linux(*accounts, mt5_host_memory_gb=64, mt5_host_cpus=2)})
    assert "5 enabled accounts exceed its density cap of 4 by 1 (cpu-bound: (2 − 1) CPUs / 0.25 CPU = 4 → 4" in message
    assert "move 1 account to another host or disable it" in message


def test_memory_overrides_that_add_up_past_the_host() -> None:
    # 16 GiB: 13.9375 GiB left; 5 × 3 GiB = 15 GiB; count 5 ≤ cap 11.
    accounts = [acct(100 + i, memory="3G") for i in range(5)]
    message = only({"lin2": linux(*accounts, mt5_host_memory_gb=16)})
    assert message == (
        "host lin2: the enabled accounts' memory limits add up to 15 GiB, 1.0625 GiB more than the 13.9375 GiB left for "
        "accounts ((16 − 0.0625 − 2) GiB); lower the per-account memory overrides, move accounts to another host or "
        "disable some, or declare the real mt5_host_memory_gb"
    )


def test_platform_host_carries_the_platform_services() -> None:
    accounts = [acct(100 + i) for i in range(38)]
    message = only({"lin1": linux(*accounts, mt5_host_memory_gb=64)})
    assert "38 enabled accounts exceed its density cap of 37 by 1 (memory-bound: (64 − 17.3125 − 2) GiB" in message


def test_density_settings_are_read_from_the_host() -> None:
    accounts = [acct(100 + i) for i in range(12)]
    host = linux(
        *accounts,
        mt5_host_memory_gb=16,
        mt5_density_headroom_gb=0,
        mt5_platform_service_memory_gb={"node_exporter": 0},
        mt5_density_profiles={"linux": {"memory_limit": "1G", "memory_reservation": "512M"}},
    )
    report = inv.mt5_inventory_report(addressed({"lin2": host}), GROUPS)
    assert report["problems"] == []
    assert report["hosts"]["lin2"]["density"]["cap"] == 16


@pytest.mark.parametrize(
    ("host_vars", "expected"),
    [
        ({"mt5_host_memory_gb": "lots"}, "host lin2: mt5_host_memory_gb is not a size: got 'lots' (str); expected a number of GiB"),
        ({"mt5_host_memory_gb": 0}, "host lin2: mt5_host_memory_gb must be more than zero: got 0"),
        ({"mt5_host_memory_gb": 64, "mt5_host_cpus": "eight"}, "host lin2: mt5_host_cpus must be a number of CPUs above zero, got 'eight'"),
        ({"mt5_host_memory_gb": 64, "mt5_density_headroom_gb": -1}, "host lin2: mt5_density_headroom_gb must be zero or more: got -1"),
        ({"mt5_host_memory_gb": 64, "mt5_density_reserved_cpus": "x"}, "host lin2: mt5_density_reserved_cpus is not a number: got 'x'"),
        (
            {"mt5_host_memory_gb": 64, "mt5_platform_service_memory_gb": {"redis": "big"}},
            "host lin2: mt5_platform_service_memory_gb.redis is not a size: got 'big'",
        ),
        ({"mt5_density_profiles": {"linux": {"memory": 1}}}, "host lin2: mt5_density_profiles.linux has an unknown key: got 'memory'"),
    ],
)
def test_bad_host_settings_are_problems_not_crashes(host_vars: dict[str, Any], expected: str) -> None:
    assert only({"lin2": linux(acct(1), **host_vars)}).startswith(expected)


def test_measured_capacity_replaces_the_declared_one() -> None:
    accounts = [acct(100 + i) for i in range(12)]
    hosts = {"lin2": linux(*accounts, mt5_host_memory_gb=64)}
    assert problems(hosts) == []
    found = problems(hosts, measured={"lin2": {"memory": "16384M", "cpus": 8}})
    assert len(found) == 1 and "12 enabled accounts exceed its density cap of 11 by 1" in found[0]
    # A host that declares nothing is checked from what was measured.
    found = problems({"lin2": linux(*accounts)}, measured={"lin2": {"memory": "16G"}})
    assert len(found) == 1 and "density cap of 11" in found[0]
    found = problems({"lin2": linux(acct(1))}, measured={"lin2": {"memory": "a lot"}})
    assert found == [
        "host lin2: measured memory is not a size: got 'a lot' (str); expected a number of GiB (64, 1.2) or a string with a binary unit "
        '("64G", "64GiB", "768M", "65536MiB")'
    ]


def test_undefined_templates_become_problems_and_secret_messages_stay_vague() -> None:
    hosts = {
        "lin2": linux(
            acct(1, password=jinja2.Undefined(name="vault_mt5_passwords")),
            acct(2, password=jinja2.Undefined(hint="object of type 'dict' has no attribute '2'")),
            acct(3, password=jinja2.Undefined(hint=f"bad value {SECRET!r}"), server=jinja2.Undefined(name="broker")),
            mt5_host_cpus=jinja2.Undefined(name="cpu_count"),
        )
    }
    found = problems(hosts)
    assert found == [
        "host lin2: mt5_host_cpus could not be templated ('cpu_count' is undefined); define it or remove it",
        "host lin2, account 1: password refers to an undefined variable (vault_mt5_passwords); add it to the vault file "
        "(see inventories/example/group_vars/all/vault.yml.example) and run with the vault",
        "host lin2, account 2: password refers to a vault entry that is not defined (key '2'); add it to the vault file "
        "(see inventories/example/group_vars/all/vault.yml.example) and run with the vault",
        "host lin2, account 3: server could not be templated ('broker' is undefined); define the variable or write the server name",
        "host lin2, account 3: password refers to an undefined variable; add it to the vault file "
        "(see inventories/example/group_vars/all/vault.yml.example) and run with the vault",
    ]


def test_many_problems_are_all_reported_sorted_by_host_then_account() -> None:
    hosts = {
        "win1": linux(acct(5, vnc=True)),
        "lin2": linux(acct("9"), {"login": 10, "passwd": SECRET, "server": "B"}, acct(5)),
        "lin1": {"mt5_accounts": {"login": 1}},
    }
    found = problems(hosts)
    assert [p.split(":")[0] for p in found] == [
        "host lin1",
        "host lin2, account #1 in mt5_accounts",
        "host lin2, account 10",
        "host lin2, account 10",
        "host win1, account 5",
        "host win1, account 5 (mt5_accounts item 1)",
    ]
    assert all(SECRET not in p for p in found)


def test_input_is_not_modified() -> None:
    hosts = {"lin2": linux(acct(1), acct(1, memory="2G"), mt5_host_memory_gb=16)}
    before = copy.deepcopy(hosts)
    problems(hosts)
    assert hosts == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (([], GROUPS), "mt5_inventory_report: hosts must be a mapping of host name to its vars, got a list"),
        (({}, "mt5_linux"), "mt5_inventory_report: groups must be the inventory's groups mapping, got a string"),
        (({"lin2": "x"}, GROUPS), "mt5_inventory_report: hosts['lin2'] must be that host's vars, got a string"),
        (({}, GROUPS, ["lin2"]), "mt5_inventory_report: measured must map host names to {memory, cpus}, got a list"),
    ],
)
def test_wrong_call_shapes_raise(args: tuple, expected: str) -> None:
    with pytest.raises(FarmError, match=expected.replace("[", r"\[").replace("{", r"\{")):
        inv.mt5_inventory_report(*args)


# --- the addresses hosts reach each other at ----------------------------------------------


def fleet_problems(hosts: dict[str, Any], groups: dict[str, Any] | None = None) -> list[str]:
    return inv.mt5_inventory_problems(hosts, groups or GROUPS)


def test_one_host_needs_no_address() -> None:
    assert fleet_problems({"lin1": linux(acct(1001))}, {"mt5_linux": ["lin1"], "platform": ["lin1"]}) == []
    assert fleet_problems({"lin1": linux(acct(1001)), "lin2": linux(acct(1002))}, {"mt5_linux": ["lin1", "lin2"]}) == []


def test_a_fleet_with_loopback_defaults_is_refused_naming_each_host() -> None:
    found = fleet_problems(
        {"lin1": linux(acct(1001)), "lin2": linux(acct(1002)), "win1": {"mt5_accounts": [], "mt5_bind_address": "127.0.0.1"}}
    )
    assert len(found) == 3, found
    assert "platform host lin1: the accounts on the other hosts reach Redis and Postgres at its mt5_bind_address" in found[0]
    assert "host lin2: mt5_bind_address is not set, so the platform host lin1 would reach its accounts at 127.0.0.1" in found[1]
    assert (
        "host win1: the platform host lin1 cannot reach its accounts at mt5_bind_address '127.0.0.1': it is a loopback address" in found[2]
    )


def test_the_platform_address_may_differ_from_its_bind_address() -> None:
    hosts = {"lin1": linux(acct(1001), mt5_platform_address="10.0.0.1"), "lin2": linux(acct(1002), mt5_bind_address="10.0.0.2")}
    assert fleet_problems(hosts, {"mt5_linux": ["lin1", "lin2"], "platform": ["lin1"]}) == []


def test_two_hosts_with_one_address_and_unresolved_templates_are_problems() -> None:
    hosts = {
        "lin1": linux(acct(1001), mt5_bind_address="10.0.0.1"),
        "lin2": linux(acct(1002), mt5_bind_address="10.0.0.1"),
        "win1": {"mt5_accounts": [], "mt5_bind_address": jinja2.Undefined(hint="'ansible_host' is undefined")},
    }
    found = fleet_problems(hosts)
    assert len(found) == 2, found
    assert "host lin2: mt5_bind_address 10.0.0.1 is also lin1's" in found[0]
    assert "host win1: the platform host lin1 cannot reach its accounts at mt5_bind_address" in found[1]
    assert "could not be templated" in found[1]


def test_a_host_checked_alone_is_held_to_the_same_rule() -> None:
    # The docker host stage checks one host at a time (with its facts): the platform host is
    # not in that view, the farm host's own address still is.
    assert fleet_problems({"lin2": linux(acct(1002))}) != []
    assert fleet_problems({"lin2": linux(acct(1002), mt5_bind_address="10.0.0.2")}) == []


# --- density per backend (issue 13) ------------------------------------------------------------


def test_simulator_accounts_are_counted_with_the_simulators_profile() -> None:
    # 16 GiB: 11 terminal accounts fit (1.2 GiB each); 55 simulator accounts (0.25 GiB each).
    simulators = [acct(100 + i, backend="simulator") for i in range(55)]
    assert problems({"lin2": linux(*simulators, mt5_host_memory_gb=16)}) == []
    message = only({"lin2": linux(*simulators, acct(999, backend="simulator"), mt5_host_memory_gb=16)})
    assert message.startswith(
        "host lin2: 56 enabled accounts exceed its density cap of 55 by 1 (memory-bound: (16 − 0.0625 − 2) GiB / 0.25 GiB"
    )


def test_a_host_mixing_simulator_and_terminal_accounts_adds_up_their_profiles() -> None:
    # 16 GiB: 13.9375 GiB left; 10 terminal (12 GiB) + 8 simulator (2 GiB) = 14 GiB.
    mixed = [acct(100 + i) for i in range(10)] + [acct(200 + i, backend="simulator") for i in range(7)]
    assert problems({"lin2": linux(*mixed, mt5_host_memory_gb=16)}) == []
    message = only({"lin2": linux(*mixed, acct(299, backend="simulator"), mt5_host_memory_gb=16)})
    assert message.startswith("host lin2: the enabled accounts' memory limits add up to 14 GiB, 0.0625 GiB more than the 13.9375 GiB")
    # CPUs: (4 − 1) = 3 left; 10 × 0.25 + 12 × 0.05 = 3.1.
    cpu_mixed = [acct(100 + i) for i in range(10)] + [acct(200 + i, backend="simulator") for i in range(12)]
    message = only({"lin2": linux(*cpu_mixed, mt5_host_memory_gb=64, mt5_host_cpus=4)})
    assert message == (
        "host lin2: the enabled accounts' CPU reservations add up to 3.1 CPUs, 0.1 more than the 3 left for accounts "
        "((4 − 1) CPUs; profiles linux, simulator); move accounts to another host or disable some, or declare the real "
        "mt5_host_cpus if the host is bigger"
    )
