"""mt5farm_containers' pure parts without Docker: spec helpers, options, plan, runner, payloads, apply's order.

The Docker behaviour itself is proved against a real engine in test_mt5_containers_engine.py;
here each function is held to its contract, error branches included.
"""

from __future__ import annotations

import threading
import time

import pytest
from mt5farm_containers.arguments import option_error
from mt5farm_containers.engine import healthcheck_payload, port_bindings
from mt5farm_containers.plan import ACTIONS, Plan, batches, diff_of, make_plan, purge_targets, result_lists
from mt5farm_containers.reconcile import apply
from mt5farm_containers.runner import describe, run_all, summarize, unhealthy_message
from mt5farm_containers.spec import LABEL_HASH, SpecError, check_purge, container_name, hashed, normalize

IMAGE_ID = "sha256:" + "a" * 64


def raw(name: str = "mt5-1001", **overrides) -> dict:
    """A container as Ansible's argument validation hands it over (every field present)."""
    spec = {
        "name": name,
        "image": "sim:1",
        "env": {},
        "labels": {},
        "ports": [],
        "mounts": [],
        "memory": None,
        "memory_reservation": None,
        "nano_cpus": None,
        "healthcheck": None,
        "restart_policy": "unless-stopped",
        "network": None,
        "hostname": None,
        "user": None,
        "init": False,
        "stop_timeout": None,
        "cap_drop": [],
        "security_opt": [],
        "read_only": False,
        "tmpfs": {},
        "command": None,
        "pids_limit": None,
        "isolation": None,
    }
    spec.update(overrides)
    return spec


# -- spec ------------------------------------------------------------------------------


def test_the_hash_of_a_known_spec_is_pinned() -> None:
    """Any change to the canonical form or the payload would recreate every running container."""
    spec = normalize(
        {
            "name": "mt5-1001",
            "image": "sim:1",
            "env": {"A": "1", "N": 2},
            "labels": {"mt5farm.login": "1001"},
            "ports": [{"container_port": 8000, "host_port": 18001, "host_ip": "127.0.0.1", "protocol": "tcp"}],
            "mounts": [{"type": "volume", "source": "mt5-1001-data", "target": "/data", "read_only": False}],
            "memory": 1024,
            "restart_policy": "unless-stopped",
            "cap_drop": ["ALL"],
            "healthcheck": {"test": ["CMD", "true"], "interval": 10, "timeout": None, "retries": 3, "start_period": None},
        }
    )
    # Computed by library/mt5_containers.py before the split (commit 976d593).
    assert hashed(spec, IMAGE_ID)["_hash"] == "ee53cbfe157c8ec964448e7fcc7eef4de55762ebfaf8035284d54a22d199c075"


def test_hashed_adds_the_image_id_and_hash_and_leaves_its_input_alone() -> None:
    spec = normalize(raw())
    result = hashed(spec, IMAGE_ID)
    assert result["_image_id"] == IMAGE_ID and len(result["_hash"]) == 64
    assert "_hash" not in spec and "_image_id" not in spec


def test_normalize_makes_strings_and_sorts_what_has_no_order() -> None:
    spec = normalize(
        raw(
            env={"N": 1, "F": 1.5, "E": None},
            tmpfs={"/tmp": None, "/run": "size=1m"},
            cap_drop=["NET_RAW", "ALL"],
            security_opt=["z", "a"],
            command=[],
            mounts=[
                {"type": "volume", "source": "v", "target": "/z", "read_only": False},
                {"type": "bind", "source": "/b", "target": "/a", "read_only": True},
            ],
        )
    )
    assert spec["env"] == {"N": "1", "F": "1.5", "E": ""}
    assert spec["tmpfs"] == {"/tmp": "", "/run": "size=1m"}
    assert spec["cap_drop"] == ["ALL", "NET_RAW"] and spec["security_opt"] == ["a", "z"]
    assert spec["command"] is None
    assert [mount["target"] for mount in spec["mounts"]] == ["/a", "/z"]


def test_a_list_value_in_env_is_refused() -> None:
    with pytest.raises(SpecError, match=r"env\.X must be a string, got list"):
        normalize(raw(env={"X": [1]}))


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["/mt5-1001"], "mt5-1001"),
        (["/other/alias", "/mt5-1001"], "mt5-1001"),  # a link alias has two slashes
        (["/other/alias"], "other/alias"),
        ([], "abc123"),  # no name at all: the id
    ],
)
def test_container_name_is_the_own_name_of_a_listing(names: list[str], expected: str) -> None:
    assert container_name({"Id": "abc123", "Names": names}) == expected


