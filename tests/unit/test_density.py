"""mt5farm.density (the mt5_density filters): the PRD's caps from the PRD's inputs, reasons, errors, properties."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mt5farm import density as d
from mt5farm.errors import FarmError

PLATFORM_SERVICES = ["nginx", "redis", "postgres", "prometheus", "grafana", "alertmanager", "node_exporter"]


# --------------------------------------------------------------------------------------
# The PRD's own numbers (seed 001, sections 3.4 and 4.4)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os", "infrastructure", "expected", "reason"),
    [
        pytest.param("linux", 16, 38, "memory-bound: (64 − 16 − 2) GiB / 1.2 GiB = 38.3 → 38", id="prd-linux-38"),
        pytest.param("windows", 17.5, 24, "memory-bound: (64 − 17.5 − 2) GiB / 1.8 GiB = 24.7 → 24", id="prd-windows-24"),
        # The PRD's Linux 16 GiB leaves out its own 1 GiB Nginx; counted, the host holds 37.
        pytest.param("linux", 17, 37, "memory-bound: (64 − 17 − 2) GiB / 1.2 GiB = 37.5 → 37", id="prd-linux-with-its-nginx-37"),
    ],
)
def test_prd_inputs_reproduce_prd_caps(os: str, infrastructure: float, expected: int, reason: str) -> None:
    result = d.mt5_density_cap(64, os, infrastructure=infrastructure)
    assert result["cap"] == expected
    assert result["memory_cap"] == expected
    assert result["cpu_cap"] is None
    assert result["bound"] == "memory"
    assert result["reason"] == f"{reason} (CPU count unknown: CPU bound not checked)"
    assert result["services"] is None
    assert result["headroom_gib"] == 2.0


def test_prd_linux_max_of_40_does_not_fit_64_gib() -> None:
    """The PRD's own "Max: 40 containers = 65GB" is over the host; the cap stays below 40."""
    assert d.mt5_density_cap(64, "linux", infrastructure=17, headroom=0)["cap"] == 39


def test_prd_service_sizes_are_the_default_table() -> None:
    assert d.mt5_infrastructure_gib(["redis", "postgres", "prometheus", "grafana"]) == 16.0  # the PRD's "16GB"
    assert d.mt5_infrastructure_gib(["nginx", "redis", "postgres", "prometheus", "grafana"]) == 17.0


def test_prd_linux_profile_is_the_docker_stack_limits() -> None:
    profile = d.mt5_density_profile("linux")
    assert profile["memory_limit_gib"] == 1.2
    assert profile["memory_reservation_gib"] == 0.75  # 768M
    assert profile["cpu_limit"] == 0.5
    assert profile["cpu_reservation"] == 0.25
    assert profile["memory_reservation_bytes"] == 768 * 1024**2
    assert profile["memory_limit_bytes"] == math.floor(Fraction("1.2") * 1024**3) == 1288490188


# --------------------------------------------------------------------------------------
# Derived infrastructure and our defaults
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group_names", "services"),
    [
        (["mt5_linux"], ["node_exporter"]),
        (["mt5_linux", "platform"], PLATFORM_SERVICES),
        (["mt5_windows"], ["node_exporter"]),
        ([], ["node_exporter"]),
    ],
)
def test_host_services_follow_the_groups(group_names: list[str], services: list[str]) -> None:
    assert d.mt5_host_services(group_names) == services


@pytest.mark.parametrize(
    ("services", "table", "expected"),
    [
        (["node_exporter"], None, 0.0625),
        (PLATFORM_SERVICES, None, 17.3125),
        (PLATFORM_SERVICES, {"postgres": "16G"}, 25.3125),
        (["postgres", "pgbouncer"], {"pgbouncer": "256M"}, 8.25),
        ([], None, 0.0),
    ],
)
def test_infrastructure_sums_the_service_table(services: list[str], table: dict | None, expected: float) -> None:
    assert d.mt5_infrastructure_gib(services, table) == expected


