#!/usr/bin/python
# MT5 Farm: reconcile one host's account containers in one pass.
# SPDX-License-Identifier: GPL-3.0-or-later

# ruff: noqa: E402
# (E402: an Ansible module documents itself before its imports, as validate-modules requires.)
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
    before the next one starts. During the update the old container is kept, stopped,
    under C(<name>-mt5farm-prev); it is removed once the new one is healthy. A new
    container that does not come healthy within I(health_timeout) is removed and its old
    one renamed back and started (returned as I(rolled_back)), and the module fails,
    leaving the rest on the old image. Every account is served throughout but for its own
    stop-to-healthy gap. Everything else is done concurrently by I(parallelism) worker threads.
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
      extra_hosts:
        description:
          - Host names the container resolves to the given address (C(HostConfig.ExtraHosts), its
            C(/etc/hosts)), for example the MT5 terminal's update hosts to C(127.0.0.1).
          - Empty (the default) is left out of the config hash, so specs without it hash as before.
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
  pending_images:
    description:
      - Check mode only. Image references that this same run builds or ships before the
        module runs for real (the images stage, in a check run, builds nothing).
      - In check mode an image of this list that is not on the host yet is no error. Its
        containers are planned with it as created or recreated (the diff shows its image id
        as not on this host yet), and nothing changes.
      - Outside check mode it changes nothing; a missing image fails the module as always.
    type: list
    elements: str
    default: []
  pending_networks:
    description:
      - Check mode only, as I(pending_images), for networks this run creates before the
        module runs for real. In check mode a missing network of this list is no error;
        outside check mode a missing network fails the module as always.
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
  wait_created:
    description:
      - With I(wait_healthy), wait for the containers this run creates too. C(false) leaves them
        to a later C(mt5_containers_healthy) task and returns them as I(starting), so that the
        caller can route and list new accounts while they start; recreated, started and
        restarted containers are still waited for here.
    type: bool
    default: true
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
    description:
      - Reports the same actions without changing anything.
      - Images and networks the same run makes first are named in I(pending_images) and
        I(pending_networks); their containers are then reported as created or recreated.
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
starting:
  description:
    - Names of the containers created and started but not waited for (I(wait_created) false);
      wait for them with C(mt5_containers_healthy).
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
rolled_back:
  description:
    - Containers whose image update was undone because the new container did not come healthy
      in time - the old container, kept stopped during the update, serves again.
  type: list
  elements: str
  returned: failure
not_updated:
  description: Containers whose image update was not attempted because an earlier batch failed.
  type: list
  elements: str
  returned: failure
"""

from ansible.module_utils.mt5farm_containers.module import run_module


def main() -> None:
    """Everything but the documentation is in module_utils/mt5farm_containers/ (see library/README.md)."""
    run_module()


if __name__ == "__main__":
    main()