def test_purging_a_mounted_volume_names_it_and_its_container() -> None:
    specs = [normalize(raw(mounts=[{"type": "volume", "source": "mt5-1001-data", "target": "/data", "read_only": False}]))]
    check_purge(specs, ["mt5-1002-data"])
    with pytest.raises(SpecError, match=r"mt5-1001-data \(mounted by mt5-1001\); remove or disable"):
        check_purge(specs, ["mt5-1002-data", "mt5-1001-data"])


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({}, None),
        ({"batch_size": 0}, "batch_size must be 1 or more, got 0"),
        ({"parallelism": -1}, "parallelism must be 1 or more, got -1"),
        ({"health_timeout": 0}, "health_timeout must be 1 or more, got 0"),
        ({"scope": ""}, "scope must not be empty"),
    ],
)
def test_option_errors(change: dict, message: str | None) -> None:
    params = {"batch_size": 1, "parallelism": 8, "health_timeout": 120, "scope": "mt5farm"} | change
    assert option_error(params) == message


# -- plan ------------------------------------------------------------------------------


def planned(name: str) -> dict:
    return hashed(normalize(raw(name)), IMAGE_ID)


def listed(spec: dict, state: str) -> dict:
    return {
        "Id": spec["name"] + "-id",
        "Names": ["/" + spec["name"]],
        "State": state,
        "ImageID": IMAGE_ID,
        "Labels": {LABEL_HASH: spec["_hash"]},
    }


def test_dead_is_recreated_paused_started_restarting_left_alone() -> None:
    dead, paused, restarting = planned("dead"), planned("paused"), planned("restarting")
    current = {"dead": listed(dead, "dead"), "paused": listed(paused, "paused"), "restarting": listed(restarting, "restarting")}
    plan = make_plan([dead, paused, restarting], current, [])
    assert plan.actions == {"dead": "recreated", "paused": "started", "restarting": "unchanged"}
    assert [spec["name"] for spec, _ in plan.recreate] == ["dead"] and plan.roll == []
    assert plan.changes is True
    assert make_plan([restarting], {"restarting": current["restarting"]}, []).changes is False


def test_image_updates_roll_in_name_order() -> None:
    specs = [planned(name) for name in ("c", "a", "b")]
    current = {spec["name"]: dict(listed(spec, "running"), ImageID="sha256:old", Labels={}) for spec in specs}
    assert [spec["name"] for spec, _ in make_plan(specs, current, []).roll] == ["a", "b", "c"]


def test_purge_targets_keep_the_scopes_volumes_once_and_warn_about_the_rest() -> None:
    purged, warnings = purge_targets(["v1", "other", "v1", "v2"], {"v1", "v2", "v3"}, "mt5farm")
    assert purged == ["v1", "v2"]
    assert warnings == ["purge_volumes: other is not a volume labelled mt5farm.scope=mt5farm (absent or not ours); left alone"]


def test_result_lists_has_a_sorted_list_per_action() -> None:
    lists = result_lists({"b": "created", "a": "created", "c": "removed"})
    assert list(lists) == list(ACTIONS)
    assert lists["created"] == ["a", "b"] and lists["removed"] == ["c"] and lists["unchanged"] == []


def test_diff_shows_the_listing_before_and_the_specs_after() -> None:
    spec = planned("mt5-1001")
    current = {"mt5-1001": {"Image": "sim:0", "ImageID": "sha256:old", "Labels": {LABEL_HASH: "old"}}, "gone": {"Labels": None}}
    assert diff_of([spec], current) == {
        "before": {
            "gone": {"config_hash": None, "image": None, "image_id": None},
            "mt5-1001": {"config_hash": "old", "image": "sim:0", "image_id": "sha256:old"},
        },
        "after": {"mt5-1001": {"config_hash": spec["_hash"], "image": "sim:1", "image_id": IMAGE_ID}},
    }


@pytest.mark.parametrize(("size", "expected"), [(1, [[1], [2], [3]]), (3, [[1, 2, 3]]), (5, [[1, 2, 3]])])
def test_batches_of_any_size(size: int, expected: list) -> None:
    assert batches([1, 2, 3], size) == expected
    assert batches([], size) == []


# -- runner ----------------------------------------------------------------------------


def test_run_all_runs_every_job_and_reports_failures_by_name() -> None:
    ran = []

    def ok(name: str) -> None:
        ran.append(name)

    def boom() -> None:
        raise RuntimeError("it  broke\n  badly")

    done, errors = run_all(4, [("b", lambda: ok("b")), ("x", boom), ("a", lambda: ok("a"))])
    assert done == ["a", "b"] and sorted(ran) == ["a", "b"]
    assert errors == {"x": "it broke badly"}
    assert run_all(4, []) == ([], {})


def test_run_all_runs_at_most_parallelism_jobs_at_once() -> None:
    lock, running, peak = threading.Lock(), [0], [0]

    def job() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    done, errors = run_all(2, [(f"c{i}", job) for i in range(6)])
    assert len(done) == 6 and errors == {}
    assert peak[0] == 2


