"""The module's argument_spec (what DOCUMENTATION in library/mt5_containers.py mirrors) and the checks it cannot express."""

from __future__ import annotations

from typing import Any

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
    extra_hosts=dict(type="dict", default={}),
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
    pending_images=dict(type="list", elements="str", default=[]),
    pending_networks=dict(type="list", elements="str", default=[]),
    batch_size=dict(type="int", default=1),
    wait_healthy=dict(type="bool", default=False),
    wait_created=dict(type="bool", default=True),
    health_timeout=dict(type="int", default=120),
    parallelism=dict(type="int", default=8),
    docker_host=dict(type="str"),
    tls=dict(type="dict", options=TLS_OPTIONS),
)
# library/mt5_containers_healthy.py: wait for named containers of a scope (those a reconcile
# with wait_created false returned as ``starting``).
HEALTHY_ARGUMENT_SPEC = dict(
    scope=dict(type="str", required=True),
    names=dict(type="list", elements="str", required=True),
    health_timeout=dict(type="int", default=120),
    docker_host=dict(type="str"),
    tls=dict(type="dict", options=TLS_OPTIONS),
)


def option_error(params: dict[str, Any]) -> str | None:
    """What is wrong with the module's own options beyond their types, or None.

    ``batch_size``, ``parallelism`` and ``health_timeout`` must be 1 or more, and ``scope``
    (the label value that says which containers are this module's to manage) not empty.
    """
    for option in ("batch_size", "parallelism", "health_timeout"):
        if params[option] < 1:
            return f"{option} must be 1 or more, got {params[option]}"
    if not params["scope"]:
        return "scope must not be empty"
    return None
