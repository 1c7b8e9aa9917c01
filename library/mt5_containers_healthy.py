#!/usr/bin/python
# MT5 Farm: wait until named containers of a scope are healthy.
# SPDX-License-Identifier: GPL-3.0-or-later

# ruff: noqa: E402
# (E402: an Ansible module documents itself before its imports, as validate-modules requires.)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mt5_containers_healthy
short_description: Wait until named containers of one scope are healthy
description:
  - Waits until every named container of the I(scope) runs and Docker calls it C(healthy)
    (or it has no healthcheck), and fails naming each one that does not within
    I(health_timeout), with its state, health and last health check outputs.
  - The second half of a C(mt5_containers) run with C(wait_created=false), which returns the
    containers it created as C(starting); the caller routes and lists them meanwhile.
  - Before Docker's first check (one healthcheck interval after the start) the healthcheck's
    own test is run in the container, as C(mt5_containers) does, and passing it counts.
  - Changes nothing. In check mode, and for an empty I(names), it waits for nothing.
author:
  - MT5 Farm
requirements:
  - Docker SDK for Python 5.0 or newer (C(python3-docker) on Debian and Ubuntu hosts).
  - Docker Engine 20.10 or newer (API 1.41).
options:
  scope:
    description: Value of the C(mt5farm.scope) label of the containers to wait for.
    type: str
    required: true
  names:
    description: Container names.
    type: list
    elements: str
    required: true
  health_timeout:
    description: Seconds to wait for all of them.
    type: int
    default: 120
  docker_host:
    description: The Docker engine, as for C(mt5_containers); default the environment's.
    type: str
  tls:
    description: Mutual TLS to I(docker_host), as for C(mt5_containers).
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
"""

EXAMPLES = r"""
- name: Start new accounts without waiting for them
  mt5_containers:
    scope: accounts
    containers: "{{ specs }}"
    wait_healthy: true
    wait_created: false
  register: reconcile

- name: Wait for them after their routes are live
  mt5_containers_healthy:
    scope: accounts
    names: "{{ reconcile.starting }}"
    health_timeout: 420
"""

RETURN = r"""
healthy:
  description: Names of the containers found healthy.
  type: list
  elements: str
  returned: always
unhealthy:
  description: Container name to its state, health status and last health check outputs.
  type: dict
  returned: failure
"""

from ansible.module_utils.mt5farm_containers.module import run_healthy_module


def main() -> None:
    """The logic is in module_utils/mt5farm_containers/ (see library/README.md)."""
    run_healthy_module()


if __name__ == "__main__":
    main()