class Explained(Exception):
    def __init__(self, explanation) -> None:
        super().__init__("the request body, never shown")
        self.explanation = explanation


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (Explained(b"bind source path does not exist:\n /x"), "bind source path does not exist: /x"),
        (Explained("conflict"), "conflict"),
        (ValueError(), "ValueError"),
        (ValueError("plain  message"), "plain message"),
    ],
)
def test_describe_prefers_dockers_explanation_in_one_line(error: Exception, text: str) -> None:
    assert describe(error) == text


def test_summarize_lists_everything_when_five_or_fewer() -> None:
    assert summarize({"b": "two", "a": "one"}) == "a: one; b: two"


def test_unhealthy_message_shows_state_exit_code_checks_and_counts_the_rest() -> None:
    unhealthy = {
        "c0": {"state": "exited", "health": None, "last_checks": [], "exit_code": 137},
        **{f"c{i}": {"state": "running", "health": "unhealthy", "last_checks": ["exit 1: no", "exit 1"]} for i in range(1, 7)},
    }
    text = unhealthy_message(unhealthy, 30)
    assert text.startswith("7 container(s) did not come healthy within 30 s: c0 (state exited, health none, exit code 137); ")
    assert "c1 (state running, health unhealthy): last checks: exit 1: no | exit 1" in text
    assert "c5" not in text and text.endswith("; and 2 more (see unhealthy)")


# -- API payloads ----------------------------------------------------------------------


def test_port_bindings_expose_a_port_once_and_bind_it_to_each_address() -> None:
    ports = [
        {"container_port": 8000, "host_port": 18001, "host_ip": "127.0.0.1", "protocol": "tcp"},
        {"container_port": 8000, "host_port": 18001, "host_ip": "10.0.0.5", "protocol": "tcp"},
        {"container_port": 53, "host_port": 1053, "host_ip": "127.0.0.1", "protocol": "udp"},
    ]
    exposed, bindings = port_bindings(ports)
    assert exposed == [(8000, "tcp"), (53, "udp")]
    assert bindings == {"8000/tcp": [("127.0.0.1", 18001), ("10.0.0.5", 18001)], "53/udp": [("127.0.0.1", 1053)]}
    assert port_bindings([]) == ([], {})


def test_healthcheck_times_become_nanoseconds_and_unset_fields_stay_out() -> None:
    check = {"test": ["CMD", "true"], "interval": 10, "timeout": None, "retries": 3, "start_period": 60}
    assert healthcheck_payload(check) == {"test": ["CMD", "true"], "interval": 10_000_000_000, "retries": 3, "start_period": 60_000_000_000}
    assert healthcheck_payload(None) is None


# -- apply's order, with a recording engine --------------------------------------------


class RecordingEngine:
    """A MOCK of engine.Engine: records the operations apply asks for; `broken` names fail, `sick` never come healthy."""

    def __init__(self, broken: tuple[str, ...] = (), sick: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, str]] = []
        self.broken, self.sick = broken, sick
        self.restored: set[str] = set()
        self._lock = threading.Lock()

    def _do(self, operation: str, name: str) -> None:
        with self._lock:
            self.calls.append((operation, name))
        if name in self.broken:
            raise RuntimeError(f"{operation} {name} failed")

    def remove(self, existing: dict) -> None:
        self._do("remove", container_name(existing))

    def remove_volume(self, name: str) -> None:
        self._do("remove_volume", name)

    def create_and_start(self, spec: dict, scope: str) -> None:
        self._do("create", spec["name"])

    def recreate(self, spec: dict, existing: dict, scope: str) -> None:
        self._do("recreate", spec["name"])

    def start(self, existing: dict) -> None:
        self._do("start", container_name(existing))

    def restart(self, spec: dict, existing: dict) -> None:
        self._do("restart", spec["name"])

    def update(self, spec: dict, existing: dict, scope: str) -> None:
        self._do("update", spec["name"])

    def commit(self, name: str) -> None:
        self._do("commit", name)

    def roll_back(self, name: str) -> None:
        self._do("roll_back", name)
        self.restored.add(name)

    def wait_healthy(self, scope: str, names: list[str], timeout: int) -> dict:
        self._do("wait", ",".join(names))
        # A name rolled back runs its old container again, which was healthy.
        sick = [name for name in names if name in self.sick and name not in self.restored]
        return {name: {"state": "running", "health": "unhealthy", "last_checks": ["exit 1"]} for name in sick}


PARAMS = {"parallelism": 4, "health_timeout": 5, "batch_size": 2, "wait_healthy": False, "wait_created": True}


