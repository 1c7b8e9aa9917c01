"""mt5_containers without Docker: documentation against argument_spec, the hash rule, the plan."""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import pytest
import yaml
from mt5farm_containers.arguments import ARGUMENT_SPEC, HEALTHY_ARGUMENT_SPEC
from mt5farm_containers.engine import client_kwargs
from mt5farm_containers.plan import ACTIONS, batches, make_plan
from mt5farm_containers.runner import summarize
from mt5farm_containers.spec import LABEL_HASH, SpecError, check_unique, config_hash, normalize

LIBRARY = Path(__file__).resolve().parents[2] / "library"
MODULE_FILE = LIBRARY / "mt5_containers.py"


def module_docs(module_file: Path = MODULE_FILE) -> dict[str, str]:
    """DOCUMENTATION, EXAMPLES and RETURN of a module file, read from its syntax tree as ansible-doc reads them."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id in ("DOCUMENTATION", "EXAMPLES", "RETURN")
    }


DOC_TYPES = {"str", "int", "bool", "list", "dict"}


def doc_to_spec(options: dict) -> dict:
    """DOCUMENTATION options in argument_spec shape (what ansible-test validate-modules compares)."""
    spec = {}
    for name, doc in options.items():
        assert doc.get("description"), f"{name}: no description"
        assert doc.get("type") in DOC_TYPES, f"{name}: type {doc.get('type')!r}"
        entry = {"type": doc["type"]}
        for key in ("elements", "choices", "default"):
            if key in doc:
                entry[key] = doc[key]
        if doc.get("required"):
            entry["required"] = True
        if "suboptions" in doc:
            entry["options"] = doc_to_spec(doc["suboptions"])
        spec[name] = entry
    return spec


def spec_shape(spec: dict) -> dict:
    shaped = {}
    for name, entry in spec.items():
        entry = {key: value for key, value in entry.items() if value is not None and not (key == "required" and value is False)}
        if "options" in entry:
            entry["options"] = spec_shape(entry["options"])
        shaped[name] = entry
    return shaped


@pytest.mark.parametrize(
    ("module", "argument_spec"), [("mt5_containers", ARGUMENT_SPEC), ("mt5_containers_healthy", HEALTHY_ARGUMENT_SPEC)]
)
def test_documentation_options_equal_the_argument_spec(module: str, argument_spec: dict) -> None:
    docs = module_docs(LIBRARY / f"{module}.py")
    documented = yaml.safe_load(docs["DOCUMENTATION"])
    assert documented["module"] == module
    assert doc_to_spec(documented["options"]) == spec_shape(argument_spec)
    assert all(module in task for task in yaml.safe_load(docs["EXAMPLES"]) if "mt5_containers" not in task)


def test_examples_and_return_parse_and_return_documents_every_key() -> None:
    examples = yaml.safe_load(module_docs()["EXAMPLES"])
    assert all("mt5_containers" in task for task in examples)
    returned = yaml.safe_load(module_docs()["RETURN"])
    for key in ("changed", "actions", "purged_volumes", "diff", "starting", *ACTIONS):
        assert key in returned, f"RETURN lacks {key}"


def base_spec(**overrides) -> dict:
    spec = {
        "name": "mt5-1001",
        "image": "sim:1",
        "env": {"A": "1"},
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
    }
    spec.update(overrides)
    return spec


def digest(spec: dict, image_id: str = "sha256:aaa") -> str:
    return config_hash(normalize(spec), image_id)


PORT_A = {"container_port": 8000, "host_port": 18001, "host_ip": "127.0.0.1", "protocol": "tcp"}
PORT_B = {"container_port": 9000, "host_port": 19001, "host_ip": "127.0.0.1", "protocol": "tcp"}


def test_hash_ignores_order_defaults_and_the_image_reference() -> None:
    reference = digest(base_spec(ports=[PORT_A, PORT_B], cap_drop=["ALL", "NET_RAW"]))
    assert digest(base_spec(ports=[PORT_B, PORT_A], cap_drop=["NET_RAW", "ALL"])) == reference
    # Options left out hash like their defaults, so a new optional field recreates nothing.
    minimal = {
        "name": "mt5-1001",
        "image": "sim:1",
        "env": {"A": 1},
        "ports": [PORT_B, PORT_A],
        "cap_drop": ["ALL", "NET_RAW"],
        "restart_policy": "unless-stopped",
    }
    assert digest(minimal) == reference
    # Another tag of the same image id is the same container.
    assert digest(base_spec(image="sim:latest", ports=[PORT_A, PORT_B], cap_drop=["ALL", "NET_RAW"])) == reference


@pytest.mark.parametrize(
    "change",
    [
        {"env": {"A": "2"}},
        {"memory": 1024},
        {"ports": [dict(PORT_A, host_port=18002)]},
        {"init": True},
        {"stop_timeout": 0},
        {"command": ["/entry.sh", "--fast"]},
        {"healthcheck": {"test": ["CMD", "true"], "interval": 5, "timeout": None, "retries": None, "start_period": None}},
    ],
)
def test_hash_changes_with_the_config(change: dict) -> None:
    assert digest(base_spec(**change)) != digest(base_spec())


def test_hash_changes_with_the_image_id() -> None:
    assert digest(base_spec(), "sha256:bbb") != digest(base_spec(), "sha256:aaa")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": {"mt5farm.scope": "x"}}, "set by mt5_containers"),
        ({"env": {"FLAG": True}}, "quote it"),
        ({"name": "bad name"}, "not a valid Docker name"),
    ],
)
def test_invalid_specs_are_refused_with_what_to_fix(change: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        normalize(base_spec(**change))


def test_duplicate_names_and_published_ports_are_refused() -> None:
    one, two = normalize(base_spec(ports=[PORT_A])), normalize(base_spec(name="mt5-1002", ports=[PORT_A]))
    with pytest.raises(SpecError, match=re.escape("both publish 127.0.0.1:18001/tcp")):
        check_unique([one, two])
    with pytest.raises(SpecError, match="listed twice"):
        check_unique([one, copy.deepcopy(one)])


def planned(name: str, image_id: str = "sha256:new", **overrides) -> dict:
    spec = normalize(base_spec(name=name, **overrides))
    spec["_image_id"] = image_id
    spec["_hash"] = config_hash(spec, image_id)
    return spec


def listed(spec: dict, state: str = "running", image_id: str | None = None, config_hash: str | None = None) -> dict:
    return {
        "Id": spec["name"] + "-id",
        "Names": ["/" + spec["name"]],
        "State": state,
        "ImageID": image_id or spec["_image_id"],
        "Labels": {LABEL_HASH: config_hash or spec["_hash"]},
    }


def test_the_plan_sorts_every_container_into_one_action() -> None:
    same, env, image, stopped, kick = (planned(f"c{i}") for i in range(5))
    current = {
        "c0": listed(same),
        "c1": listed(env, config_hash="old"),
        "c2": listed(image, image_id="sha256:old", config_hash="old"),
        "c3": listed(stopped, state="exited"),
        "c4": listed(kick),
        "gone": {"Id": "gone-id", "Names": ["/gone"], "State": "running", "Labels": {}},
    }
    plan = make_plan([same, env, image, stopped, kick, planned("new")], current, ["c4", "nobody"])
    assert plan.actions == {
        "c0": "unchanged",
        "c1": "recreated",
        "c2": "recreated",
        "c3": "started",
        "c4": "restarted",
        "new": "created",
        "gone": "removed",
    }
    assert [spec["name"] for spec, _ in plan.recreate] == ["c1"]
    assert [spec["name"] for spec, _ in plan.roll] == ["c2"]
    assert plan.unknown_restarts == ["nobody"]


def test_batches_keep_order() -> None:
    assert batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]


def test_failure_messages_show_the_first_five_and_count_the_rest() -> None:
    errors = {f"c{i}": "boom" for i in range(8)}
    text = summarize(errors)
    assert text.startswith("c0: boom; c1: boom") and text.endswith("; and 3 more (see errors)")
    assert "c5" not in text


def test_extra_hosts_left_empty_hash_as_before_and_set_change_the_hash() -> None:
    assert digest(base_spec(extra_hosts={})) == digest(base_spec())
    blocked = digest(base_spec(extra_hosts={"download.mql5.com": "127.0.0.1"}))
    assert blocked != digest(base_spec())
    assert normalize(base_spec(extra_hosts={"a.example": "127.0.0.1"}))["extra_hosts"] == {"a.example": "127.0.0.1"}


def test_isolation_left_unset_hashes_as_before_and_set_changes_the_hash() -> None:
    assert digest(base_spec(isolation=None)) == digest(base_spec())
    assert digest(base_spec(isolation="process")) != digest(base_spec())


@pytest.mark.parametrize(
    ("docker_host", "tls", "message"),
    [
        ("tcp://192.0.2.1:2376", None, "give tls"),
        (None, {"ca_cert": "a", "client_cert": "b", "client_key": "c"}, "tls needs docker_host"),
        (
            "tcp://192.0.2.1:2376",
            {"ca_cert": "/nonexistent/ca.pem", "client_cert": "/nonexistent/c.pem", "client_key": "/nonexistent/k.pem"},
            "no such file",
        ),
    ],
)
def test_a_network_engine_needs_mutual_tls(docker_host, tls, message) -> None:
    pytest.importorskip("docker")
    with pytest.raises(SpecError, match=message):
        client_kwargs(docker_host, tls)


def test_engine_arguments_come_from_the_environment_or_a_local_socket(monkeypatch) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/elsewhere.sock")
    assert client_kwargs()["base_url"] == "unix:///run/elsewhere.sock"
    assert client_kwargs("unix:///var/run/docker.sock") == {"base_url": "unix:///var/run/docker.sock"}
