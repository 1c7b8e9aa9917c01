"""The monitoring role's `render` entry point: Prometheus' config a converge writes, into a directory.

Renders (Ansible, the role's own tasks/targets.yml) for a two-farm-host inventory whose
platform host carries no accounts, once with TLS between hosts off and Grafana disabled, once
with the defaults (three hosts: TLS on; Grafana enabled); what a converge would write is
checked from the files: a target per enabled account with its login, server and host, node
exporter on every Linux farm host and the platform host (over verified https with TLS),
Grafana when it runs, the alert rules, and the bearer token file (0400).
"""

from __future__ import annotations

import copy
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from farm_testing import REPO, run_ansible

from mt5farm.credentials import mt5_account_credential

API_KEY = "monitoring-render-test-key-0123456789"
INVENTORY: dict[str, Any] = {
    "all": {
        "vars": {"ansible_python_interpreter": sys.executable, "mt5_api_key": API_KEY},
        "children": {
            "mt5_linux": {
                "hosts": {
                    "farm-1": {
                        "mt5_bind_address": "10.1.0.11",
                        "mt5_accounts": [
                            {"login": 5001001, "server": "Demo", "backend": "simulator"},
                            {"login": 5001002, "server": "Demo", "backend": "simulator", "enabled": False},
                        ],
                    },
                    "farm-2": {"mt5_bind_address": "10.1.0.12", "mt5_accounts": [{"login": 7001001, "server": "Live", "password": "x"}]},
                }
            },
            "platform": {"hosts": {"platform-1": {"mt5_bind_address": "10.1.0.10"}}},
        },
    }
}


# Extra variables of each render: TLS between hosts off (mt5_tls) and Grafana disabled, or
# the defaults (TLS on: the inventory has three hosts; Grafana enabled).
SETTINGS = {"plain": {"mt5_tls": False, "monitoring_grafana_enabled": False}, "defaults": {}}


@dataclass
class Rendered:
    path: Path  # the render directory (laid out as /etc/prometheus)
    tls: bool  # TLS between hosts on
    grafana: bool  # Grafana enabled


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    root = tmp_path_factory.mktemp(f"monitoring-render-{request.param}")
    inventory = copy.deepcopy(INVENTORY)
    inventory["all"]["vars"].update(SETTINGS[request.param])
    (root / "inventory.yml").write_text(yaml.safe_dump(inventory))
    out = root / "prometheus"
    done = run_ansible(["-i", str(root / "inventory.yml"), "tests/monitoring/render.yml", "-e", f"monitoring_test_out={out}"], timeout=180)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    plain = request.param == "plain"
    return Rendered(out, tls=not plain, grafana=not plain)


def test_every_enabled_account_and_host_is_a_target_with_its_labels(rendered: Rendered) -> None:
    config = yaml.safe_load((rendered.path / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # With TLS between hosts the Linux farm hosts' account services serve HTTPS only.
    https = {"__scheme__": "https"} if rendered.tls else {}
    assert jobs["mt5-accounts"]["static_configs"] == [
        {"targets": ["10.1.0.11:21001"], "labels": {"login": "5001001", "server": "Demo", "host": "farm-1", **https}},
        {"targets": ["10.1.0.12:21001"], "labels": {"login": "7001001", "server": "Live", "host": "farm-2", **https}},
    ]
    assert jobs["mt5-accounts"]["authorization"]["credentials_file"] == "/etc/prometheus/secrets/metrics_token"
    assert jobs["node"]["static_configs"] == [
        {"targets": ["10.1.0.11:9100"], "labels": {"host": "farm-1"}},
        {"targets": ["10.1.0.12:9100"], "labels": {"host": "farm-2"}},
        {"targets": ["10.1.0.10:9100"], "labels": {"host": "platform-1"}},
    ]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["10.1.0.10:9090"], "labels": {"host": "platform-1"}}]
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def test_with_tls_between_hosts_accounts_and_node_exporters_are_verified_against_the_farms_ca(rendered: Rendered) -> None:
    jobs = {job["job_name"]: job for job in yaml.safe_load((rendered.path / "prometheus.yml").read_text())["scrape_configs"]}
    if rendered.tls:
        assert jobs["mt5-accounts"]["tls_config"] == {"ca_file": "/etc/prometheus/secrets/tls_ca.pem"}
        assert jobs["node"]["tls_config"] == {"ca_file": "/etc/prometheus/secrets/tls_ca.pem"} and jobs["node"]["scheme"] == "https"
    else:
        assert "tls_config" not in jobs["mt5-accounts"] and "tls_config" not in jobs["node"] and "scheme" not in jobs["node"]


def test_grafana_is_a_target_when_it_runs(rendered: Rendered) -> None:
    config = yaml.safe_load((rendered.path / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    services = {config["labels"]["service"]: config["targets"] for config in jobs["platform"]["static_configs"]}
    expected = {
        "redis": ["127.0.0.1:9121"],
        "postgres": ["127.0.0.1:9187"],
        "nginx": ["127.0.0.1:9113"],
        "alertmanager": ["10.1.0.10:9093"],
    }
    if rendered.grafana:
        expected["grafana"] = ["10.1.0.10:3000"]
    assert services == expected
    # Prometheus sends its alerts to the Alertmanager it scrapes.
    assert config["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["10.1.0.10:9093"]}]}]}


def test_a_converge_notes_whether_grafana_runs_before_it_works_out_the_targets() -> None:
    # tasks/targets.yml scrapes Grafana when __monitoring_grafana_runs: a converge must set it first
    # (it was set after, so Grafana was never a target).
    tasks = yaml.safe_load((REPO / "roles/monitoring/tasks/prometheus.yml").read_text())
    sets = next(i for i, task in enumerate(tasks) if "__monitoring_grafana_runs" in task.get("ansible.builtin.set_fact", {}))
    reads = next(i for i, task in enumerate(tasks) if task.get("ansible.builtin.import_tasks") == "targets.yml")
    assert sets < reads


def test_the_alert_rules_and_the_token_file_are_written_as_a_converge_writes_them(rendered: Rendered) -> None:
    rules = yaml.safe_load((rendered.path / "rules/mt5farm.yml").read_text())
    names = [rule["alert"] for rule in rules["groups"][0]["rules"]]
    assert names and len(names) == len(set(names))
    token = rendered.path / "secrets/metrics_token"
    assert token.read_text() == mt5_account_credential(API_KEY, "metrics_token", 1)
    assert stat.S_IMODE(token.stat().st_mode) == 0o400
    assert stat.S_IMODE((rendered.path / "secrets").stat().st_mode) == 0o700
