"""mt5farm.windows: the firewall rules, Defender exclusions, certificate names and build helpers of a Windows host."""

from __future__ import annotations

from typing import Any

import pytest

from mt5farm import windows
from mt5farm.accounts import mt5_resolved_accounts
from mt5farm.errors import FarmError

ACCOUNTS = mt5_resolved_accounts(
    [
        {"login": 8000002, "server": "Live", "api_port": 20500},
        {"login": 8000001, "server": "Live"},
        {"login": 8000003, "server": "Live", "enabled": False},
    ],
    "windows",
)


def test_firewall_rules_open_the_docker_api_and_each_enabled_accounts_port_only() -> None:
    rules = windows.mt5_windows_firewall_rules(ACCOUNTS, ["10.0.0.11", "10.0.1.0/24"], 2376, ["10.0.0.5"])
    assert [(r["name"], r["localport"], r["remoteip"]) for r in rules] == [
        ("MT5 Farm Docker API 2376", "2376", "10.0.0.5"),
        ("MT5 Farm account 8000001", "20001", "10.0.0.11,10.0.1.0/24"),
        ("MT5 Farm account 8000002", "20500", "10.0.0.11,10.0.1.0/24"),
    ]
    assert {(r["protocol"], r["direction"], r["action"], r["group"]) for r in rules} == {("tcp", "in", "allow", "MT5 Farm")}


def test_without_enabled_accounts_the_api_sources_are_not_needed() -> None:
    rules = windows.mt5_windows_firewall_rules(ACCOUNTS[2:], None, 2376, ["10.0.0.5"])
    assert [r["localport"] for r in rules] == ["2376"]


@pytest.mark.parametrize(
    ("api_from", "docker_from", "message"),
    [
        ([], ["10.0.0.5"], "mt5_windows_firewall_rules: mt5_windows_api_allowed_from must be a non-empty list"),
        (["10.0.0.11"], ["any"], "mt5_windows_firewall_rules: mt5_windows_docker_api_allowed_from: 'any' is not an IP address or network"),
        (["0.0.0.0/0"], ["10.0.0.5"], "mt5_windows_firewall_rules: mt5_windows_api_allowed_from: '0.0.0.0/0' is every address"),
    ],
)
def test_firewall_sources_must_be_named_addresses(api_from: Any, docker_from: Any, message: str) -> None:
    with pytest.raises(FarmError) as caught:
        windows.mt5_windows_firewall_rules(ACCOUNTS, api_from, 2376, docker_from)
    assert str(caught.value).startswith(message)


def test_defender_excludes_each_enabled_accounts_volume() -> None:
    assert windows.mt5_windows_defender_paths(ACCOUNTS, "C:\\ProgramData\\docker\\") == [
        "C:\\ProgramData\\docker\\volumes\\mt5-8000002-data",
        "C:\\ProgramData\\docker\\volumes\\mt5-8000001-data",
    ]


def test_san_names_addresses_as_ip_and_names_as_dns_once_each() -> None:
    assert windows.mt5_windows_san(["win-01", "10.0.0.21", "win-01", " ", "::1"]) == ["DNS:win-01", "IP:10.0.0.21", "IP:::1"]
    with pytest.raises(FarmError, match=r"^mt5_windows_san: names must be a non-empty list"):
        windows.mt5_windows_san([])


def test_input_source_is_the_path_or_the_cached_download() -> None:
    digest = "AB" * 32
    by_path = {"label": "Python", "spec": {"path": "/srv/python.exe", "sha256": digest}, "context_path": "installers/python.exe"}
    by_url = {"label": "Python", "spec": {"url": "https://x/python.exe", "sha256": digest}, "context_path": "installers/python.exe"}
    assert windows.mt5_windows_input_source(by_path, "/cache") == {"src": "/srv/python.exe", "sha256": digest.lower()}
    assert windows.mt5_windows_input_source(by_url, "/cache") == {"src": f"/cache/{digest.lower()}-python.exe", "sha256": digest.lower()}
    with pytest.raises(FarmError, match=r"^mt5_windows_input_source: Python: neither path nor url$"):
        windows.mt5_windows_input_source({"label": "Python", "spec": {}}, "/cache")


def test_pair_and_path() -> None:
    assert windows.mt5_windows_pair(["/a/b.whl", "wheels/b.whl"]) == {"src": "/a/b.whl", "dest": "wheels/b.whl"}
    assert windows.mt5_windows_pair({"key": "wheels/b.whl", "value": {"src": "/a/b.whl"}}) == {"src": "/a/b.whl", "dest": "wheels/b.whl"}
    assert windows.mt5_windows_path("secrets", "C:\\mt5farm\\") == "C:\\mt5farm\\secrets"
