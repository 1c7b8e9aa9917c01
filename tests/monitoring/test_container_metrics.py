"""mt5farm.container_metrics: the textfile node exporter publishes, from containers' inspect data and cgroups."""

from __future__ import annotations

import signal
import stat
import sys
import types
from pathlib import Path

import pytest

from mt5farm import container_metrics as cm
from mt5farm import guard

ACCOUNT = ("mt5-5001", {"mt5farm.scope": "accounts", "mt5farm.login": "5001"})
ACCOUNT_ATTRS = {
    "State": {"Running": True, "Pid": 42, "Health": {"Status": "healthy"}, "StartedAt": "2026-12-02T10:48:07.123456789Z"},
    "Config": {"Image": "mt5farm/account:simulator-5e0890344c7cfe63"},
    "RestartCount": 2,
    "HostConfig": {"Memory": 1288490188},
}
REDIS = ("mt5-redis", {"mt5farm.scope": "platform", "mt5farm.service": "redis"})
REDIS_ATTRS = {
    "State": {"Running": True, "Pid": 43, "StartedAt": "2026-12-02T11:48:07+01:00"},
    "RestartCount": 0,
    "HostConfig": {"Memory": 0},
    "Config": {"Image": "mt5farm/redis:debian13-fa7eb62f3a34"},
}
ODD = ('odd"name\\x', {"mt5farm.scope": "accounts", "mt5farm.login": "7\n"})
ODD_ATTRS = {
    "State": {"Running": False, "Pid": 0, "Health": {"Status": "unhealthy"}, "StartedAt": "0001-01-01T00:00:00Z"},
    "RestartCount": 5,
    "HostConfig": {},
}
BARE = ("bare", {"mt5farm.scope": "x"})

# The file the collector wrote before it was a package module (the same data through the
# template's program gave these lines; the working sets are those of the stub below).
EXPECTED = """\
# HELP mt5_container_memory_working_set_bytes Memory in use (usage minus inactive file cache).
# TYPE mt5_container_memory_working_set_bytes gauge
mt5_container_memory_working_set_bytes{container="mt5-5001",scope="accounts",service="account",login="5001"} 398327808
mt5_container_memory_working_set_bytes{container="mt5-redis",scope="platform",service="redis",login=""} 2852311040
# HELP mt5_container_memory_limit_bytes Memory limit of the container (absent without one).
# TYPE mt5_container_memory_limit_bytes gauge
mt5_container_memory_limit_bytes{container="mt5-5001",scope="accounts",service="account",login="5001"} 1288490188
# HELP mt5_container_restart_count Restarts of the container by Docker since it was created.
# TYPE mt5_container_restart_count counter
mt5_container_restart_count{container="mt5-5001",scope="accounts",service="account",login="5001"} 2
mt5_container_restart_count{container="mt5-redis",scope="platform",service="redis",login=""} 0
mt5_container_restart_count{container="odd\\"name\\\\x",scope="accounts",service="account",login="7\\n"} 5
mt5_container_restart_count{container="bare",scope="x",service="",login=""} 0
# HELP mt5_container_running 1 when the container runs.
# TYPE mt5_container_running gauge
mt5_container_running{container="mt5-5001",scope="accounts",service="account",login="5001"} 1
mt5_container_running{container="mt5-redis",scope="platform",service="redis",login=""} 1
mt5_container_running{container="odd\\"name\\\\x",scope="accounts",service="account",login="7\\n"} 0
mt5_container_running{container="bare",scope="x",service="",login=""} 0
# HELP mt5_container_healthy 1 when its healthcheck passes, 0 when not (absent without one).
# TYPE mt5_container_healthy gauge
mt5_container_healthy{container="mt5-5001",scope="accounts",service="account",login="5001"} 1
mt5_container_healthy{container="odd\\"name\\\\x",scope="accounts",service="account",login="7\\n"} 0
# HELP mt5_container_held 1 when an operator stopped the account with mt5farm-account stop and the hold is current (accounts only).
# TYPE mt5_container_held gauge
mt5_container_held{container="mt5-5001",scope="accounts",service="account",login="5001"} 0
mt5_container_held{container="odd\\"name\\\\x",scope="accounts",service="account",login="7\\n"} 1
# HELP mt5_container_started_timestamp_seconds When the container last started (State.StartedAt), Unix seconds (absent if never).
# TYPE mt5_container_started_timestamp_seconds gauge
mt5_container_started_timestamp_seconds{container="mt5-5001",scope="accounts",service="account",login="5001"} 1796208487
mt5_container_started_timestamp_seconds{container="mt5-redis",scope="platform",service="redis",login=""} 1796208487
# HELP mt5_container_info Always 1; the image label is the image reference the container was created from.
# TYPE mt5_container_info gauge
mt5_container_info{container="mt5-5001",scope="accounts",service="account",login="5001",image="mt5farm/account:simulator-5e0890344c7cfe63"} 1
mt5_container_info{container="mt5-redis",scope="platform",service="redis",login="",image="mt5farm/redis:debian13-fa7eb62f3a34"} 1
mt5_container_info{container="odd\\"name\\\\x",scope="accounts",service="account",login="7\\n",image=""} 1
mt5_container_info{container="bare",scope="x",service="",login="",image=""} 1
"""

