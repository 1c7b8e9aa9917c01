#!/usr/bin/python
# MT5 Farm: reconcile one host's account containers in one pass.
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mt5_containers
short_description: Reconcile one host's MT5 account containers in one pass
description:
  - Makes the containers of one I(scope) on a Docker host match a desired list, in one
    module call. It creates the missing ones, recreates only those whose config hash changed,
    starts stopped ones, restarts those asked for, and stops and removes every container
    of the scope that is no longer wanted. Containers without the scope label are never
    touched.
  - The config hash is the sha256 of the canonical JSON of a container's desired spec (the
    image reference excluded) plus the image id the reference resolves to on the host. It
    is stored in the label C(mt5farm.config-hash), next to C(mt5farm.scope) and
    C(mt5farm.image-id). A container is recreated if and only if its hash label differs.
  - Containers recreated because their image changed are rolled in batches of
    I(batch_size), each batch waiting for Docker's healthcheck to report C(healthy)
    before the next one starts; a batch that does not come healthy within
    I(health_timeout) fails the module and leaves the rest on the old image. Everything
    else is done concurrently by I(parallelism) worker threads.
  - A recreated container is first created under a temporary name, so that a
    configuration Docker rejects leaves the running container alone; only then is the old
    one stopped (gracefully, with its own stop timeout), removed, and the new one renamed
    and started.
  - The no-op path costs one container listing (labels come with it) and one image
    inspection per distinct image.
author:
  - MT5 Farm
requirements:
  - Docker SDK for Python 5.0 or newer (C(python3-docker) on Debian and Ubuntu hosts).
  - Docker Engine 20.10 or newer (API 1.41).