@pytest.mark.parametrize(
    ("os", "services", "cpus", "cap", "bound", "reason"),
    [
        pytest.param(
            "linux",
            PLATFORM_SERVICES,
            16,
            37,
            "memory",
            "memory-bound: (64 − 17.3125 − 2) GiB / 1.2 GiB = 37.2 → 37 (CPU would allow 60: (16 − 1) CPUs / 0.25 CPU = 60 → 60)",
            id="linux-platform-host",
        ),
        pytest.param(
            "linux",
            None,
            16,
            51,
            "memory",
            "memory-bound: (64 − 0.0625 − 2) GiB / 1.2 GiB = 51.6 → 51 (CPU would allow 60: (16 − 1) CPUs / 0.25 CPU = 60 → 60)",
            id="linux-farm-only",
        ),
        pytest.param(
            "windows",
            None,
            8,
            28,
            "cpu",
            "cpu-bound: (8 − 1) CPUs / 0.25 CPU = 28 → 28 (memory would allow 34: (64 − 0.0625 − 2) GiB / 1.8 GiB = 34.4 → 34)",
            id="windows-cpu-bound",
        ),
        pytest.param(
            "linux",
            None,
            1,
            0,
            "cpu",
            "cpu-bound: (1 − 1) CPUs leaves no CPU for accounts → 0 (memory would allow 51: (64 − 0.0625 − 2) GiB / 1.2 GiB = 51.6 → 51)",
            id="one-cpu-host-holds-none",
        ),
    ],
)
def test_cap_bound_and_reason(os: str, services: list[str] | None, cpus: int, cap: int, bound: str, reason: str) -> None:
    result = d.mt5_density_cap("64G", os, cpus=cpus, services=services)
    assert (result["cap"], result["bound"], result["reason"]) == (cap, bound, reason)
    assert result["cap"] == min(result["memory_cap"], result["cpu_cap"])


def test_small_host_leaves_nothing_for_accounts() -> None:
    result = d.mt5_density_cap(16, "linux", services=PLATFORM_SERVICES)
    assert result["cap"] == 0
    assert result["available_memory_gib"] == 0.0
    assert result["reason"].startswith("memory-bound: (16 − 17.3125 − 2) GiB leaves no memory for accounts → 0")


def test_result_is_plain_data_for_jinja() -> None:
    result = d.mt5_density_cap(64, "linux", cpus=16)
    assert set(result) == {
        "cap",
        "memory_cap",
        "cpu_cap",
        "bound",
        "reason",
        "os",
        "profile",
        "host_memory_gib",
        "infrastructure_gib",
        "services",
        "headroom_gib",
        "available_memory_gib",
        "account_memory_gib",
        "host_cpus",
        "reserved_cpus",
        "account_cpu_reservation",
    }
    assert all(not isinstance(v, Fraction) for v in result.values())


@pytest.mark.parametrize(
    ("kwargs", "cap"),
    [
        # 20.5125 − 17.3125 − 2 = 1.2 exactly: in floats (20.5125 − 17.3125 − 2) / 1.2 = 0.99999...
        ({"host_memory": 20.5125, "services": PLATFORM_SERVICES}, 1),
        ({"host_memory": "27.7125", "services": PLATFORM_SERVICES}, 7),
        ({"host_memory": 26.5125, "os": "windows", "services": PLATFORM_SERVICES}, 4),
        # (1.3 − 1) / 0.1 is 2.9999999999999996 in floats.
        ({"host_memory": 64, "cpus": 1.3, "profiles": {"linux": {"cpu_reservation": 0.1}}}, 3),
    ],
)
def test_arithmetic_is_exact(kwargs: dict, cap: int) -> None:
    assert d.mt5_density_cap(**kwargs)["cap"] == cap


def test_profiles_override_merges_per_key() -> None:
    profile = d.mt5_density_profile("windows", {"windows": {"memory_limit": "2G"}, "linux": {"cpu_limit": 1}})
    assert profile["memory_limit_gib"] == 2.0
    assert profile["memory_reservation_gib"] == 1.2  # default kept
    assert d.mt5_density_cap(64, "windows", profiles={"windows": {"memory_limit": "2G"}})["memory_cap"] == 30


def test_headroom_and_reserved_cpus_are_overridable() -> None:
    result = d.mt5_density_cap(64, "linux", cpus=4, headroom="4G", reserved_cpus=0, infrastructure=0)
    assert result["memory_cap"] == 50  # 60 / 1.2
    assert result["cpu_cap"] == 16  # 4 / 0.25


