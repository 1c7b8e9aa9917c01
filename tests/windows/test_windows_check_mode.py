"""The Windows plays in check mode against a Windows inventory whose WinRM is a MOCK.

tests/windows/connection_plugins/mock_winrm.py stands in for WinRM (no Windows host exists
here): it records every module call the role makes and answers with canned results. The
Docker API side is real: the host's engine is dockerd --tlsverify on 127.0.0.1 with the
role's own certificates, so the image and account stages talk to an engine for real (in
check mode they look, plan and report; nothing is built or created).
"""

from __future__ import annotations

import hashlib
import json

import pytest
from mt5_windows_testlib import SECRETS

PROBES = {"win_powershell", "win_find"}  # read-only probes: check_mode false on purpose


def assert_clean(run) -> None:
    assert run.done.returncode == 0, run.text[-6000:]
    stats = run.recap()["win-mock-01"]
    assert stats["failures"] == 0 and stats["unreachable"] == 0
    recorded = json.dumps(run.calls)
    for secret in SECRETS:
        assert secret not in recorded, "a secret reached a recorded WinRM call"
        assert secret not in run.text, "a secret was printed"
    for call in run.calls:
        if call.get("kind") == "module" and not call["check_mode"]:
            assert call["module"].rsplit(".", 1)[-1] in PROBES, call["module"]


def args_of(run, short: str) -> list[dict]:
    return [{k: v for k, v in c["args"].items() if not k.startswith("_ansible")} for c in run.modules(short)]


def test_hosts_play_checks_features_engine_tls_firewall_and_defender(play, engine) -> None:
    run = play("playbooks/windows_hosts.yml")
    assert_clean(run)

    assert args_of(run, "win_feature") == [{"name": ["Containers", "Hyper-V", "Hyper-V-PowerShell"], "state": "present"}]
    services = args_of(run, "win_service")
    assert {"name": "docker", "start_mode": "auto", "state": "started"} in services

    copies = {c["files"][0]["dest"]: c["dest"] for c in args_of(run, "win_copy") if c.get("_copy_mode") == "query"}
    assert copies == {
        "ca.pem": "C:/ProgramData/docker/certs.d",
        "server-cert.pem": "C:/ProgramData/docker/certs.d",
        "server-key.pem": "C:/ProgramData/docker/certs.d",
        "daemon.json": "C:/ProgramData/docker/config",
    }
    assert not any("ca-key" in json.dumps(c) or "client-key" in json.dumps(c) for c in run.calls), "a controller key left the controller"

    present = {r["name"]: r for r in args_of(run, "win_firewall_rule") if r.get("state") != "absent"}
    assert {name: (r["localport"], r["remoteip"]) for name, r in present.items()} == {
        f"MT5 Farm Docker API {engine.port}": (str(engine.port), "10.20.0.5"),
        "MT5 Farm account 32345678": ("25678", "10.20.0.11,10.20.0.12"),
        "MT5 Farm account 32345679": ("25679", "10.20.0.11,10.20.0.12"),
        "MT5 Farm account 5002001": ("22001", "10.20.0.11,10.20.0.12"),
    }  # the disabled account 32345680 publishes nothing
    assert all(r["direction"] == "in" and r["action"] == "allow" and r["protocol"] == "tcp" for r in present.values())
    assert [r["name"] for r in args_of(run, "win_firewall_rule") if r.get("state") == "absent"] == ["MT5 Farm account 99999999"]

    acl = {(a["path"], a["user"], a["rights"]) for a in args_of(run, "win_acl")}
    assert acl == {
        (p, u, "FullControl") for p in ("C:\\mt5farm\\secrets", "C:\\ProgramData\\docker\\certs.d") for u in ("S-1-5-18", "S-1-5-32-544")
    }
    assert {(a["path"], a["state"], a["reorganize"]) for a in args_of(run, "win_acl_inheritance")} == {
        ("C:\\mt5farm\\secrets", "absent", False),
        ("C:\\ProgramData\\docker\\certs.d", "absent", False),
    }

    defender = [c for c in args_of(run, "win_powershell") if "MpPreference" in c["script"]]
    assert defender[0]["parameters"]["Paths"] == [
        "C:\\ProgramData\\docker\\volumes\\mt5-32345678-data",
        "C:\\ProgramData\\docker\\volumes\\mt5-32345679-data",
        "C:\\ProgramData\\docker\\volumes\\mt5-5002001-data",
    ]


