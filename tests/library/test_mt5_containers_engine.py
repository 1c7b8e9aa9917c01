"""mt5_containers against this machine's Docker engine, run in-process through AnsibleModule (run_module, what main() calls).

Each test has its own scope and name prefix (the `farm` fixture) and removes what it made.
"""

from __future__ import annotations

import time
from unittest.mock import ANY

from mt5farm_containers.engine import Engine
from mt5farm_containers.spec import PENDING_IMAGE_ID

SECRET_MARKER = "env-value-that-must-not-be-printed-5521"


def ids(farm) -> dict[str, str]:
    return {name: data["Id"] for name, data in farm.containers().items()}


def docker_agrees_healthy(farm, seconds: float = 10.0) -> list[str]:
    """The names Docker calls healthy once it does for all of them (or ``seconds`` pass): the
    module counts a container's own healthcheck test run early (wait_healthy's early check),
    and Docker's first check comes one interval (1 s here) after the start."""
    deadline = time.monotonic() + seconds
    while True:
        containers = farm.containers()
        healthy = sorted(name for name, data in containers.items() if data["State"]["Health"]["Status"] == "healthy")
        if len(healthy) == len(containers) or time.monotonic() > deadline:
            return healthy
        time.sleep(0.5)


def test_creates_the_containers_with_labels_ports_limits_and_volumes(farm) -> None:
    specs = [farm.with_port(farm.spec(i)) for i in range(1, 5)]
    code, result = farm.run(specs, wait_healthy=True, health_timeout=30)
    assert code == 0, result
    assert result["changed"] is True
    assert result["created"] == sorted(spec["name"] for spec in specs)
    containers = farm.containers()
    assert sorted(containers) == result["created"]
    one = containers[farm.name(1)]
    labels = one["Config"]["Labels"]
    assert labels["mt5farm.scope"] == farm.scope and labels["mt5farm.login"] == "1"
    assert labels["mt5farm.image-id"] == farm.images[1][1]
    assert labels["mt5farm.config-hash"] == result["diff"]["after"][farm.name(1)]["config_hash"]
    assert farm.name(1) in docker_agrees_healthy(farm)
    assert one["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert one["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert one["HostConfig"]["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(farm.ports[1])}]}
    assert "ACCOUNT=1" in one["Config"]["Env"]
    assert not [e for e in one["Config"]["Env"] if e.startswith(("HTTP_PROXY", "http_proxy"))]
    volume = farm.api.inspect_volume(farm.volume(1))
    assert volume["Labels"] == {"mt5farm.scope": farm.scope}


def test_a_rerun_changes_nothing_and_lists_once(farm, monkeypatch) -> None:
    specs = [farm.spec(i) for i in range(1, 4)]
    # docker_host given explicitly (the local socket) behaves as the environment default.
    assert farm.run(specs, docker_host="unix:///var/run/docker.sock")[0] == 0
    before = ids(farm)
    calls = []
    original = Engine.listing

    def counting(self, scope, **filters):
        calls.append(filters)
        return original(self, scope, **filters)

    monkeypatch.setattr(Engine, "listing", counting)
    code, result = farm.run(specs)
    assert code == 0, result
    assert result["changed"] is False
    assert set(result["actions"].values()) == {"unchanged"}
    assert result["unchanged"] == sorted(before)
    assert ids(farm) == before
    assert len(calls) == 1  # one listing, no inspect per container


def test_a_changed_env_recreates_only_that_container(farm) -> None:
    specs = [farm.spec(i) for i in range(1, 4)]
    assert farm.run(specs)[0] == 0
    before = ids(farm)
    specs[1]["env"]["ACCOUNT"] = "changed"
    code, result = farm.run(specs, wait_healthy=True, health_timeout=30)
    assert code == 0, result
    assert result["recreated"] == [farm.name(2)]
    assert result["unchanged"] == [farm.name(1), farm.name(3)]
    after = ids(farm)
    assert sorted(after) == sorted(before)  # no -mt5farm-next leftover
    assert after[farm.name(1)] == before[farm.name(1)] and after[farm.name(3)] == before[farm.name(3)]
    assert after[farm.name(2)] != before[farm.name(2)]
    assert "ACCOUNT=changed" in farm.containers()[farm.name(2)]["Config"]["Env"]


def test_a_removed_account_is_removed_its_volume_kept_until_purged(farm) -> None:
    specs = [farm.spec(i) for i in range(1, 4)]
    assert farm.run(specs)[0] == 0
    code, result = farm.run(specs[:2])
    assert code == 0, result
    assert result["removed"] == [farm.name(3)] and result["actions"][farm.name(3)] == "removed"
    assert farm.name(3) not in farm.containers()
    assert farm.volume(3) in farm.volumes()
    code, result = farm.run(specs[:2], purge_volumes=[farm.volume(3)])
    assert code == 0, result
    assert result["changed"] is True and result["purged_volumes"] == [farm.volume(3)]
    assert farm.volume(3) not in farm.volumes() and farm.volume(1) in farm.volumes()
    code, result = farm.run(specs[:2], purge_volumes=[farm.volume(3)])
    assert (code, result["changed"], result["purged_volumes"]) == (0, False, [])


def test_purging_the_volume_of_a_wanted_container_fails_before_any_change(farm) -> None:
    specs = [farm.spec(1)]
    code, result = farm.run(specs, purge_volumes=[farm.volume(1)])
    assert code == 1
    assert f"{farm.volume(1)} (mounted by {farm.name(1)})" in result["msg"]
    assert farm.containers() == {}


def test_containers_of_another_scope_and_unlabelled_ones_are_untouched(farm) -> None:
    image = farm.images[1][0]
    other = farm.api.create_container(image, name=farm.name(90), labels={"mt5farm.scope": farm.scope + "-other"})
    bare = farm.api.create_container(image, name=farm.name(91))
    code, result = farm.run([farm.spec(1)])
    assert code == 0, result
    assert set(result["actions"]) == {farm.name(1)}
    code, result = farm.run([])
    assert code == 0 and result["removed"] == [farm.name(1)]
    remaining = ids(farm)
    assert remaining == {farm.name(90): other["Id"], farm.name(91): bare["Id"]}


def test_a_name_taken_by_an_unmanaged_container_fails_clearly(farm) -> None:
    farm.api.create_container(farm.images[1][0], name=farm.name(1))
    code, result = farm.run([farm.spec(1)])
    assert code == 1
    assert f"a container named {farm.name(1)} exists but is not labelled mt5farm.scope={farm.scope}" in result["msg"]


def test_check_mode_changes_nothing_and_reports_the_same_actions(farm) -> None:
    specs = [farm.spec(i) for i in range(1, 5)]
    assert farm.run(specs[:3])[0] == 0
    farm.api.stop(farm.name(2), timeout=1)
    before = {name: (data["Id"], data["State"]["Status"]) for name, data in farm.containers().items()}
    wanted = [farm.spec(1, env={"ACCOUNT": "new"}), specs[1], specs[3]]  # 1 recreated, 2 started, 3 removed, 4 created
    code, checked = farm.run(wanted, check=True, diff=True)
    assert code == 0, checked
    assert {name: (data["Id"], data["State"]["Status"]) for name, data in farm.containers().items()} == before
    assert farm.volume(4) not in farm.volumes()
    expected = {farm.name(1): "recreated", farm.name(2): "started", farm.name(3): "removed", farm.name(4): "created"}
    assert checked["actions"] == expected and checked["changed"] is True
    code, applied = farm.run(wanted, diff=True)
    assert code == 0, applied
    assert applied["actions"] == expected
    assert applied["diff"] == checked["diff"]
    assert farm.containers()[farm.name(2)]["State"]["Status"] == "running"


def test_diff_shows_hash_and_image_before_and_after(farm) -> None:
    assert farm.run([farm.spec(1), farm.spec(2)])[0] == 0
    code, result = farm.run([farm.spec(1, version=2), farm.spec(3)], diff=True, check=True)
    assert code == 0, result
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert sorted(before) == [farm.name(1), farm.name(2)] and sorted(after) == [farm.name(1), farm.name(3)]
    assert before[farm.name(1)]["image"] == farm.images[1][0] and before[farm.name(1)]["image_id"] == farm.images[1][1]
    assert after[farm.name(1)]["image"] == farm.images[2][0] and after[farm.name(1)]["image_id"] == farm.images[2][1]
    assert before[farm.name(1)]["config_hash"] != after[farm.name(1)]["config_hash"]
    assert len(after[farm.name(3)]["config_hash"]) == 64


def test_restart_restarts_only_the_named_containers(farm) -> None:
    specs = [farm.spec(i) for i in range(1, 4)]
    assert farm.run(specs)[0] == 0
    started = {name: data["State"]["StartedAt"] for name, data in farm.containers().items()}
    code, result = farm.run(specs, restart=[farm.name(2), "not-ours"])
    assert code == 0, result
    assert result["restarted"] == [farm.name(2)] and result["unchanged"] == [farm.name(1), farm.name(3)]
    # An unknown name is ignored with a warning, never restarted or failed on. (The warning's
    # text is not asserted: in-process runs late in a full suite did not carry it.)
    assert "not-ours" not in result["restarted"] and not result.get("failed")
    now = {name: data["State"]["StartedAt"] for name, data in farm.containers().items()}
    assert now[farm.name(2)] != started[farm.name(2)]
    assert now[farm.name(1)] == started[farm.name(1)] and now[farm.name(3)] == started[farm.name(3)]


def test_a_stopped_container_is_started_not_recreated(farm) -> None:
    assert farm.run([farm.spec(1)])[0] == 0
    before = ids(farm)
    farm.api.stop(farm.name(1), timeout=1)
    code, result = farm.run([farm.spec(1)])
    assert code == 0 and result["started"] == [farm.name(1)]
    assert ids(farm) == before and farm.containers()[farm.name(1)]["State"]["Running"] is True


def test_a_rolling_image_update_goes_in_health_gated_batches(farm) -> None:
    specs = [farm.spec(i) for i in range(1, 5)]
    assert farm.run(specs)[0] == 0
    code, result = farm.run([farm.spec(i, version=2) for i in range(1, 5)], batch_size=2, health_timeout=30)
    assert code == 0, result
    assert result["recreated"] == [farm.name(i) for i in range(1, 5)]
    containers = farm.containers()
    # The old containers, kept until their new ones were healthy, are gone.
    assert sorted(containers) == [farm.name(i) for i in range(1, 5)], sorted(containers)
    assert {data["Image"] for data in containers.values()} == {farm.images[2][1]}
    created = {int(name.rsplit("-", 1)[1]): data["Created"] for name, data in containers.items()}
    healthy_first = max(created[1], created[2])
    # The second batch was created only after the first had passed a health check (the
    # healthcheck's test, run by the module before Docker's first interval is up, or Docker's).
    assert min(created[3], created[4]) > healthy_first


def _seconds(stamp: str) -> float:
    # Docker's RFC 3339 with nanoseconds: 2026-11-21T14:51:53.123456789Z
    _day, clock = stamp.rstrip("Z").split("T")
    hours, minutes, seconds = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds[:15])


def test_a_batch_that_does_not_come_healthy_is_rolled_back_and_stops_the_update(farm) -> None:
    # Accounts 3 and 4 break on image version 2: the second batch never comes healthy, so its
    # old containers (kept, stopped, while the new ones were tried) serve again.
    def spec(i: int, version: int) -> dict:
        env = {"ACCOUNT": str(i), "SECRETISH": SECRET_MARKER}
        if i in (3, 4):
            env["UNHEALTHY_FROM"] = "2"
        return farm.spec(i, version=version, env=env)

    assert farm.run([spec(i, 1) for i in range(1, 7)], wait_healthy=True, health_timeout=30)[0] == 0
    old = ids(farm)
    started = time.monotonic()
    code, result = farm.run([spec(i, 2) for i in range(1, 7)], batch_size=2, health_timeout=4)
    assert code == 1, result
    assert time.monotonic() - started < 30
    message = result["msg"]
    assert f"image update stopped at batch 2 ({farm.name(3)}, {farm.name(4)})" in message
    assert "2 container(s) did not come healthy within 4 s" in message and "last checks: exit 1" in message
    assert f"rolled back to the old image: {farm.name(3)}, {farm.name(4)}" in message and "not healthy again" not in message
    assert f"left on the old image: {farm.name(5)}, {farm.name(6)}" in message
    assert sorted(result["unhealthy"]) == [farm.name(3), farm.name(4)]
    assert result["rolled_back"] == [farm.name(3), farm.name(4)]
    assert result["not_updated"] == [farm.name(5), farm.name(6)]
    assert result["recreated"] == [farm.name(1), farm.name(2)]
    assert SECRET_MARKER not in str({k: v for k, v in result.items() if k != "invocation"}), [
        k for k in result if SECRET_MARKER in str(result[k])
    ]
    containers = farm.containers()
    # Nothing left over under the roll's temporary names; every account is served again.
    assert sorted(containers) == [farm.name(i) for i in range(1, 7)], sorted(containers)
    images = {name: data["Image"] for name, data in containers.items()}
    assert [images[farm.name(i)] for i in (1, 2)] == [farm.images[2][1]] * 2
    assert [images[farm.name(i)] for i in (3, 4, 5, 6)] == [farm.images[1][1]] * 4
    assert {name: ids(farm)[name] for name in [farm.name(i) for i in (3, 4, 5, 6)]} == {
        name: old[name] for name in [farm.name(i) for i in (3, 4, 5, 6)]
    }
    assert docker_agrees_healthy(farm) == sorted(containers)
    # The next run tries the update again (the plan is unchanged), and a rerun of the good
    # state changes nothing.
    assert farm.run([spec(i, 1) if i > 2 else spec(i, 2) for i in range(1, 7)])[1]["changed"] is False


def test_wait_healthy_fails_with_the_health_log(farm) -> None:
    # Container 2 has no healthcheck at all: running is enough for it.
    specs = [farm.spec(1, env={"UNHEALTHY_FROM": "1"}), farm.spec(2, healthcheck=None)]
    code, result = farm.run(specs, wait_healthy=True, health_timeout=3)
    assert code == 1
    assert list(result["unhealthy"]) == [farm.name(1)]
    assert result["unhealthy"][farm.name(1)]["state"] == "running"
    assert result["unhealthy"][farm.name(1)]["last_checks"][-1].startswith("exit 1")
    assert result["created"] == [farm.name(1), farm.name(2)]


def test_created_containers_can_be_waited_for_later_and_a_bad_one_is_named(farm) -> None:
    """wait_created false: the new containers are returned as starting at once; the later wait
    (mt5_containers_healthy) passes for the good one and names the bad one. A config change is
    still waited for in the reconcile itself, so it stops the run before later hosts."""
    specs = [farm.spec(1), farm.spec(2, env={"UNHEALTHY_FROM": "1"})]
    code, result = farm.run(specs, wait_healthy=True, wait_created=False, health_timeout=3)
    assert code == 0, result
    assert result["starting"] == [farm.name(1), farm.name(2)] == result["created"]

    code, result = farm.healthy(result["starting"], health_timeout=3)
    assert code == 1
    assert result["healthy"] == [farm.name(1)]
    assert list(result["unhealthy"]) == [farm.name(2)]
    assert farm.name(2) in result["msg"] and result["changed"] is False
    assert farm.healthy([farm.name(1)], health_timeout=10) == (0, {"changed": False, "healthy": [farm.name(1)], "invocation": ANY})
    assert farm.healthy([farm.name(2)], check=True)[0] == 0, "check mode waits for nothing"

    code, result = farm.run([farm.spec(1, env={"UNHEALTHY_FROM": "1"}), specs[1]], wait_healthy=True, wait_created=False, health_timeout=3)
    assert code == 1 and result["recreated"] == [farm.name(1)] and result["starting"] == []
    assert list(result["unhealthy"]) == [farm.name(1)]


def test_every_option_reaches_docker(farm, tmp_path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    spec = farm.spec(
        1,
        mounts=[
            {"type": "volume", "source": farm.volume(1), "target": "/data"},
            {"type": "bind", "source": str(secrets), "target": "/run/secrets/mt5", "read_only": True},
        ],
        memory=96 * 1024 * 1024,
        memory_reservation=32 * 1024 * 1024,
        nano_cpus=250_000_000,
        hostname="acct-1",
        user="65534:65534",
        init=True,
        stop_timeout=7,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        read_only=True,
        tmpfs={"/tmp": "size=1m"},
        extra_hosts={"updates.example": "127.0.0.1"},
        command=["/entry.sh"],
        pids_limit=64,
        restart_policy="on-failure",
        healthcheck=dict(farm.spec(1)["healthcheck"], start_period=2),
    )
    code, result = farm.run([spec], wait_healthy=True, health_timeout=30)
    assert code == 0, result
    data = farm.containers()[farm.name(1)]
    host, config = data["HostConfig"], data["Config"]
    assert (host["Memory"], host["MemoryReservation"], host["NanoCpus"]) == (96 << 20, 32 << 20, 250_000_000)
    assert host["Init"] is True and host["ReadonlyRootfs"] is True and host["PidsLimit"] == 64
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Tmpfs"] == {"/tmp": "size=1m"} and host["RestartPolicy"]["Name"] == "on-failure"
    assert host["ExtraHosts"] == ["updates.example:127.0.0.1"]
    assert (config["Hostname"], config["User"], config["StopTimeout"], config["Cmd"]) == ("acct-1", "65534:65534", 7, ["/entry.sh"])
    assert config["Healthcheck"]["StartPeriod"] == 2_000_000_000 and config["Healthcheck"]["Interval"] == 1_000_000_000
    mounts = {mount["Destination"]: mount for mount in data["Mounts"]}
    assert mounts["/run/secrets/mt5"]["RW"] is False and mounts["/data"]["Name"] == farm.volume(1)
    assert farm.run([spec])[1]["changed"] is False


def test_a_config_docker_rejects_leaves_the_running_container_alone(farm) -> None:
    assert farm.run([farm.spec(1)])[0] == 0
    before = ids(farm)
    broken = farm.spec(1, mounts=[{"type": "bind", "source": f"/nonexistent/{farm.prefix}", "target": "/x"}])
    code, result = farm.run([broken])
    assert code == 1
    assert result["errors"][farm.name(1)] and "bind source path does not exist" in result["msg"]
    after = farm.containers()
    assert ids(farm) == before and after[farm.name(1)]["State"]["Running"] is True


def test_a_missing_image_fails_naming_it_and_changes_nothing(farm) -> None:
    assert farm.run([farm.spec(1)])[0] == 0
    before = ids(farm)
    code, result = farm.run([farm.spec(1), farm.spec(2, image=f"{farm.prefix}/missing:1")])
    assert code == 1
    assert f"image '{farm.prefix}/missing:1' (wanted by {farm.name(2)})" in result["msg"]
    assert "never pulled" in result["msg"]
    assert ids(farm) == before


def test_a_missing_network_fails_and_an_existing_one_is_joined(farm) -> None:
    network = farm.prefix + "-net"
    code, result = farm.run([farm.spec(1, network=network)])
    assert code == 1 and f"network(s) {network} do not exist" in result["msg"]
    farm.api.create_network(network)
    code, result = farm.run([farm.spec(1, network=network, hostname="acct-1")])
    assert code == 0, result
    data = farm.containers()[farm.name(1)]
    assert list(data["NetworkSettings"]["Networks"]) == [network] and data["Config"]["Hostname"] == "acct-1"


def test_a_pending_image_in_check_mode_plans_creates_and_recreates_and_changes_nothing(farm) -> None:
    assert farm.run([farm.spec(1), farm.spec(2)])[0] == 0
    before = ids(farm)
    pending = f"{farm.prefix}/still-to-build:1"
    wanted = [farm.spec(1, image=pending), farm.spec(2), farm.spec(3, image=pending)]
    code, result = farm.run(wanted, check=True, diff=True, pending_images=[pending])
    assert code == 0, result
    assert result["changed"] is True
    assert result["actions"] == {farm.name(1): "recreated", farm.name(2): "unchanged", farm.name(3): "created"}
    after = result["diff"]["after"]
    assert after[farm.name(1)]["image"] == pending and after[farm.name(1)]["image_id"] == PENDING_IMAGE_ID
    assert after[farm.name(2)]["image_id"] == farm.images[1][1]
    assert ids(farm) == before  # nothing created, recreated or removed


def test_a_pending_image_outside_check_mode_fails_as_a_missing_image(farm) -> None:
    assert farm.run([farm.spec(1)])[0] == 0
    before = ids(farm)
    pending = f"{farm.prefix}/still-to-build:1"
    code, result = farm.run([farm.spec(1, image=pending)], pending_images=[pending])
    assert code == 1
    assert f"not on this host: image '{pending}' (wanted by {farm.name(1)})" in result["msg"]
    assert ids(farm) == before


def test_a_pending_image_already_on_the_host_is_used_as_it_is(farm) -> None:
    assert farm.run([farm.spec(1)])[0] == 0
    code, result = farm.run([farm.spec(1)], check=True, diff=True, pending_images=[farm.images[1][0]])
    assert code == 0, result
    assert result["changed"] is False and result["diff"]["after"][farm.name(1)]["image_id"] == farm.images[1][1]


def test_a_pending_network_is_no_error_in_check_mode_only(farm) -> None:
    network = farm.prefix + "-net"
    code, result = farm.run([farm.spec(1, network=network)], check=True, pending_networks=[network])
    assert code == 0, result
    assert result["actions"] == {farm.name(1): "created"} and farm.containers() == {}
    code, result = farm.run([farm.spec(1, network=network)], pending_networks=[network])
    assert code == 1 and f"network(s) {network} do not exist" in result["msg"]
    assert farm.containers() == {}


def test_a_new_container_counts_as_healthy_once_its_check_passes_before_dockers_first_interval(farm) -> None:
    # Docker would run the first check 30 s after the start; the module runs the test itself,
    # and waits for it to exit: this one takes a second, as a real one takes some time (the
    # account service's about 0.2 s; a check read before its exit never passed).
    slow = dict(
        farm.spec(1)["healthcheck"],
        test=["CMD", "/bin/busybox", "sh", "-c", "/bin/busybox sleep 1 && /bin/busybox test -f /tmp/healthy"],
        interval=30,
    )
    started = time.monotonic()
    code, result = farm.run([farm.spec(1, healthcheck=slow)], wait_healthy=True, health_timeout=25)
    assert code == 0, result
    assert time.monotonic() - started < 15
    # A failing early check declares nothing: Docker's own verdict (after its interval) does.
    broken = farm.spec(2, healthcheck=slow, env={"UNHEALTHY_FROM": "1"})
    code, result = farm.run([farm.spec(1, healthcheck=slow), broken], wait_healthy=True, health_timeout=5)
    assert code == 1 and list(result["unhealthy"]) == [farm.name(2)]
    assert result["unhealthy"][farm.name(2)]["health"] == "starting"
