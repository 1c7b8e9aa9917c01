"""The modules' runs: options, the Docker SDK check, the engine, then one reconcile pass
(:func:`run_module`, ``library/mt5_containers.py``) or one wait for named containers
(:func:`run_healthy_module`, ``library/mt5_containers_healthy.py``). The tests call both
in-process.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from .arguments import ARGUMENT_SPEC, HEALTHY_ARGUMENT_SPEC
from .engine import DOCKER_IMPORT_ERROR, DockerException, Engine
from .reconcile import reconcile
from .runner import describe, unhealthy_message
from .spec import SpecError


def connect(module: AnsibleModule) -> Engine:
    """The engine of ``docker_host`` (or the environment's); fails the module with a sentence when it cannot."""
    if DOCKER_IMPORT_ERROR is not None:
        module.fail_json(
            msg=missing_required_lib("docker (the Docker SDK for Python; on Debian and Ubuntu: install python3-docker)"),
            exception=DOCKER_IMPORT_ERROR,
        )
    try:
        return Engine(module.params["docker_host"], module.params["tls"])
    except SpecError as error:
        module.fail_json(msg=str(error))
    except DockerException as error:
        where = f" at {module.params['docker_host']}" if module.params["docker_host"] else ""
        module.fail_json(msg=f"cannot reach the Docker engine{where}: {describe(error)}")
    raise AssertionError("fail_json exits")  # pragma: no cover


def run_module() -> None:
    """Parse the options, reach the engine and reconcile; always exits through exit_json/fail_json."""
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    engine = connect(module)
    try:
        reconcile(module, engine)
    except DockerException as error:
        module.fail_json(msg=f"Docker engine error: {describe(error)}")
    finally:
        engine.close()


def run_healthy_module() -> None:
    """Wait until the named containers of the scope are healthy; fail naming those that are not.

    Changes nothing (``changed`` is always false). Check mode waits for nothing: the
    containers a check run reports as created do not exist.
    """
    module = AnsibleModule(argument_spec=HEALTHY_ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if params["health_timeout"] < 1 or not params["scope"]:
        module.fail_json(msg="health_timeout must be 1 or more and scope not empty")
    names = sorted(set(params["names"]))
    if module.check_mode or not names:
        module.exit_json(changed=False, healthy=[])
    engine = connect(module)
    try:
        unhealthy = engine.wait_healthy(params["scope"], names, params["health_timeout"])
    except DockerException as error:
        module.fail_json(msg=f"Docker engine error: {describe(error)}")
    finally:
        engine.close()
    healthy = [name for name in names if name not in unhealthy]
    if unhealthy:
        module.fail_json(msg=unhealthy_message(unhealthy, params["health_timeout"]), changed=False, healthy=healthy, unhealthy=unhealthy)
    module.exit_json(changed=False, healthy=healthy)