def a_plan() -> Plan:
    """gone removed, new created, cfg recreated (config), r1..r4 rolled (image), same unchanged."""
    specs = {name: planned(name) for name in ("new", "cfg", "r1", "r2", "r3", "r4", "same")}
    entry = {"Id": "gone-id", "Names": ["/gone"], "State": "running"}
    plan = Plan(
        actions={"gone": "removed", "new": "created", "cfg": "recreated", "same": "unchanged"}
        | {f"r{i}": "recreated" for i in range(1, 5)},
        create=[specs["new"]],
        recreate=[(specs["cfg"], {})],
        roll=[(specs[f"r{i}"], {}) for i in range(1, 5)],
        remove=[entry],
    )
    return plan


def test_apply_removes_first_then_converges_then_rolls_batch_by_batch() -> None:
    engine = RecordingEngine()
    outcome = apply(engine, a_plan(), ["gone-data"], "s", PARAMS)
    assert outcome.failure is None and outcome.changed
    assert outcome.purged_volumes == ["gone-data"]
    assert outcome.actions == a_plan().actions
    operations = [operation for operation, _ in engine.calls]
    assert operations[:2] == ["remove", "remove_volume"]
    assert sorted(engine.calls[2:4]) == [("create", "new"), ("recreate", "cfg")]
    rolled = engine.calls[4:]
    # Each batch: update (the old container kept), wait for health, then drop the old ones.
    assert set(rolled[:2]) == {("update", "r1"), ("update", "r2")} and rolled[2] == ("wait", "r1,r2")
    assert set(rolled[3:5]) == {("commit", "r1"), ("commit", "r2")}
    assert set(rolled[5:7]) == {("update", "r3"), ("update", "r4")} and rolled[7] == ("wait", "r3,r4")
    assert set(rolled[8:]) == {("commit", "r3"), ("commit", "r4")}


def test_apply_rolls_nothing_after_a_failed_change() -> None:
    engine = RecordingEngine(broken=("cfg",))
    outcome = apply(engine, a_plan(), [], "s", PARAMS)
    assert outcome.failure == "mt5_containers could not apply every change: cfg: recreate cfg failed"
    assert outcome.extra == {"not_updated": ["r1", "r2", "r3", "r4"]}
    assert outcome.actions == {"gone": "removed", "new": "created", "same": "unchanged"}
    assert not [call for call in engine.calls if call[1].startswith("r")]


def test_apply_stops_at_the_batch_that_does_not_come_healthy() -> None:
    engine = RecordingEngine(sick=("r2",))
    outcome = apply(engine, a_plan(), [], "s", PARAMS)
    assert outcome.failure is not None
    assert outcome.failure.startswith("image update stopped at batch 1 (r1, r2): 1 container(s) did not come healthy within 5 s: r2 ")
    assert outcome.failure.endswith("; rolled back to the old image: r2; left on the old image: r3, r4")
    assert outcome.extra["not_updated"] == ["r3", "r4"] and list(outcome.extra["unhealthy"]) == ["r2"]
    assert outcome.extra["rolled_back"] == ["r2"] and outcome.changed
    # r1 came healthy and keeps the new image; r2's old container serves again, waited for.
    assert outcome.actions["r1"] == "recreated" and "r2" not in outcome.actions and "r3" not in outcome.actions
    assert ("commit", "r1") in engine.calls and ("commit", "r2") not in engine.calls
    assert engine.calls[-2:] == [("roll_back", "r2"), ("wait", "r2")]


def test_a_roll_back_that_does_not_come_healthy_again_says_so() -> None:
    engine = RecordingEngine(sick=("r1",))
    engine.roll_back = lambda name: engine._do("roll_back", name)  # type: ignore[method-assign]  # the old one is sick too
    outcome = apply(engine, a_plan(), [], "s", PARAMS)
    assert outcome.failure is not None and "rolled back to the old image: r1 (not healthy again within 5 s: r1)" in outcome.failure


def test_apply_waits_for_what_it_touched_when_asked() -> None:
    engine = RecordingEngine(sick=("new",))
    plan = a_plan()
    plan.roll = []
    outcome = apply(engine, plan, [], "s", dict(PARAMS, wait_healthy=True))
    assert engine.calls[-1] == ("wait", "cfg,new")
    assert outcome.failure is not None and outcome.failure.startswith("1 container(s) did not come healthy within 5 s: new ")
    assert list(outcome.extra) == ["unhealthy"]


def test_apply_leaves_the_created_ones_to_a_later_wait_when_asked() -> None:
    engine = RecordingEngine(sick=("new",))
    plan = a_plan()
    plan.roll = []
    outcome = apply(engine, plan, [], "s", dict(PARAMS, wait_healthy=True, wait_created=False))
    assert engine.calls[-1] == ("wait", "cfg"), "the config recreate is still waited for"
    assert outcome.failure is None and outcome.starting == ["new"]