# --------------------------------------------------------------------------------------
# Sizes and the error branches
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "gib"),
    [
        (64, 64.0),
        (1.2, 1.2),
        ("64", 64.0),
        ("64G", 64.0),
        ("64g", 64.0),
        ("64GiB", 64.0),
        ("64GB", 64.0),
        ("768M", 0.75),
        ("768MiB", 0.75),
        ("1.2g", 1.2),
        ("65536MiB", 64.0),
        ("1T", 1024.0),
        ("1048576K", 1.0),
        (" 2 G ", 2.0),
        ("1073741824b", 1.0),
        (".5G", 0.5),
    ],
)
def test_size_accepts_numbers_and_binary_units(value: object, gib: float) -> None:
    assert d.mt5_size_gib(value) == gib


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (True, "is not a number"),
        (False, "is not a number"),
        (None, "is not a number"),
        (0, "must be more than zero"),
        (-1, "must be more than zero"),
        ("-3G", "must be more than zero"),
        ("0M", "must be more than zero"),
        (float("nan"), "is not a finite number"),
        (float("inf"), "is not a finite number"),
        ("lots", "is not a size"),
        ("", "is not a size"),
        ("64 gigs", "is not a size"),
        ("1e3", "is not a size"),
        ([64], "is not a number"),
    ],
)
def test_size_rejects_bad_values_naming_filter_argument_value_and_fix(value: object, why: str) -> None:
    with pytest.raises(FarmError) as caught:
        d.mt5_size_gib(value)
    message = str(caught.value)
    assert message.startswith(f"mt5_size_gib: size {why}: got {value!r}")
    assert 'expected a number of GiB (64, 1.2) or a string with a binary unit ("64G"' in message


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        (
            {"host_memory": 64, "os": "solaris"},
            ["mt5_density_cap: os is not a known OS: got 'solaris'", "'linux' or 'windows'"],
        ),
        ({"host_memory": 64, "os": None}, ["os is not a known OS: got None"]),
        ({"host_memory": 0}, ["mt5_density_cap: host_memory must be more than zero: got 0"]),
        ({"host_memory": "lots"}, ["mt5_density_cap: host_memory is not a size: got 'lots'"]),
        ({"host_memory": True}, ["host_memory is not a number: got True (bool)"]),
        ({"host_memory": 64, "cpus": 0}, ["mt5_density_cap: cpus must be more than zero: got 0", "a number of CPUs"]),
        ({"host_memory": 64, "cpus": "many"}, ["cpus is not a number: got 'many'"]),
        ({"host_memory": 64, "cpus": False}, ["cpus is not a number: got False (bool)"]),
        ({"host_memory": 64, "infrastructure": -1}, ["infrastructure must be zero or more: got -1"]),
        ({"host_memory": 64, "headroom": "plenty"}, ["headroom is not a size: got 'plenty'"]),
        ({"host_memory": 64, "reserved_cpus": -1}, ["reserved_cpus must be zero or more: got -1"]),
        (
            {"host_memory": 64, "services": ["nginx", "memcached"]},
            ["services names a service of unknown size: got 'memcached'", "add it to service_memory"],
        ),
        ({"host_memory": 64, "services": "nginx"}, ["services is not a list of service names: got 'nginx'"]),
        ({"host_memory": 64, "profiles": {"linux": {"memory": "2G"}}}, ["profiles.linux has an unknown key: got 'memory'", "memory_limit"]),
        ({"host_memory": 64, "profiles": {"bsd": {}}}, ["profiles names an unknown profile: got ['bsd']", "linux or windows or simulator"]),
        ({"host_memory": 64, "profiles": {"linux": {"memory_limit": 0}}}, ["profiles.linux.memory_limit must be more than zero: got 0"]),
        (
            {"host_memory": 64, "profiles": {"linux": {"memory_reservation": "2G"}}},
            ["memory_reservation (2 GiB) is above memory_limit (1.2 GiB)"],
        ),
        ({"host_memory": 64, "service_memory": {"redis": "big"}}, ["service_memory.redis is not a size: got 'big'"]),
    ],
)
def test_density_cap_errors(kwargs: dict, fragments: list[str]) -> None:
    with pytest.raises(FarmError) as caught:
        d.mt5_density_cap(**kwargs)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_profile_and_services_errors_name_their_filter() -> None:
    with pytest.raises(FarmError, match=r"^mt5_density_profile: os is not a known OS: got 'macos'"):
        d.mt5_density_profile("macos")
    with pytest.raises(FarmError, match=r"^mt5_host_services: group_names is not a list of group names: got 'platform'"):
        d.mt5_host_services("platform")
    with pytest.raises(FarmError, match=r"^mt5_infrastructure_gib: services names a service of unknown size: got 'kafka'"):
        d.mt5_infrastructure_gib(["kafka"])


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------

mib = st.integers  # sizes below are whole MiB, written as "<n>M" strings, checked with exact fractions


@settings(max_examples=300, deadline=None)
@given(
    host=mib(1024, 4 * 1024 * 1024),
    infra=mib(0, 64 * 1024),
    headroom=mib(0, 8 * 1024),
    per_account=mib(64, 8 * 1024),
    os=st.sampled_from(d.OSES),
)
def test_cap_never_overfills_memory_and_is_the_largest_that_fits(host: int, infra: int, headroom: int, per_account: int, os: str) -> None:
    result = d.mt5_density_cap(
        f"{host}M",
        os,
        infrastructure=f"{infra}M",
        headroom=f"{headroom}M",
        profiles={os: {"memory_limit": f"{per_account}M", "memory_reservation": f"{min(per_account, 64)}M"}},
    )
    cap = result["cap"]
    assert cap >= 0
    if cap > 0:
        assert cap * per_account + infra + headroom <= host
    assert (cap + 1) * per_account + infra + headroom > host  # no room for one more


