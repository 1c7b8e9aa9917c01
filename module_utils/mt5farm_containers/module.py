"""The module's run: options, the Docker SDK check, the engine, one reconcile pass.

``library/mt5_containers.py``'s ``main()`` calls :func:`run_module`; so do the tests, in-process.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from .arguments import ARGUMENT_SPEC
from .engine import DOCKER_IMPORT_ERROR, DockerException, Engine
from .reconcile import reconcile
from .runner import describe
from .spec import SpecError


def run_module() -> None:
    """Parse the options, reach the engine and reconcile; always exits through exit_json/fail_json."""
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
