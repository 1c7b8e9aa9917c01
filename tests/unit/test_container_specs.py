"""mt5farm.container_specs: one builder for the Linux and Windows account containers.

``data/container_specs_before_merge.json`` holds inputs and the specs the two builders gave
before they became one (roles/mt5_linux's mt5_linux_container_specs and roles/mt5_windows's
mt5_windows_container_specs, pinned from main at 976d593): the merged builder must give
the very same specs, so no container's config hash changes and no container is recreated.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from mt5farm.accounts import mt5_resolved_accounts
from mt5farm.container_specs import OS_RULES, mt5_container_specs
from mt5farm.errors import FarmError

BEFORE = json.loads((Path(__file__).parent / "data" / "container_specs_before_merge.json").read_text())


def specs(os: str, accounts: list[dict[str, Any]] | None = None, **settings: Any) -> list[dict[str, Any]]:
    given = BEFORE[os]
    return mt5_container_specs(mt5_resolved_accounts(accounts or given["accounts"], os), os, {**given["settings"], **settings})


# Issue 13: a simulator account gets the simulator's density profile (256 MiB, 128 MiB
# reserved), the one change since the merge.
SIMULATOR_MEMORY = {"memory": 268435456, "memory_reservation": 134217728}


@pytest.mark.parametrize("os", ["linux", "windows"])
def test_the_merged_builder_gives_the_specs_of_the_two_it_replaced(os: str) -> None:
    expected = copy.deepcopy(BEFORE[os]["specs"])
    for spec in expected:
        if spec["env"]["MT5_BACKEND"] == "simulator":
            spec.update({key: value for key, value in SIMULATOR_MEMORY.items() if key in spec})
    assert specs(os) == expected
    assert any(spec["env"]["MT5_BACKEND"] == "simulator" for spec in expected)


def test_only_enabled_accounts_get_a_container() -> None:
    assert [spec["name"] for spec in specs("linux")] == ["mt5-5001001", "mt5-5001002"]
    assert [spec["name"] for spec in specs("windows")] == ["mt5-8000001", "mt5-8000002"]


def test_linux_publishes_on_the_bind_address_and_novnc_only_with_vnc() -> None:
    plain, with_vnc = specs("linux")
    assert [p["host_ip"] for p in plain["ports"]] == ["10.0.0.11"]
    assert [(p["container_port"], p["host_port"]) for p in with_vnc["ports"]] == [(8000, 25000), (6080, 31002)]
    assert plain["env"]["MT5_VNC"] == "0" and with_vnc["env"]["MT5_VNC"] == "1"
    assert plain["cap_drop"] == ["ALL"] and plain["user"] == "10001:10001" and "isolation" not in plain


def test_with_tls_the_endpoint_and_advertise_url_say_https_and_nothing_else_changes() -> None:
    plain, tls = specs("linux")[0], specs("linux", tls=True)[0]
    assert tls["env"]["ADVERTISE_URL"] == "https://10.0.0.11:21001" == tls["labels"]["mt5farm.endpoint"]
    assert plain["env"]["ADVERTISE_URL"] == "http://10.0.0.11:21001"
    differs = {key for key in plain if plain[key] != tls[key]}
    assert differs == {"env", "labels"}
    assert specs("linux", tls=False) == specs("linux")


def test_a_terminals_container_resolves_the_update_hosts_to_loopback_a_simulators_not() -> None:
    """Issue 12, fault 9: LiveUpdate is kept from fetching a build by name resolution."""
    simulator, terminal = specs("linux", blocked_hosts=["download.mql5.com", "download.terminal.free"])[:2]
    assert terminal["extra_hosts"] == {"download.mql5.com": "127.0.0.1", "download.terminal.free": "127.0.0.1"}
    assert "extra_hosts" not in simulator  # no terminal: its container (and its hash) stays as it was
    assert "extra_hosts" not in specs("linux", blocked_hosts=[])[1]
    assert all("extra_hosts" not in spec for spec in specs("windows", blocked_hosts=["download.mql5.com"]))


def test_windows_publishes_on_every_address_with_only_what_its_engine_accepts() -> None:
    first, second = specs("windows")
    assert [p["host_ip"] for p in first["ports"]] == ["0.0.0.0"]
    assert first["isolation"] == "process" and second["isolation"] == "hyperv"
    assert first["mounts"][0]["source"] == "C:\\mt5farm\\secrets\\8000001"  # the root's trailing \ is not doubled
    assert first["labels"]["mt5farm.platform"] == "windows"
    assert "MT5_VNC" not in first["env"]
    for refused in ("memory_reservation", "pids_limit", "cap_drop", "security_opt", "user", "network"):
        assert refused not in first


def test_windows_isolation_defaults_to_the_hosts_then_process() -> None:
    accounts = [{"login": 8000009, "server": "Live"}]
    assert specs("windows", accounts, isolation="hyperv")[0]["isolation"] == "hyperv"
    assert specs("windows", accounts, isolation=None)[0]["isolation"] == "process"


def test_a_bad_isolation_is_refused_even_on_a_disabled_account() -> None:
    accounts = [{"login": 8000009, "server": "Live", "enabled": False, "isolation": "vm"}]
    with pytest.raises(FarmError, match=r"^mt5_container_specs: account 8000009: isolation 'vm' is not one of process, hyperv$"):
        specs("windows", accounts)


def test_the_settings_are_not_changed() -> None:
    settings = copy.deepcopy(BEFORE["linux"]["settings"])
    mt5_container_specs(mt5_resolved_accounts(BEFORE["linux"]["accounts"], "linux"), "linux", settings)
    assert settings == BEFORE["linux"]["settings"]


@pytest.mark.parametrize(
    ("accounts", "os", "message"),
    [
        ("mt5-1", "linux", "mt5_container_specs: accounts must be the host's resolved accounts (mt5_resolved_accounts), got str"),
        ([], "macos", "mt5_container_specs: os is not a known OS: got 'macos'"),
    ],
)
def test_wrong_calls_are_refused(accounts: Any, os: str, message: str) -> None:
    with pytest.raises(FarmError) as caught:
        mt5_container_specs(accounts, os, {})
    assert str(caught.value).startswith(message)


def test_there_is_a_row_per_os() -> None:
    assert set(OS_RULES) == {"linux", "windows"}
