"""Outcomes of the docker_host role on a systemd test host with its own Docker engine.

Run by this scenario (Debian 13) and by the fleet scenario on its Debian 12 hosts
(molecule/fleet/molecule.yml, verifier.additional_files_or_dirs).
"""

import json

import pytest

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def docker_journal_on_failure(request, host):
    """Print the Docker daemon's journal when a test fails, to see why."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(host.run("journalctl -u docker --no-pager -n 80").stdout)


@pytest.fixture(scope="module")
def daemon_json(host):
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def test_docker_runs_under_systemd(host):
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


@pytest.fixture(scope="module")
def pid1_hard_nofile(host):
    limits = host.file("/proc/1/limits").content_string
    line = next(row for row in limits.splitlines() if row.startswith("Max open files"))
    return int(line.split()[4])


def test_daemon_json_is_tuned_for_many_containers(daemon_json, pid1_hard_nofile):
    assert daemon_json["live-restore"] is True
    # On for the test hosts (read-only /proc/sys/net); the role's default is off.
    assert daemon_json["userland-proxy"] is True
    assert daemon_json["log-driver"] == "json-file"
    assert daemon_json["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert daemon_json["default-address-pools"] == [{"base": "10.203.0.0/16", "size": 24}]
    # 65536, or less where dockerd's own hard limit (PID 1's under systemd) is lower.
    assert daemon_json["default-ulimits"]["nofile"]["Soft"] == min(65536, pid1_hard_nofile)
    assert daemon_json["exec-opts"] == ["native.cgroupdriver=systemd"]


def test_the_running_daemon_uses_that_config(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True
    assert info["CgroupDriver"] == "systemd"


def test_dockerd_gets_its_environment_from_a_drop_in(host):
    drop_in = host.file("/etc/systemd/system/docker.service.d/mt5farm.conf")
    assert 'Environment="DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1"' in drop_in.content_string
    assert "DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1" in host.check_output("systemctl show docker -p Environment")


def test_kernel_settings_are_persisted(host):
    conf = host.file("/etc/sysctl.d/60-mt5farm.conf")
    assert conf.exists
    assert "fs.inotify.max_user_instances=8192" in conf.content_string
    assert "vm.max_map_count=262144" in conf.content_string


@pytest.mark.parametrize(
    ("path", "group", "mode"),
    [
        ("/opt/mt5farm", "mt5farm", 0o750),
        ("/opt/mt5farm/images", "mt5farm", 0o750),
        ("/opt/mt5farm/build", "root", 0o700),
        ("/etc/mt5farm/secrets", "root", 0o700),
    ],
)
def test_farm_directories(host, path, group, mode):
    directory = host.file(path)
    assert directory.is_directory
    assert directory.user == "root"
    assert directory.group == group
    assert directory.mode == mode


def test_an_image_loads_and_runs_with_a_memory_limit(host, daemon_json):
    """Make a one-binary image, save and load it, run it limited to 128 MiB."""
    host.check_output(
        "rm -rf /tmp/probe && mkdir -p /tmp/probe/bin && cp /bin/busybox /tmp/probe/bin/ "
        "&& tar -C /tmp/probe -c . | docker import - mt5farm/probe:1"
    )
    host.check_output("docker save -o /tmp/probe.tar mt5farm/probe:1 && docker rmi mt5farm/probe:1")
    assert "mt5farm/probe:1" in host.check_output("docker load -i /tmp/probe.tar")
    limit, nofile = host.check_output(
        "docker run --rm --memory 128m mt5farm/probe:1 /bin/busybox sh -c "
        "'(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
        " && ulimit -n'"
    ).split()
    assert int(limit) == 128 * MiB
    assert int(nofile) == daemon_json["default-ulimits"]["nofile"]["Soft"]