options:
  containers:
    description:
      - The desired containers of this host, all of the I(scope).
      - Secrets are never part of a spec; mount them as read-only files.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Container name.
        type: str
        required: true
      image:
        description:
          - Image reference (tag or id). It must already be on the host (images are shipped,
            never pulled); a missing image fails the module before anything changes.
          - Only the image id it resolves to enters the config hash.
        type: str
        required: true
      env:
        description: Environment variables (name to string value).
        type: dict
        default: {}
      labels:
        description:
          - Extra labels. C(mt5farm.scope), C(mt5farm.config-hash) and C(mt5farm.image-id)
            are set by the module and may not be given.
        type: dict
        default: {}
      ports:
        description: Published ports.
        type: list
        elements: dict
        default: []
        suboptions:
          container_port:
            description: Port inside the container.
            type: int
            required: true
          host_port:
            description: Port on the host.
            type: int
            required: true
          host_ip:
            description:
              - Host address to bind, for example C(127.0.0.1) or the host's private address.
              - Required so that nothing is published on every interface by accident.
            type: str
            required: true
          protocol:
            description: Protocol.
            type: str
            default: tcp
            choices: [tcp, udp]
      mounts:
        description:
          - Bind mounts and named volumes. Named volumes missing on the host are created by
            Docker with the label C(mt5farm.scope); volumes are never removed unless listed
            in I(purge_volumes).
        type: list
        elements: dict
        default: []
        suboptions:
          type:
            description: Mount type.
            type: str
            required: true
            choices: [bind, volume]
          source:
            description: Host path (bind) or volume name (volume).
            type: str
            required: true
          target:
            description: Path inside the container.
            type: str
            required: true
          read_only:
            description: Mount read-only.
            type: bool
            default: false
      memory:
        description: Memory limit in bytes.
        type: int
      memory_reservation:
        description: Memory soft limit in bytes.
        type: int
      nano_cpus:
        description: CPU quota in units of 10^-9 CPUs.
        type: int
      healthcheck:
        description: Docker healthcheck; times in seconds.
        type: dict
        suboptions:
          test:
            description: Test command, for example C(["CMD", "curl", "-fsS", "http://127.0.0.1:8000/health"]).
            type: list
            elements: str
            required: true
          interval:
            description: Seconds between checks.
            type: int
          timeout:
            description: Seconds before a check counts as failed.
            type: int
          retries:
            description: Consecutive failures before the container is C(unhealthy).
            type: int
          start_period:
            description: Seconds of start-up grace during which failures do not count.
            type: int
      restart_policy:
        description: Docker restart policy.
        type: str
        default: unless-stopped
        choices: ['no', always, on-failure, unless-stopped]
      network:
        description: A user-defined network, which must exist.
        type: str
      hostname:
        description: Container hostname.
        type: str
      user:
        description: User (and group) the container runs as.
        type: str
      init:
        description: Run Docker's init as PID 1.
        type: bool
        default: false
      stop_timeout:
        description: Seconds Docker waits after SIGTERM before SIGKILL.
        type: int
      cap_drop:
        description: Capabilities to drop.
        type: list
        elements: str
        default: []
      security_opt:
        description: Security options.
        type: list
        elements: str
        default: []
      read_only:
        description: Read-only root filesystem.
        type: bool
        default: false
      tmpfs:
        description: tmpfs mounts, path to mount options (for example C(size=64m)).
        type: dict
        default: {}
      command:
        description: Command; null keeps the image's.
        type: list
        elements: str
      pids_limit:
        description: Maximum number of processes.
        type: int
      isolation:
        description:
          - Windows container isolation (C(HostConfig.Isolation)), for a Windows Docker engine.
          - Null (the default) leaves it to the engine and is left out of the config hash, so
            specs without it hash as before.
        type: str
        choices: [process, hyperv]
  scope:
    description:
      - Value of the label C(mt5farm.scope) put on every container this module creates.
      - Every container carrying this label value whose name is not in I(containers) is
        stopped and removed; that is how removed and disabled accounts go away.
    type: str
    required: true
  purge_volumes:
    description:
      - Named volumes to remove once their container has been removed (the operator's purge
        flag). Only volumes labelled with this I(scope) are removed; a volume still used by
        a desired container fails the module before anything changes.
    type: list
    elements: str
    default: []
  restart:
    description: Names of containers to restart even when unchanged (their secret files changed).
    type: list
    elements: str
    default: []
  batch_size:
    description:
      - Containers recreated because their image changed are recreated this many at a time,
        each batch waiting for C(healthy) before the next.
    type: int
    default: 1
  wait_healthy:
    description:
      - After creating, recreating, starting or restarting, wait until every touched
        container is C(healthy) (or running, if it has no healthcheck); fail with details
        on timeout.
    type: bool
    default: false
  health_timeout:
    description: Seconds to wait for a batch (or, with I(wait_healthy), all touched containers) to come healthy.
    type: int
    default: 120
  parallelism:
    description: Worker threads for creates, recreates, starts, restarts and removals.
    type: int
    default: 8
  docker_host:
    description:
      - The Docker engine to reconcile, for example C(tcp://win-01.example:2376) (a remote
        engine, with I(tls)) or C(unix:///var/run/docker.sock).
      - Null (the default) finds the engine as the Docker SDK's C(from_env) does
        (C(DOCKER_HOST), else the local socket), as before this option existed.
      - A C(tcp://) engine is refused without I(tls), because the Docker API unauthenticated
        over the network is root on that host.
    type: str
  tls:
    description:
      - Mutual TLS to I(docker_host) (Docker's C(--tlsverify) mode). The engine's certificate
        is always verified against I(tls.ca_cert), and the module presents its client
        certificate. Requires I(docker_host).
    type: dict
    suboptions:
      ca_cert:
        description: CA certificate (PEM) that signed the engine's certificate.
        type: str
        required: true
      client_cert:
        description: Client certificate (PEM) the engine trusts.
        type: str
        required: true
      client_key:
        description: The client certificate's private key (PEM); keep it mode 0600.
        type: str
        required: true
attributes:
  check_mode:
    support: full
    description: Reports the same actions without changing anything.
  diff_mode:
    support: full
    description: Per container, its config hash and image before and after.
notes:
  - Docker's engine must be reachable as the Docker SDK's C(from_env) finds it
    (C(DOCKER_HOST) or the local socket), or at I(docker_host).
  - The mt5_windows role runs this module on the controller (C(delegate_to) localhost)
    against each Windows host's engine over mutual TLS; Windows paths in mounts
    (C(C:\mt5farm\secrets\1001)) are passed to the engine unchanged.
  - The spec is canonicalised before hashing (unset, false and empty values dropped; ports,
    mounts, capabilities and security options sorted), so a new optional field, or a list
    written in another order, does not recreate anything.
"""

EXAMPLES = r"""
- name: Reconcile the account containers of this host
  mt5_containers:
    scope: mt5farm
    containers:
      - name: mt5-1001
        image: mt5farm/simulator:3f2a9c1d
        env:
          MT5_LOGIN: "1001"
          MT5_SERVER: Demo-Server
        labels:
          mt5farm.login: "1001"
        ports:
          - {container_port: 8000, host_port: 18001, host_ip: 10.0.0.5, protocol: tcp}
        mounts:
          - {type: volume, source: mt5-1001-data, target: /data}
          - {type: bind, source: /etc/mt5farm/secrets/1001, target: /run/secrets/mt5, read_only: true}
        memory: 1288490188
        memory_reservation: 1073741824
        nano_cpus: 500000000
        healthcheck:
          test: [CMD, curl, -fsS, "http://127.0.0.1:8000/health"]
          interval: 10
          timeout: 3
          retries: 3
          start_period: 60
        network: mt5farm
    restart: "{{ __mt5_linux_secrets.changed_accounts | map('regex_replace', '^', 'mt5-') | list }}"
    batch_size: 2
    wait_healthy: true
  register: __mt5_linux_containers

- name: Remove account 1002 for good, terminal data included
  mt5_containers:
    scope: mt5farm
    containers: []
    purge_volumes: [mt5-1002-data]

- name: Reconcile a Windows host's engine from the controller, over mutual TLS
  mt5_containers:
    scope: accounts
    docker_host: tcp://win-01.example:2376
    tls:
      ca_cert: /home/ops/.local/share/mt5farm/docker-tls/ca.pem
      client_cert: /home/ops/.local/share/mt5farm/docker-tls/client.pem
      client_key: /home/ops/.local/share/mt5farm/docker-tls/client-key.pem
    containers:
      - name: mt5-32345678
        image: mt5farm/account-windows:0123456789abcdef
        isolation: process
        ports:
          - {container_port: 8000, host_port: 25678, host_ip: 0.0.0.0}
        mounts:
          - {type: bind, source: 'C:\mt5farm\secrets\32345678', target: 'C:\secrets', read_only: true}
          - {type: volume, source: mt5-32345678-data, target: 'C:\data'}
  delegate_to: localhost
"""

RETURN = r"""
changed:
  description: Whether any container or volume changed (or would, in check mode).
  type: bool
  returned: always
actions:
  description: Container name to what was done (or would be) to it.
  type: dict
  returned: always
  sample: {"mt5-1001": "unchanged", "mt5-1002": "recreated", "mt5-1003": "removed"}
created:
  description: Names of the containers created.
  type: list
  elements: str
  returned: always
recreated:
  description: Names of the containers recreated (config or image changed).
  type: list
  elements: str
  returned: always
removed:
  description: Names of the containers of the scope that were stopped and removed.
  type: list
  elements: str
  returned: always
restarted:
  description: Names of the containers restarted on request.
  type: list
  elements: str
  returned: always
started:
  description: Names of the containers that were stopped and were started (their config unchanged).
  type: list
  elements: str
  returned: always
unchanged:
  description: Names of the containers left alone.
  type: list
  elements: str
  returned: always
purged_volumes:
  description: Named volumes removed on request.
  type: list
  elements: str
  returned: always
diff:
  description: Per container name, its config hash, image reference and image id, before and after.
  type: dict
  returned: always
  sample:
    before: {"mt5-1001": {"config_hash": "9b1c...", "image": "mt5farm/simulator:old", "image_id": "sha256:1a2b..."}}
    after: {"mt5-1001": {"config_hash": "77aa...", "image": "mt5farm/simulator:new", "image_id": "sha256:3c4d..."}}
errors:
  description: Container name to the Docker error that stopped its change.
  type: dict
  returned: failure
unhealthy:
  description:
    - Container name to its state, health status and last health check outputs, for the
      containers that did not come healthy in time.
  type: dict
  returned: failure
not_updated:
  description: Containers whose image update was not attempted because an earlier batch failed.
  type: list
  elements: str
  returned: failure
"""

import concurrent.futures
import hashlib
import json
import os
import re
import threading
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import docker
    from docker.errors import DockerException, NotFound
    from docker.types import Mount
except ImportError:
    docker = None
    DOCKER_IMPORT_ERROR = traceback.format_exc()
else:
    DOCKER_IMPORT_ERROR = None

LABEL_SCOPE = "mt5farm.scope"
LABEL_HASH = "mt5farm.config-hash"
LABEL_IMAGE = "mt5farm.image-id"
RESERVED_LABELS = (LABEL_SCOPE, LABEL_HASH, LABEL_IMAGE)
# Bump only on purpose: a new value recreates every container of every farm.
HASH_VERSION = 1
# A recreated container is created under this suffix, then renamed over the old one.
NEXT_SUFFIX = "-mt5farm-next"
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
POLL_SECONDS = 0.5
HTTP_TIMEOUT = 300
HEALTH_LOG_LINES = 3
HEALTH_LOG_CHARS = 300
NANO = 1_000_000_000

PORT_OPTIONS = dict(
    container_port=dict(type="int", required=True),
    host_port=dict(type="int", required=True),
    host_ip=dict(type="str", required=True),
    protocol=dict(type="str", default="tcp", choices=["tcp", "udp"]),
)
MOUNT_OPTIONS = dict(
    type=dict(type="str", required=True, choices=["bind", "volume"]),
    source=dict(type="str", required=True),
    target=dict(type="str", required=True),
    read_only=dict(type="bool", default=False),
)
HEALTHCHECK_OPTIONS = dict(
    test=dict(type="list", elements="str", required=True),
    interval=dict(type="int"),
    timeout=dict(type="int"),
    retries=dict(type="int"),
    start_period=dict(type="int"),
)
CONTAINER_OPTIONS = dict(
    name=dict(type="str", required=True),
    image=dict(type="str", required=True),
    env=dict(type="dict", default={}),
    labels=dict(type="dict", default={}),
    ports=dict(type="list", elements="dict", default=[], options=PORT_OPTIONS),
    mounts=dict(type="list", elements="dict", default=[], options=MOUNT_OPTIONS),
    memory=dict(type="int"),
    memory_reservation=dict(type="int"),
    nano_cpus=dict(type="int"),
    healthcheck=dict(type="dict", options=HEALTHCHECK_OPTIONS),
    restart_policy=dict(type="str", default="unless-stopped", choices=["no", "always", "on-failure", "unless-stopped"]),
    network=dict(type="str"),
    hostname=dict(type="str"),
    user=dict(type="str"),
    init=dict(type="bool", default=False),
    stop_timeout=dict(type="int"),
    cap_drop=dict(type="list", elements="str", default=[]),
    security_opt=dict(type="list", elements="str", default=[]),
    read_only=dict(type="bool", default=False),
    tmpfs=dict(type="dict", default={}),
    command=dict(type="list", elements="str"),
    pids_limit=dict(type="int"),
    isolation=dict(type="str", choices=["process", "hyperv"]),
)
TLS_OPTIONS = dict(
    ca_cert=dict(type="str", required=True),
    client_cert=dict(type="str", required=True),
    client_key=dict(type="str", required=True),
)
ARGUMENT_SPEC = dict(
    containers=dict(type="list", elements="dict", required=True, options=CONTAINER_OPTIONS),
    scope=dict(type="str", required=True),
    purge_volumes=dict(type="list", elements="str", default=[]),
    restart=dict(type="list", elements="str", default=[]),
    batch_size=dict(type="int", default=1),
    wait_healthy=dict(type="bool", default=False),
    health_timeout=dict(type="int", default=120),
    parallelism=dict(type="int", default=8),
    docker_host=dict(type="str"),
    tls=dict(type="dict", options=TLS_OPTIONS),
)

ACTIONS = ("created", "recreated", "restarted", "started", "removed", "unchanged")


class SpecError(Exception):
    """A desired spec that cannot be applied; the message says what to fix."""


# ---------------------------------------------------------------------------
# Specs and hashes (pure functions)
# ---------------------------------------------------------------------------


def _string_map(container: str, field: str, values: dict | None) -> dict:
    """Labels and env values are strings; numbers are converted, booleans are ambiguous."""
    result = {}
    for key, value in (values or {}).items():
        if isinstance(value, bool):
            raise SpecError(f'container {container}: {field}.{key} is a boolean; quote it ("true"/"false")')
        if value is None:
            value = ""
        if not isinstance(value, (str, int, float)):
            raise SpecError(f"container {container}: {field}.{key} must be a string, got {type(value).__name__}")
        result[str(key)] = str(value)
    return result


def normalize(container: dict) -> dict:
    """Return the spec with strings where strings are meant and order-free lists sorted."""
    spec = dict(container)
    name = spec["name"]
    if not NAME_RE.match(name):
        raise SpecError(f"container name {name!r} is not a valid Docker name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    spec["env"] = _string_map(name, "env", spec.get("env"))
    spec["labels"] = _string_map(name, "labels", spec.get("labels"))
    reserved = sorted(set(spec["labels"]) & set(RESERVED_LABELS))
    if reserved:
        raise SpecError(f"container {name}: labels {', '.join(reserved)} are set by mt5_containers; remove them")
    spec["tmpfs"] = {str(path): "" if options is None else str(options) for path, options in (spec.get("tmpfs") or {}).items()}
    spec["ports"] = sorted(spec.get("ports") or [], key=lambda p: (p["container_port"], p["protocol"], p["host_ip"], p["host_port"]))
    spec["mounts"] = sorted(spec.get("mounts") or [], key=lambda m: (m["target"], m["type"], m["source"]))
    spec["cap_drop"] = sorted(spec.get("cap_drop") or [])
    spec["security_opt"] = sorted(spec.get("security_opt") or [])
    if not spec.get("command"):
        spec["command"] = None
    return spec


def _prune(value):
    """Drop unset, false and empty values so that defaults and new optional fields hash alike."""
    if isinstance(value, dict):
        pruned = {}
        for key, item in value.items():
            item = _prune(item)
            if item is None or item is False or item == [] or item == {}:
                continue
            pruned[key] = item
        return pruned
    if isinstance(value, list):
        return [_prune(item) for item in value]
    return value


def canonical_spec(spec: dict) -> dict:
    """The part of a normalized spec that enters the hash: everything but the image reference."""
    return _prune({key: value for key, value in spec.items() if key != "image"})


def config_hash(spec: dict, image_id: str) -> str:
    payload = {"version": HASH_VERSION, "spec": canonical_spec(spec), "image_id": image_id}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def container_name(listing: dict) -> str:
    """The container's own name from a /containers/json entry (link aliases have two slashes)."""
    names = [name[1:] for name in listing.get("Names") or [] if name.count("/") == 1]
    return names[0] if names else (listing.get("Names") or ["/" + listing["Id"]])[0].lstrip("/")


def check_unique(specs: list[dict]) -> None:
    """Names and published host ports must be unique on the host."""
    seen: set[str] = set()
    for spec in specs:
        if spec["name"] in seen:
            raise SpecError(f"container {spec['name']} is listed twice")
        seen.add(spec["name"])
    bindings: dict[tuple, str] = {}
    for spec in specs:
        for port in spec["ports"]:
            key = (port["host_ip"], port["host_port"], port["protocol"])
            if key in bindings and bindings[key] != spec["name"]:
                raise SpecError(
                    f"containers {bindings[key]} and {spec['name']} both publish {port['host_ip']}:{port['host_port']}/{port['protocol']}"
                )
            bindings[key] = spec["name"]


# ---------------------------------------------------------------------------
# The plan (pure: from desired specs, image ids and the current listing)
# ---------------------------------------------------------------------------


class Plan:
    def __init__(self) -> None:
        self.actions: dict[str, str] = {}
        self.create: list[dict] = []
        self.recreate: list[tuple[dict, dict]] = []  # config changed: concurrently
        self.roll: list[tuple[dict, dict]] = []  # image changed: in health-gated batches
        self.start: list[tuple[dict, dict]] = []
        self.restart: list[tuple[dict, dict]] = []
        self.remove: list[dict] = []
        self.unknown_restarts: list[str] = []


def make_plan(specs: list[dict], current: dict[str, dict], restart: list[str]) -> Plan:
    """Decide every container's action. `specs` carry `_hash` and `_image_id`."""
    plan = Plan()
    wanted = {spec["name"] for spec in specs}
    for spec in specs:
        name = spec["name"]
        existing = current.get(name)
        if existing is None:
            plan.create.append(spec)
            plan.actions[name] = "created"
            continue
        state = existing.get("State")
        if (existing.get("Labels") or {}).get(LABEL_HASH) != spec["_hash"] or state in ("dead", "removing"):
            if existing.get("ImageID") != spec["_image_id"]:
                plan.roll.append((spec, existing))
            else:
                plan.recreate.append((spec, existing))
            plan.actions[name] = "recreated"
        elif state not in ("running", "restarting"):
            plan.start.append((spec, existing))
            plan.actions[name] = "started"
        elif name in restart:
            plan.restart.append((spec, existing))
            plan.actions[name] = "restarted"
        else:
            plan.actions[name] = "unchanged"
    for name in sorted(set(current) - wanted):
        plan.remove.append(current[name])
        plan.actions[name] = "removed"
    plan.roll.sort(key=lambda pair: pair[0]["name"])
    plan.unknown_restarts = sorted(set(restart) - wanted)
    return plan


def batches(items: list, size: int) -> list[list]:
    return [items[index : index + size] for index in range(0, len(items), size)]


# ---------------------------------------------------------------------------
# Docker
# ---------------------------------------------------------------------------


def describe(error: BaseException) -> str:
    """A Docker error in one line: the engine's explanation, never the request body."""
    explanation = getattr(error, "explanation", None)
    if explanation:
        text = explanation.decode("utf-8", "replace") if isinstance(explanation, bytes) else str(explanation)
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def client_kwargs(docker_host: str | None = None, tls: dict | None = None) -> dict:
    """APIClient arguments: from the environment (as before), or docker_host with mutual TLS.

    With tls, the engine's certificate is verified against tls.ca_cert and the client
    presents tls.client_cert/client_key; a tcp:// engine without tls is refused.
    """
    if docker_host is None and tls is None:
        return docker.utils.kwargs_from_env()
    if docker_host is None:
        raise SpecError("tls needs docker_host (the engine to present the client certificate to)")
    if tls is None:
        if docker_host.startswith(("tcp://", "http://", "https://")):
            raise SpecError(
                f"docker_host {docker_host} is a network engine: give tls (ca_cert, client_cert, client_key); "
                "the Docker API without mutual TLS is root on that host for anyone who reaches the port"
            )
        return {"base_url": docker_host}
    paths = {key: os.path.expanduser(tls[key]) for key in ("ca_cert", "client_cert", "client_key")}
    missing = [f"{key} {path}" for key, path in paths.items() if not os.path.isfile(path)]
    if missing:
        raise SpecError("tls: no such file: " + ", ".join(missing))
    config = docker.tls.TLSConfig(
        client_cert=(paths["client_cert"], paths["client_key"]),
        ca_cert=paths["ca_cert"],
        verify=True,
    )
    return {"base_url": docker_host, "tls": config}


class Engine:
    """The Docker engine, with one low-level client per worker thread."""

    def __init__(self, docker_host: str | None = None, tls: dict | None = None) -> None:
        self._kwargs = client_kwargs(docker_host, tls)
        # With mutual TLS the client trusts only tls.ca_cert: requests would otherwise take
        # REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE (and proxies) from the environment over it.
        self._trust_env = tls is None
        self.api = self._new_client("auto")
        self._version = self.api.api_version
        self._local = threading.local()
        self._clients = [self.api]
        self._lock = threading.Lock()

    def client(self):
        api = getattr(self._local, "api", None)
        if api is None:
            api = self._new_client(self._version)
            self._local.api = api
            with self._lock:
                self._clients.append(api)
        return api

    def _new_client(self, version: str):
        if self._trust_env:
            return docker.APIClient(version=version, timeout=HTTP_TIMEOUT, **self._kwargs)
        # Created with a fixed version (no request yet), so the first request already
        # ignores the environment; then the server's version is negotiated as with "auto".
        api = docker.APIClient(version=docker.constants.MINIMUM_DOCKER_API_VERSION, timeout=HTTP_TIMEOUT, **self._kwargs)
        api.trust_env = False
        if version == "auto":
            version = api._retrieve_server_version()
        api._version = version
        return api

    def close(self) -> None:
        for api in self._clients:
            try:
                api.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def listing(self, scope: str, **filters) -> list[dict]:
        filters["label"] = f"{LABEL_SCOPE}={scope}"
        return self.api.containers(all=True, filters=filters)

    def resolve_images(self, specs: list[dict]) -> dict[str, str]:
        wanted: dict[str, list[str]] = {}
        for spec in specs:
            wanted.setdefault(spec["image"], []).append(spec["name"])
        resolved, missing = {}, []
        for reference, names in wanted.items():
            try:
                resolved[reference] = self.api.inspect_image(reference)["Id"]
            except NotFound:
                listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                missing.append(f"image {reference!r} (wanted by {listed})")
        if missing:
            raise SpecError(
                "not on this host: " + "; ".join(missing) + ". Images are built once and shipped to every host "
                "(docker load), never pulled: ship the image or fix the reference"
            )
        return resolved

    def check_networks(self, specs: list[dict]) -> None:
        missing = []
        for network in sorted({spec["network"] for spec in specs if spec.get("network")}):
            try:
                self.api.inspect_network(network)
            except NotFound:
                missing.append(network)
        if missing:
            raise SpecError(f"network(s) {', '.join(missing)} do not exist on this host; create them before the containers")

    def scope_volumes(self, scope: str) -> set[str]:
        result = self.api.volumes(filters={"label": f"{LABEL_SCOPE}={scope}"}) or {}
        return {volume["Name"] for volume in result.get("Volumes") or []}

    # -- operations, each run in a worker thread ----------------------------

    def create(self, spec: dict, scope: str, name: str | None = None) -> str:
        api = self.client()
        labels = dict(spec["labels"])
        labels.update({LABEL_SCOPE: scope, LABEL_HASH: spec["_hash"], LABEL_IMAGE: spec["_image_id"]})
        mounts = [
            Mount(
                target=mount["target"],
                source=mount["source"],
                type=mount["type"],
                read_only=bool(mount["read_only"]),
                labels={LABEL_SCOPE: scope} if mount["type"] == "volume" else None,
            )
            for mount in spec["mounts"]
        ]
        port_bindings: dict[str, list] = {}
        exposed = []
        for port in spec["ports"]:
            key = f"{port['container_port']}/{port['protocol']}"
            if key not in port_bindings:
                exposed.append((port["container_port"], port["protocol"]))
            port_bindings.setdefault(key, []).append((port["host_ip"], port["host_port"]))
        host_options = dict(
            mounts=mounts or None,
            port_bindings=port_bindings or None,
            restart_policy={"Name": spec["restart_policy"], "MaximumRetryCount": 0},
            mem_limit=spec.get("memory"),
            mem_reservation=spec.get("memory_reservation"),
            nano_cpus=spec.get("nano_cpus"),
            network_mode=spec.get("network"),
            init=True if spec.get("init") else None,
            cap_drop=spec["cap_drop"] or None,
            security_opt=spec["security_opt"] or None,
            read_only=True if spec.get("read_only") else None,
            tmpfs=spec["tmpfs"] or None,
            pids_limit=spec.get("pids_limit"),
            isolation=spec.get("isolation"),
        )
        host_config = api.create_host_config(**{key: value for key, value in host_options.items() if value is not None})
        healthcheck = None
        if spec.get("healthcheck"):
            check = spec["healthcheck"]
            healthcheck = {"test": check["test"]}
            for field in ("interval", "timeout", "start_period"):
                if check.get(field) is not None:
                    healthcheck[field] = int(check[field]) * NANO
            if check.get("retries") is not None:
                healthcheck["retries"] = int(check["retries"])
        created = api.create_container(
            image=spec["image"],
            name=name or spec["name"],
            command=spec.get("command"),
            hostname=spec.get("hostname"),
            user=spec.get("user"),
            environment=[f"{key}={value}" for key, value in sorted(spec["env"].items())] or None,
            labels=labels,
            ports=exposed or None,
            healthcheck=healthcheck,
            stop_timeout=spec.get("stop_timeout"),
            host_config=host_config,
            detach=True,
            use_config_proxy=False,
        )
        return created["Id"]

    def create_and_start(self, spec: dict, scope: str) -> None:
        try:
            container_id = self.create(spec, scope)
        except DockerException as error:
            if getattr(error, "status_code", None) == 409:
                raise SpecError(
                    f"a container named {spec['name']} exists but is not labelled {LABEL_SCOPE}={scope}; "
                    "mt5_containers never touches it: rename or remove it"
                ) from error
            raise
        self.client().start(container_id)

    def recreate(self, spec: dict, existing: dict, scope: str) -> None:
        api = self.client()
        next_name = spec["name"] + NEXT_SUFFIX
        container_id = self.create(spec, scope, name=next_name)
        try:
            self.remove(existing)
        except Exception:
            self._discard(container_id)
            raise
        api.rename(container_id, spec["name"])
        api.start(container_id)

    def _discard(self, container_id: str) -> None:
        try:
            self.client().remove_container(container_id, v=True, force=True)
        except Exception:  # pylint: disable=broad-except
            pass  # the next run removes a leftover -mt5farm-next container of the scope

    def remove(self, existing: dict) -> None:
        """Stop gracefully (the container's own stop timeout), then remove with its anonymous volumes."""
        api = self.client()
        try:
            if existing.get("State") in ("running", "restarting", "paused"):
                api.stop(existing["Id"])
            api.remove_container(existing["Id"], v=True, force=True)
        except NotFound:
            pass  # already gone

    def start(self, existing: dict) -> None:
        if existing.get("State") == "paused":
            self.client().unpause(existing["Id"])
        else:
            self.client().start(existing["Id"])

    def restart(self, spec: dict, existing: dict) -> None:
        timeout = spec.get("stop_timeout")
        self.client().restart(existing["Id"], timeout=10 if timeout is None else timeout)

    def remove_volume(self, name: str) -> None:
        self.client().remove_volume(name)

    # -- health ---------------------------------------------------------------

    def wait_healthy(self, scope: str, names: list[str], timeout: int) -> dict[str, dict]:
        """Wait until every name is running and healthy (or has no healthcheck).

        One filtered listing per poll. Returns the ones that did not make it, with details.
        """
        pending = set(names)
        deadline = time.monotonic() + timeout
        while pending:
            ready = self.listing(scope, status="running", health=["healthy", "none"])
            pending -= {container_name(entry) for entry in ready}
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        return {name: self.health_details(name) for name in sorted(pending)}

    def health_details(self, name: str) -> dict:
        try:
            state = self.api.inspect_container(name)["State"]
        except NotFound:
            return {"state": "missing", "health": None, "last_checks": []}
        health = state.get("Health") or {}
        checks = []
        for entry in (health.get("Log") or [])[-HEALTH_LOG_LINES:]:
            output = " ".join(str(entry.get("Output") or "").split())[:HEALTH_LOG_CHARS]
            checks.append(f"exit {entry.get('ExitCode')}: {output}" if output else f"exit {entry.get('ExitCode')}")
        details = {"state": state.get("Status"), "health": health.get("Status"), "last_checks": checks}
        if state.get("Status") != "running":
            details["exit_code"] = state.get("ExitCode")
        return details


def run_all(engine: Engine, parallelism: int, jobs: list[tuple[str, object, tuple]]) -> tuple[list[str], dict[str, str]]:
    """Run (name, function, args) jobs on a thread pool. Returns (done names, errors by name)."""
    done, errors = [], {}
    if not jobs:
        return done, errors
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(jobs)))) as pool:
        futures = {pool.submit(function, *args): name for name, function, args in jobs}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                future.result()
            except Exception as error:  # pylint: disable=broad-except
                errors[name] = describe(error)
            else:
                done.append(name)
    return sorted(done), errors