def test_accounts_play_writes_secrets_with_acl_and_plans_the_containers(play, engine) -> None:
    run = play("playbooks/windows_accounts.yml", extra_vars={"mt5_windows_image": engine.standin})
    assert_clean(run)
    logins = ["32345678", "32345679", "5002001"]
    assert [a["path"] for a in args_of(run, "win_file") if a.get("state") == "directory"] == [f"C:\\mt5farm\\secrets\\{x}" for x in logins]
    readers = {(a["path"], a["user"], a["rights"]) for a in args_of(run, "win_acl")}
    assert readers == {(f"C:\\mt5farm\\secrets\\{x}", "S-1-5-93-2-1", "ReadAndExecute") for x in logins}
    written = sorted(f["dest"] for c in args_of(run, "win_copy") if c.get("_copy_mode") == "query" for f in c["files"])
    assert written == sorted([f"{x}\\api_key" for x in logins] + ["32345678\\password", "32345679\\password"]) or all(
        "secrets" in c["dest"] for c in args_of(run, "win_copy")
    )
    removed = [a["path"] for a in args_of(run, "win_file") if a.get("state") == "absent"]
    assert sorted(removed) == ["C:\\mt5farm\\secrets\\99999999", "C:\\mt5farm\\secrets\\99999999\\password"]

    [reconcile] = run.task_results("mt5_windows : Reconcile the account containers in one pass (from the controller, over mutual TLS)")
    assert reconcile["changed"] is True
    assert reconcile["actions"] == {"mt5-32345678": "created", "mt5-32345679": "created", "mt5-5002001": "created"}
    module_args = reconcile["invocation"]["module_args"]
    assert module_args["docker_host"] == f"tcp://127.0.0.1:{engine.port}"
    assert module_args["tls"] == engine.tls
    specs = {s["name"]: s for s in module_args["containers"]}
    one = specs["mt5-32345678"]
    assert one["isolation"] == "process" and specs["mt5-32345679"]["isolation"] == "hyperv"
    assert one["memory"] == int(1.8 * 1024**3) and one["nano_cpus"] == 500_000_000
    assert one["ports"] == [{"container_port": 8000, "host_port": 25678, "host_ip": "0.0.0.0", "protocol": "tcp"}]
    assert one["mounts"] == [
        {"type": "bind", "source": "C:\\mt5farm\\secrets\\32345678", "target": "C:\\secrets", "read_only": True},
        {"type": "volume", "source": "mt5-32345678-data", "target": "C:\\data", "read_only": False},
    ]
    assert one["restart_policy"] == "unless-stopped"
    assert one["healthcheck"]["test"] == ["CMD", "C:\\Python\\python.exe", "-m", "mt5_account_service", "healthcheck"]
    assert one["env"]["ADVERTISE_URL"] == "http://10.20.0.21:25678" and one["labels"]["mt5farm.endpoint"] == "http://10.20.0.21:25678"
    assert one["env"]["MT5_SECRETS_DIR"] == "C:\\secrets" and one["env"]["MT5_BACKEND"] == "mt5"
    assert specs["mt5-5002001"]["env"]["MT5_BACKEND"] == "simulator"
    for spec in specs.values():  # what the Windows engine refuses is never sent
        assert not spec.get("memory_reservation") and not spec.get("pids_limit") and not spec.get("cap_drop") and not spec.get("user")


def test_accounts_play_before_an_image_update_plans_the_containers_with_the_image_to_be_built(play, engine) -> None:
    # What the images stage leaves in a check run when its inputs changed: a tag no engine holds yet.
    missing = "mt5farm/account-windows:check-mode-not-built-yet"
    run = play("playbooks/windows_accounts.yml", extra_vars={"mt5_windows_image": missing, "mt5_windows_image_pending": True})
    assert_clean(run)
    [reconcile] = run.task_results("mt5_windows : Reconcile the account containers in one pass (from the controller, over mutual TLS)")
    assert reconcile["invocation"]["module_args"]["pending_images"] == [missing]
    assert reconcile["actions"] == {"mt5-32345678": "created", "mt5-32345679": "created", "mt5-5002001": "created"}
    [said] = run.task_results("mt5_windows : Say that the account image is still to be built or shipped (check mode)")
    assert said["msg"].startswith(f"{missing} is not on win-mock-01 yet")


@pytest.fixture(scope="module")
def images_run(play, engine):
    """One check run of the images play with the stand-in inputs (about 20 s: shared by the tests)."""
    return play("playbooks/windows_images.yml")


def test_images_play_computes_the_tag_and_plans_the_build_through_the_engine(images_run, play) -> None:
    run = images_run
    assert_clean(run)
    assert not run.modules("win_command"), "the image is built through the engine's API, not over WinRM"
    [tag] = run.task_results("mt5_windows_image : Compute the image tag from every input")
    ref = tag["ansible_facts"]["mt5_windows_image_ref"]
    assert ref.startswith("mt5farm/account-windows:") and len(ref.split(":")[1]) == 16
    [planned] = run.task_results("mt5_windows_image : Report the image would be built (check mode)")
    assert planned["msg"] == f"would build {ref} on win-mock-01"
    again = play("playbooks/windows_images.yml")
    [tag2] = again.task_results("mt5_windows_image : Compute the image tag from every input")
    assert tag2["ansible_facts"]["mt5_windows_image_ref"] == ref, "the same inputs must give the same tag"


def test_an_expert_is_checked_against_its_sha256_and_changes_the_tag(images_run, play, tmp_path) -> None:
    expert = tmp_path / "Grid.ex5"
    expert.write_bytes(b"stand-in for a compiled expert")
    good = {"path": str(expert), "sha256": hashlib.sha256(expert.read_bytes()).hexdigest()}
    run = play("playbooks/windows_images.yml", extra_vars={"mt5_windows_image_experts": [good]})
    assert_clean(run)
    [tag] = run.task_results("mt5_windows_image : Compute the image tag from every input")
    [tag_without] = images_run.task_results("mt5_windows_image : Compute the image tag from every input")
    assert tag["ansible_facts"]["mt5_windows_image_ref"] != tag_without["ansible_facts"]["mt5_windows_image_ref"]

    wrong = play("playbooks/windows_images.yml", extra_vars={"mt5_windows_image_experts": [{**good, "sha256": "0" * 64}]})
    assert wrong.done.returncode != 0
    assert f"MQL5/Experts/Grid.ex5: {expert} has sha256 {good['sha256']}, the inventory says {'0' * 64}" in wrong.text