@settings(max_examples=300, deadline=None)
@given(
    host=st.decimals(min_value=1, max_value=4096, places=3),
    infra=st.decimals(min_value=0, max_value=64, places=4),
    cpus=st.one_of(st.none(), st.decimals(min_value="0.5", max_value=256, places=2)),
    os=st.sampled_from(d.OSES),
)
def test_cap_fits_memory_and_cpu_with_decimal_inputs(host, infra, cpus, os: str) -> None:
    result = d.mt5_density_cap(str(host), os, cpus=None if cpus is None else str(cpus), infrastructure=float(infra))
    profile = d.DEFAULT_PROFILES[os]
    cap = result["cap"]
    assert cap * profile["memory_limit"] + Fraction(str(float(infra))) + d.DEFAULT_HEADROOM_GIB <= Fraction(str(host)) or cap == 0
    if cpus is not None:
        assert cap * profile["cpu_reservation"] + d.DEFAULT_RESERVED_CPUS <= Fraction(str(cpus)) or cap == 0


@settings(max_examples=300, deadline=None)
@given(
    host=st.integers(1, 2 * 1024 * 1024),
    more=st.integers(0, 512 * 1024),
    cpus=st.one_of(st.none(), st.integers(1, 512)),
    services=st.sampled_from([["node_exporter"], PLATFORM_SERVICES]),
    os=st.sampled_from(d.OSES),
)
def test_cap_never_shrinks_when_memory_grows(host: int, more: int, cpus: int | None, services: list[str], os: str) -> None:
    small = d.mt5_density_cap(f"{host}M", os, cpus=cpus, services=services)["cap"]
    big = d.mt5_density_cap(f"{host + more}M", os, cpus=cpus, services=services)["cap"]
    assert small <= big


@settings(max_examples=300, deadline=None)
@given(
    cpus=st.decimals(min_value="0.25", max_value=512, places=2),
    more=st.decimals(min_value=0, max_value=128, places=2),
    host=st.integers(1, 4096),
    os=st.sampled_from(d.OSES),
)
def test_cap_never_shrinks_when_cpus_grow(cpus, more, host: int, os: str) -> None:
    small = d.mt5_density_cap(host, os, cpus=str(cpus))
    big = d.mt5_density_cap(host, os, cpus=str(cpus + more))
    assert small["cap"] <= big["cap"]
    assert small["cpu_cap"] <= big["cpu_cap"]
    # Knowing the CPU count can only lower the cap, never raise it.
    assert big["cap"] <= d.mt5_density_cap(host, os)["cap"]


# --- the simulator backend's own profile (issue 13: a demo host carries tens of them) ---------


def test_simulator_accounts_get_their_own_profile_on_either_os() -> None:
    for os in ("linux", "windows"):
        profile = d.mt5_density_profile(os, backend="simulator")
        assert (profile["profile"], profile["memory_limit_gib"], profile["cpu_reservation"]) == ("simulator", 0.25, 0.05)
    # Terminal accounts keep the PRD's profiles.
    assert d.mt5_density_profile("linux", backend="mt5linux")["memory_limit_gib"] == 1.2
    assert d.mt5_density_profile("windows")["memory_limit_gib"] == 1.8


def test_the_demo_machine_carries_ten_simulator_accounts_beside_the_platform() -> None:
    # The 2-core, 24 GiB development machine with the whole platform on it (issue 13).
    terminal = d.mt5_density_cap(24, "linux", cpus=2, services=PLATFORM_SERVICES)
    simulator = d.mt5_density_cap(24, "linux", cpus=2, services=PLATFORM_SERVICES, backend="simulator")
    assert terminal["cap"] < 10 <= simulator["cap"]
    assert simulator["profile"] == "simulator"
    assert simulator["reason"] == (
        "memory-bound: (24 − 17.3125 − 2) GiB / 0.25 GiB = 18.7 → 18 (CPU would allow 20: (2 − 1) CPUs / 0.05 CPU = 20 → 20)"
    )


def test_the_simulator_profile_can_be_overridden_like_the_others() -> None:
    profile = d.mt5_density_profile("linux", {"simulator": {"memory_limit": "512M"}}, backend="simulator")
    assert (profile["memory_limit_gib"], profile["memory_reservation_gib"]) == (0.5, 0.125)
    # The simulator's override leaves the OS's profile alone.
    assert d.mt5_density_profile("linux", {"simulator": {"memory_limit": "512M"}})["memory_limit_gib"] == 1.2