def summarize(errors: dict[str, str], shown: int = 5) -> str:
    """The first few errors for the message; all of them are in the `errors` return value."""
    items = sorted(errors.items())
    text = "; ".join(f"{name}: {message}" for name, message in items[:shown])
    if len(items) > shown:
        text += f"; and {len(items) - shown} more (see errors)"
    return text


def unhealthy_message(unhealthy: dict[str, dict], timeout: int) -> str:
    parts = []
    for name, details in list(unhealthy.items())[:5]:
        text = f"{name} (state {details['state']}, health {details['health'] or 'none'}"
        if "exit_code" in details:
            text += f", exit code {details['exit_code']}"
        text += ")"
        if details["last_checks"]:
            text += ": last checks: " + " | ".join(details["last_checks"])
        parts.append(text)
    more = f"; and {len(unhealthy) - 5} more (see unhealthy)" if len(unhealthy) > 5 else ""
    return f"{len(unhealthy)} container(s) did not come healthy within {timeout} s: " + "; ".join(parts) + more


# ---------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------


def result_lists(actions: dict[str, str]) -> dict:
    lists = {action: sorted(name for name, done in actions.items() if done == action) for action in ACTIONS}
    return lists


def diff_of(specs: list[dict], current: dict[str, dict]) -> dict:
    before = {
        name: {
            "config_hash": (entry.get("Labels") or {}).get(LABEL_HASH),
            "image": entry.get("Image"),
            "image_id": entry.get("ImageID"),
        }
        for name, entry in sorted(current.items())
    }
    after = {
        spec["name"]: {"config_hash": spec["_hash"], "image": spec["image"], "image_id": spec["_image_id"]}
        for spec in sorted(specs, key=lambda s: s["name"])
    }
    return {"before": before, "after": after}


