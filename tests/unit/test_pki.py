"""mt5farm.pki: when TLS between hosts is on, and the names in each host's certificate."""

from __future__ import annotations

from typing import Any

import pytest

from mt5farm import pki
from mt5farm.errors import FarmError

ONE_HOST = {"mt5_linux": ["localhost"], "mt5_windows": [], "platform": ["localhost"]}
TWO_HOSTS = {"mt5_linux": ["farm-01", "farm-02"], "mt5_windows": [], "platform": ["farm-01"]}
PLATFORM_ONLY_ELSEWHERE = {"mt5_linux": ["farm-01"], "platform": ["plat-01"]}
WINDOWS_TOO = {"mt5_linux": ["farm-01"], "mt5_windows": ["win-01"], "platform": ["farm-01"]}


@pytest.mark.parametrize(
    ("setting", "groups", "want"),
    [
        ("auto", ONE_HOST, False),  # the local demo: one host, nothing crosses a network
        (None, ONE_HOST, False),
        ("", ONE_HOST, False),
        ("auto", TWO_HOSTS, True),
        ("auto", PLATFORM_ONLY_ELSEWHERE, True),
        ("auto", WINDOWS_TOO, True),
        ("AUTO", {"mt5_linux": ["a"]}, False),
        (True, ONE_HOST, True),
        (False, TWO_HOSTS, False),
        ("true", ONE_HOST, True),
        ("off", TWO_HOSTS, False),
    ],
)
def test_tls_is_on_by_default_with_more_than_one_host_and_explicit_settings_decide(setting: Any, groups: Any, want: bool) -> None:
    assert pki.mt5_tls_enabled(setting, groups) is want


@pytest.mark.parametrize(
    ("setting", "groups", "message"),
    [("maybe", ONE_HOST, "must be auto, true or false, got 'maybe'"), (2, ONE_HOST, "got 2"), ("auto", ["x"], "groups must be")],
)
def test_tls_setting_errors(setting: Any, groups: Any, message: str) -> None:
    with pytest.raises(FarmError, match=message):
        pki.mt5_tls_enabled(setting, groups)


def test_platform_host_names_cover_its_addresses_loopback_and_the_service_containers() -> None:
    view = {"mt5_bind_address": "10.0.0.11", "mt5_platform_address": "10.0.1.11"}
    assert pki.mt5_pki_names("farm-01", view, TWO_HOSTS) == [
        "DNS:farm-01",
        "IP:10.0.0.11",
        "IP:10.0.1.11",
        "IP:127.0.0.1",
        "DNS:localhost",
        "DNS:mt5-redis",
        "DNS:mt5-postgres",
    ]


def test_farm_host_names_and_extra_names_without_repeats() -> None:
    view = {"mt5_bind_address": "10.0.0.12"}
    assert pki.mt5_pki_names("farm-02", view, TWO_HOSTS, ["farm-02.example.net", "10.0.0.12", "fd00::12"]) == [
        "DNS:farm-02",
        "IP:10.0.0.12",
        "IP:127.0.0.1",
        "DNS:localhost",
        "DNS:farm-02.example.net",
        "IP:fd00::12",
    ]


def test_an_inventory_name_that_is_no_dns_name_is_left_out() -> None:
    assert pki.mt5_pki_names("farm_01 (old)", {"mt5_bind_address": "10.0.0.13"}, TWO_HOSTS) == [
        "IP:10.0.0.13",
        "IP:127.0.0.1",
        "DNS:localhost",
    ]


@pytest.mark.parametrize(
    ("extra", "groups", "message"),
    [
        ("a.example", TWO_HOSTS, "extra names must be a list"),
        (["two words"], TWO_HOSTS, "'two words' is not a host name"),
        ([], None, "groups must be"),
    ],
)
def test_names_errors(extra: Any, groups: Any, message: str) -> None:
    with pytest.raises(FarmError, match=message):
        pki.mt5_pki_names("farm-02", {}, groups, extra)