WORKING_SETS = {42: 398327808.0, 43: 2852311040.0}


def _samples() -> list[cm.Sample]:
    out: list[cm.Sample] = []
    for (name, labels), attrs, held in (
        (ACCOUNT, ACCOUNT_ATTRS, False),
        (REDIS, REDIS_ATTRS, None),
        (ODD, ODD_ATTRS, True),
        (BARE, {}, None),
    ):
        out += cm.container_samples(name, labels, attrs, WORKING_SETS.get, held)
    return out


def test_the_textfile_has_every_metric_with_help_and_type_and_the_containers_in_order():
    assert cm.render(_samples()) == EXPECTED


def test_a_metric_without_samples_still_has_its_help_and_type():
    assert cm.render([]) == "".join(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n" for name, (kind, help_text) in cm.METRICS.items())


def test_a_sample_of_an_unknown_metric_is_an_error():
    with pytest.raises(KeyError):
        cm.render([("mt5_container_unknown", 'container="x"', 1)])


def test_values_are_written_as_whole_numbers():
    assert cm.render([("mt5_container_memory_working_set_bytes", 'container="x"', 1234.6)]).splitlines()[2].endswith("} 1235")


@pytest.mark.parametrize(
    "labels, service",
    [
        ({"mt5farm.scope": "accounts", "mt5farm.login": "1"}, "account"),
        ({"mt5farm.scope": "platform", "mt5farm.service": "nginx"}, "nginx"),
        ({"mt5farm.scope": "accounts", "mt5farm.login": "1", "mt5farm.service": "special"}, "special"),
        ({"mt5farm.scope": "platform"}, ""),
    ],
)
def test_the_service_label_is_the_service_or_account_for_an_account_container(labels, service):
    assert f'service="{service}"' in cm.label_text("c", labels)


def test_label_values_are_escaped():
    assert cm.escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_a_stopped_container_has_no_working_set_and_the_memory_reader_is_not_asked():
    asked: list[int] = []
    samples = cm.container_samples("c", {}, {"State": {"Running": False, "Pid": 0}}, lambda pid: asked.append(pid))
    assert asked == [] and all(name != "mt5_container_memory_working_set_bytes" for name, _, _ in samples)


def test_an_unreadable_working_set_gives_no_sample():
    samples = cm.container_samples("c", {}, {"State": {"Running": True, "Pid": 9}}, lambda pid: None)
    assert [name for name, _, _ in samples] == ["mt5_container_running", "mt5_container_restart_count", "mt5_container_info"]


def test_the_working_set_is_usage_minus_inactive_file_cache_never_negative():
    assert cm.working_set(1000, "active_file 5\ninactive_file 300\n", "inactive_file") == 700.0
    assert cm.working_set(1000, "inactive_file 3000\n", "inactive_file") == 0.0
    assert cm.working_set(1000, "rss 5\n", "inactive_file") == 1000.0
    with pytest.raises(ValueError):
        cm.working_set(1000, "inactive_file lots\n", "inactive_file")


def _proc(tmp_path: Path, pid: int, cgroup: str) -> Path:
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(cgroup)
    return proc


def test_cgroup_v2_memory_current_minus_inactive_file(tmp_path):
    proc = _proc(tmp_path, 7, "0::/system.slice/docker-abc.scope\n")
    group = tmp_path / "cgroup" / "system.slice" / "docker-abc.scope"
    group.mkdir(parents=True)
    (group / "memory.current").write_text("5000\n")
    (group / "memory.stat").write_text("anon 100\ninactive_file 1200\n")
    assert cm.cgroup_memory(7, proc, tmp_path / "cgroup") == 3800.0


def test_cgroup_v1_memory_controller_usage_minus_total_inactive_file(tmp_path):
    proc = _proc(tmp_path, 7, "12:pids:/docker/abc\n9:memory:/docker/abc\n1:name=systemd:/docker/abc\n")
    group = tmp_path / "cgroup" / "memory" / "docker" / "abc"
    group.mkdir(parents=True)
    (group / "memory.usage_in_bytes").write_text("9000\n")
    (group / "memory.stat").write_text("inactive_file 1\ntotal_inactive_file 4000\n")
    assert cm.cgroup_memory(7, proc, tmp_path / "cgroup") == 5000.0


def test_cgroup_memory_is_none_for_a_gone_process_or_unreadable_files(tmp_path):
    assert cm.cgroup_memory(7, tmp_path / "proc", tmp_path / "cgroup") is None
    proc = _proc(tmp_path, 8, "0::/gone.scope\n")
    assert cm.cgroup_memory(8, proc, tmp_path / "cgroup") is None


def test_the_textfile_is_replaced_whole_and_readable_by_node_exporter(tmp_path):
    out = tmp_path / "textfile" / cm.OUT_NAME
    cm.write_textfile(out, "first\n")
    cm.write_textfile(out, "second\n")
    assert out.read_text() == "second\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in out.parent.iterdir()) == [cm.OUT_NAME], "no temporary file is left"


def test_main_lists_the_labelled_containers_and_writes_the_textfile(tmp_path, monkeypatch):
    # A stub of the Docker SDK (the host's python3-docker): the one call main makes.
    calls = []

    class Container:
        def __init__(self, name, labels, attrs):
            self.name, self.labels, self.attrs = name, labels, attrs

    class Containers:
        def list(self, **kwargs):
            calls.append(kwargs)
            return [Container(*BARE, {}), Container(*ODD, ODD_ATTRS)]

    fake = types.ModuleType("docker")
    fake.from_env = lambda timeout: types.SimpleNamespace(containers=Containers(), close=lambda: calls.append("close"))  # type: ignore[attr-defined]  # a stub module's attribute
    monkeypatch.setitem(sys.modules, "docker", fake)
    assert cm.main(["--textfile-dir", str(tmp_path), "--guard", str(tmp_path / "no-guard")]) == 0
    assert calls == [{"all": True, "filters": {"label": "mt5farm.scope"}}, "close"], "one listing, then the client is closed"
    text = (tmp_path / cm.OUT_NAME).read_text()
    assert 'mt5_container_running{container="bare",scope="x",service="",login=""} 0' in text
    assert 'mt5_container_healthy{container="odd\\"name\\\\x",scope="accounts",service="account",login="7\\n"} 0' in text


def test_main_needs_the_textfile_directory():
    with pytest.raises(SystemExit):
        cm.main([])


# --- holds, start times, images ----------------------------------------------------------

STOPPED = {
    "Id": "c0ffee" * 10 + "abcd",
    "Name": "/mt5-5001",
    "Config": {"Labels": {"mt5farm.scope": "accounts", "mt5farm.login": "5001"}, "Image": "mt5farm/account:x"},
    "State": {"Status": "exited", "Running": False, "StartedAt": "2026-12-02T10:48:07.123456789Z", "FinishedAt": "2026-12-02T11:00:00Z"},
}


def test_a_hold_counts_exactly_when_the_guard_honours_it(tmp_path):
    held_dir = tmp_path / "held"
    assert cm.is_held(STOPPED, guard, held_dir) is False, "no marker"
    guard.write_marker(guard.Container.from_inspect(STOPPED), held_dir, by="test")
    assert cm.is_held(STOPPED, guard, held_dir) is True
    started_again = {**STOPPED, "State": {**STOPPED["State"], "StartedAt": "2026-12-02T11:05:00Z"}}
    assert cm.is_held(started_again, guard, held_dir) is False, "the container ran again since: a stale marker"
    assert cm.is_held({**STOPPED, "Id": "other"}, guard, held_dir) is False, "a recreated container: stale"
    assert cm.is_held(STOPPED, None, held_dir) is False, "no guard program: no hold is honoured"


def test_the_guard_program_is_loaded_from_its_installed_file_without_a_py_suffix(tmp_path):
    installed = tmp_path / "mt5farm-guard"
    installed.write_bytes(Path(guard.__file__).read_bytes())
    loaded = cm.load_guard(installed)
    assert loaded is not None and loaded.holds is not guard.holds and loaded.NEXT_SUFFIX == guard.NEXT_SUFFIX
    assert not list(tmp_path.glob("**/__pycache__")), "no bytecode written next to the program"
    assert cm.load_guard(tmp_path / "absent") is None


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("2026-12-02T10:48:07Z", 1796208487.0),
        ("2026-12-02T10:48:07.5Z", 1796208487.5),
        ("2026-12-02T12:48:07.250000000+02:00", 1796208487.25),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_docker_start_times_become_unix_seconds(text, seconds):
    assert cm.unix_seconds(text) == seconds


def test_account_containers_are_the_accounts_scope_with_a_login():
    assert cm.is_account({"mt5farm.scope": "accounts", "mt5farm.login": "1"})
    assert not cm.is_account({"mt5farm.scope": "platform", "mt5farm.service": "redis"})
    assert not cm.is_account({"mt5farm.scope": "accounts"})


def test_main_reports_the_guards_holds_for_accounts_only(tmp_path, monkeypatch):
    class Container:
        def __init__(self, attrs):
            self.attrs, self.name, self.labels = attrs, attrs["Name"].lstrip("/"), attrs["Config"]["Labels"]

    redis = {"Id": "r", "Name": "/mt5-redis", "Config": {"Labels": {"mt5farm.scope": "platform", "mt5farm.service": "redis"}}, "State": {}}
    fake = types.ModuleType("docker")
    fake.from_env = lambda timeout: types.SimpleNamespace(  # type: ignore[attr-defined]  # a stub module's attribute
        containers=types.SimpleNamespace(list=lambda **kwargs: [Container(STOPPED), Container(redis)]), close=lambda: None
    )
    monkeypatch.setitem(sys.modules, "docker", fake)
    installed = tmp_path / "mt5farm-guard"
    installed.write_bytes(Path(guard.__file__).read_bytes())
    guard.write_marker(guard.Container.from_inspect(STOPPED), tmp_path / "held", by="test")
    args = ["--textfile-dir", str(tmp_path / "out"), "--guard", str(installed), "--held-dir", str(tmp_path / "held")]
    assert cm.main(args) == 0
    text = (tmp_path / "out" / cm.OUT_NAME).read_text()
    assert 'mt5_container_held{container="mt5-5001",scope="accounts",service="account",login="5001"} 1' in text
    assert 'mt5_container_held{container="mt5-redis"' not in text
    assert (
        'mt5_container_started_timestamp_seconds{container="mt5-5001",scope="accounts",service="account",login="5001"} 1796208487' in text
    )
    assert 'mt5_container_info{container="mt5-5001",scope="accounts",service="account",login="5001",image="mt5farm/account:x"} 1' in text
    assert cm.main([*args[:2], "--guard", str(tmp_path / "absent"), *args[4:]]) == 0
    assert (
        'mt5_container_held{container="mt5-5001",scope="accounts",service="account",login="5001"} 0'
        in (tmp_path / "out" / cm.OUT_NAME).read_text()
    )


# --- loop mode (--every: the background collector where neither systemd nor cron runs) -----


class FakeTime:
    """A clock and a sleep that advances it (a stub of time.monotonic and time.sleep); the
    sleep ends the loop with SystemExit once ``passes`` passes have run, as SIGTERM does."""

    def __init__(self, passes: int) -> None:
        self.now, self.passes, self.sleeps = 100.0, passes, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if len(self.sleeps) >= self.passes:
            raise SystemExit(0)


def test_the_loop_starts_a_pass_every_interval_start_to_start():
    fake, starts = FakeTime(passes=3), []

    def one_pass():
        starts.append(fake.now)
        fake.now += 4  # a pass that takes 4 s

    with pytest.raises(SystemExit):
        cm.run_every(30, one_pass, clock=fake.clock, sleep=fake.sleep, say=pytest.fail)
    assert starts == [100, 130, 160]
    assert fake.sleeps == [26, 26, 26]


def test_a_pass_longer_than_the_interval_is_followed_by_the_next_at_once():
    fake, starts = FakeTime(passes=1), []

    def one_pass():
        starts.append(fake.now)
        fake.now += 45 if len(starts) == 1 else 1

    with pytest.raises(SystemExit):
        cm.run_every(30, one_pass, clock=fake.clock, sleep=fake.sleep, say=pytest.fail)
    assert starts == [100, 145] and fake.sleeps == [29]


def test_a_failing_pass_is_logged_once_per_error_and_the_loop_goes_on():
    fake, said, outcomes = FakeTime(passes=6), [], iter(["docker down", "docker down", "disk full", None, "docker down", None])

    def one_pass():
        error = next(outcomes)
        if error:
            raise OSError(error)

    with pytest.raises(SystemExit):
        cm.run_every(30, one_pass, clock=fake.clock, sleep=fake.sleep, say=said.append)
    assert said == [
        "a pass failed, trying again every 30 s: OSError: docker down",
        "a pass failed, trying again every 30 s: OSError: disk full",
        "a pass succeeded again",
        "a pass failed, trying again every 30 s: OSError: docker down",
        "a pass succeeded again",
    ]
    assert len(fake.sleeps) == 6, "every pass, failed or not, is followed by the next"


def test_sigterm_during_a_pass_ends_the_loop_with_status_0_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    # The stub Docker SDK: the second pass's listing gets SIGTERM (start-stop-daemon --stop),
    # through the handler main installs; the first pass's file stays as it was written.
    listings = []

    def listing(**kwargs):
        listings.append(kwargs)
        if len(listings) == 2:
            signal.raise_signal(signal.SIGTERM)
        return []

    fake = types.ModuleType("docker")
    fake.from_env = lambda timeout: types.SimpleNamespace(  # type: ignore[attr-defined]  # a stub module's attribute
        containers=types.SimpleNamespace(list=listing), close=lambda: None
    )
    monkeypatch.setitem(sys.modules, "docker", fake)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as ended:
            cm.main(["--textfile-dir", str(tmp_path), "--guard", str(tmp_path / "no-guard"), "--every", "0.01"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert ended.value.code == 0
    assert len(listings) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [cm.OUT_NAME]
    assert "# TYPE mt5_container_running gauge" in (tmp_path / cm.OUT_NAME).read_text()


def test_a_textfile_write_interrupted_leaves_no_temporary_file(tmp_path, monkeypatch):
    def interrupted(*_):
        raise SystemExit(0)

    monkeypatch.setattr(cm.os, "replace", interrupted)
    with pytest.raises(SystemExit):
        cm.write_textfile(tmp_path / cm.OUT_NAME, "text\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("every", ["0", "-5", "soon", "nan"])
def test_every_needs_a_positive_number_of_seconds(every, tmp_path):
    with pytest.raises(SystemExit) as ended:
        cm.main(["--textfile-dir", str(tmp_path), "--every", every])
    assert ended.value.code == 2