def reconcile(module: AnsibleModule, engine: Engine) -> None:
    params = module.params
    scope = params["scope"]
    for option in ("batch_size", "parallelism", "health_timeout"):
        if params[option] < 1:
            module.fail_json(msg=f"{option} must be 1 or more, got {params[option]}")
    if not scope:
        module.fail_json(msg="scope must not be empty")

    try:
        specs = [normalize(container) for container in params["containers"]]
        check_unique(specs)
        image_ids = engine.resolve_images(specs)
        engine.check_networks(specs)
    except SpecError as error:
        module.fail_json(msg=str(error))
    for spec in specs:
        spec["_image_id"] = image_ids[spec["image"]]
        spec["_hash"] = config_hash(spec, spec["_image_id"])

    purge = list(dict.fromkeys(params["purge_volumes"]))
    in_use = {mount["source"]: spec["name"] for spec in specs for mount in spec["mounts"] if mount["type"] == "volume"}
    still_used = [f"{volume} (mounted by {in_use[volume]})" for volume in purge if volume in in_use]
    if still_used:
        module.fail_json(
            msg="purge_volumes names volumes of containers that are still wanted: "
            + ", ".join(still_used)
            + "; remove or disable the account first, or drop the purge flag"
        )

    current: dict[str, dict] = {}
    for entry in engine.listing(scope):
        current[container_name(entry)] = entry
    plan = make_plan(specs, current, params["restart"])
    for name in plan.unknown_restarts:
        module.warn(f"restart: {name} is not one of the desired containers; ignored")

    purged: list[str] = []
    if purge:
        managed = engine.scope_volumes(scope)
        for volume in purge:
            if volume in managed:
                purged.append(volume)
            else:
                module.warn(f"purge_volumes: {volume} is not a volume labelled {LABEL_SCOPE}={scope} (absent or not ours); left alone")

    diff = diff_of(specs, current)
    actions = plan.actions
    changed = bool(purged) or any(action != "unchanged" for action in actions.values())
    if module.check_mode or not changed:
        module.exit_json(changed=changed, actions=actions, purged_volumes=purged, diff=diff, **result_lists(actions))

    parallelism = params["parallelism"]
    done: dict[str, str] = {name: action for name, action in actions.items() if action == "unchanged"}
    errors: dict[str, str] = {}
    purged_done: list[str] = []

    def record(names: list[str], failures: dict[str, str]) -> None:
        for name in names:
            done[name] = actions[name]
        errors.update(failures)

    def fail(msg: str, **extra) -> None:
        module.fail_json(
            msg=msg,
            changed=bool(purged_done) or any(action != "unchanged" for action in done.values()),
            actions=done,
            purged_volumes=purged_done,
            diff=diff,
            errors=errors,
            **result_lists(done),
            **extra,
        )

    # 1. Removals first: they free memory, ports and names for what follows.
    record(*run_all(engine, parallelism, [(container_name(entry), engine.remove, (entry,)) for entry in plan.remove]))
    # 2. Purge the volumes the operator asked for, now that their containers are gone.
    if purged:
        purged_done, volume_errors = run_all(engine, parallelism, [(volume, engine.remove_volume, (volume,)) for volume in purged])
        errors.update({f"volume {volume}": message for volume, message in volume_errors.items()})
    # 3. Everything that is not an image update, concurrently.
    jobs = [(spec["name"], engine.create_and_start, (spec, scope)) for spec in plan.create]
    jobs += [(spec["name"], engine.recreate, (spec, existing, scope)) for spec, existing in plan.recreate]
    jobs += [(spec["name"], engine.start, (existing,)) for spec, existing in plan.start]
    jobs += [(spec["name"], engine.restart, (spec, existing)) for spec, existing in plan.restart]
    touched, failures = run_all(engine, parallelism, jobs)
    record(touched, failures)
    rolled = [spec["name"] for spec, _ in plan.roll]
    if errors:
        fail("mt5_containers could not apply every change: " + summarize(errors), not_updated=rolled)

    # 4. Image updates in health-gated batches.
    for index, batch in enumerate(batches(plan.roll, params["batch_size"])):
        names = [spec["name"] for spec, _ in batch]
        updated, failures = run_all(
            engine, parallelism, [(spec["name"], engine.recreate, (spec, existing, scope)) for spec, existing in batch]
        )
        record(updated, failures)
        remaining = rolled[rolled.index(names[-1]) + 1 :]
        if failures:
            fail(
                f"image update stopped at batch {index + 1} ({', '.join(names)}): "
                + summarize(failures)
                + (f"; not updated: {', '.join(remaining)}" if remaining else ""),
                not_updated=remaining,
            )
        unhealthy = engine.wait_healthy(scope, updated, params["health_timeout"])
        if unhealthy:
            fail(
                f"image update stopped at batch {index + 1} ({', '.join(names)}): "
                + unhealthy_message(unhealthy, params["health_timeout"])
                + (f"; left on the old image: {', '.join(remaining)}" if remaining else ""),
                unhealthy=unhealthy,
                not_updated=remaining,
            )

    # 5. Optionally wait for the rest of what was touched.
    if params["wait_healthy"] and touched:
        unhealthy = engine.wait_healthy(scope, touched, params["health_timeout"])
        if unhealthy:
            fail(unhealthy_message(unhealthy, params["health_timeout"]), unhealthy=unhealthy)

    module.exit_json(changed=True, actions=done, purged_volumes=purged_done, diff=diff, **result_lists(done))


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if DOCKER_IMPORT_ERROR is not None:
        module.fail_json(
            msg=missing_required_lib("docker (the Docker SDK for Python; on Debian and Ubuntu: install python3-docker)"),
            exception=DOCKER_IMPORT_ERROR,
        )
    try:
        engine = Engine(module.params["docker_host"], module.params["tls"])
    except SpecError as error:
        module.fail_json(msg=str(error))
    except DockerException as error:
        where = f" at {module.params['docker_host']}" if module.params["docker_host"] else ""
        module.fail_json(msg=f"cannot reach the Docker engine{where}: {describe(error)}")
    try:
        reconcile(module, engine)
    except DockerException as error:
        module.fail_json(msg=f"Docker engine error: {describe(error)}")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
