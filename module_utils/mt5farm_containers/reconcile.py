"""One reconcile pass: validate, plan, apply (library/README.md, "Order of a run").

:func:`reconcile` is the module's body; :func:`validate` and :func:`apply` are its stages.
``params`` are the module's options after Ansible's argument validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from .arguments import option_error
from .plan import Plan, batches, diff_of, make_plan, purge_targets, result_lists
from .runner import Job, run_all, summarize, unhealthy_message
from .spec import SpecError, check_purge, check_unique, container_name, hashed, normalize

if TYPE_CHECKING:  # only for the annotations: the module imports AnsibleModule itself
    from ansible.module_utils.basic import AnsibleModule

    from .engine import Engine


def validate(params: dict[str, Any], engine: Engine, check_mode: bool = False) -> list[dict[str, Any]]:
    """The desired specs, normalized and hashed; SpecError for anything that cannot be applied.

    Checked before anything changes, in this order: the options, each spec, unique names and
    host ports, the images (one inspection per distinct reference) and networks on the host,
    and that no volume to purge is still mounted by a desired container. In check mode only,
    a missing image or network named in ``pending_images``/``pending_networks`` (this run
    makes it before the module runs for real) is no error: its containers are planned as
    created or recreated. Outside check mode those options change nothing.
    """
    message = option_error(params)
    if message:
        raise SpecError(message)
    specs = [normalize(container) for container in params["containers"]]
    check_unique(specs)
    image_ids = engine.resolve_images(specs, pending=params["pending_images"] if check_mode else ())
    engine.check_networks(specs, pending=params["pending_networks"] if check_mode else ())
    specs = [hashed(spec, image_ids[spec["image"]]) for spec in specs]
    check_purge(specs, list(dict.fromkeys(params["purge_volumes"])))
    return specs


@dataclass
class Outcome:
    """What :func:`apply` did: per container its action, the volumes purged, the errors.

    ``failure`` is the message when it stopped short, ``extra`` the failure's own returns
    (``unhealthy``, ``rolled_back``, ``not_updated``).
    """

    actions: dict[str, str] = field(default_factory=dict)
    purged_volumes: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)  # image updates undone: the old container serves again
    errors: dict[str, str] = field(default_factory=dict)
    starting: list[str] = field(default_factory=list)  # created and not waited for (wait_created false)
    failure: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.purged_volumes or self.rolled_back) or any(action != "unchanged" for action in self.actions.values())

    def record(self, plan: Plan, names: list[str], errors: dict[str, str]) -> None:
        """Names done take their planned action; errors are kept by name."""
        for name in names:
            self.actions[name] = plan.actions[name]
        self.errors.update(errors)

    def stop(self, message: str, **extra: Any) -> Outcome:
        self.failure = message
        self.extra = extra
        return self


def roll_back(engine: Engine, outcome: Outcome, unhealthy: dict[str, dict[str, Any]], scope: str, timeout: int, parallelism: int) -> str:
    """Put the old containers of the ``unhealthy`` ones back (image updates undone); the message says how it went.

    The old containers served before the update, so they are waited for again: a roll back
    that does not come healthy either is named as such (``outcome.errors``).
    """
    back, errors = run_all(parallelism, [(name, partial(engine.roll_back, name)) for name in sorted(unhealthy)])
    outcome.rolled_back = sorted(back)
    outcome.errors.update({name: f"roll back failed: {message}" for name, message in errors.items()})
    still = engine.wait_healthy(scope, back, timeout) if back else {}
    message = unhealthy_message(unhealthy, timeout) + f"; rolled back to the old image: {', '.join(sorted(back)) or 'none'}"
    if still:
        message += f" (not healthy again within {timeout} s: {', '.join(sorted(still))})"
    if errors:
        message += "; " + summarize({name: f"roll back failed: {error}" for name, error in errors.items()})
    return message


def apply(engine: Engine, plan: Plan, purge: list[str], scope: str, params: dict[str, Any]) -> Outcome:
    """Carry the plan out; stops at the first stage that fails (the Outcome says where).

    1. removals (they free memory, ports and names); 2. the volumes to purge; 3. creates,
    config recreates, starts and restarts, concurrently; 4. image updates in health-gated
    batches; 5. with ``wait_healthy``, the wait for what stage 3 touched (the created ones only
    with ``wait_created``; else they are returned as ``starting``).
    """
    parallelism = params["parallelism"]
    timeout = params["health_timeout"]
    outcome = Outcome(actions={name: action for name, action in plan.actions.items() if action == "unchanged"})

    outcome.record(plan, *run_all(parallelism, [(container_name(entry), partial(engine.remove, entry)) for entry in plan.remove]))
    if purge:
        purged, volume_errors = run_all(parallelism, [(volume, partial(engine.remove_volume, volume)) for volume in purge])
        outcome.purged_volumes = purged
        outcome.errors.update({f"volume {volume}": message for volume, message in volume_errors.items()})

    jobs: list[Job] = [(spec["name"], partial(engine.create_and_start, spec, scope)) for spec in plan.create]
    jobs += [(spec["name"], partial(engine.recreate, spec, existing, scope)) for spec, existing in plan.recreate]
    jobs += [(spec["name"], partial(engine.start, existing)) for spec, existing in plan.start]
    jobs += [(spec["name"], partial(engine.restart, spec, existing)) for spec, existing in plan.restart]
    touched, failures = run_all(parallelism, jobs)
    outcome.record(plan, touched, failures)
    rolled = [spec["name"] for spec, _ in plan.roll]
    if outcome.errors:
        return outcome.stop("mt5_containers could not apply every change: " + summarize(outcome.errors), not_updated=rolled)

    for index, batch in enumerate(batches(plan.roll, params["batch_size"])):
        names = [spec["name"] for spec, _ in batch]
        # Each old container is kept (stopped) until its new one is healthy (Engine.update).
        updated, failures = run_all(
            parallelism, [(spec["name"], partial(engine.update, spec, existing, scope)) for spec, existing in batch]
        )
        unhealthy = engine.wait_healthy(scope, updated, timeout) if updated else {}
        healthy = [name for name in updated if name not in unhealthy]
        run_all(parallelism, [(name, partial(engine.commit, name)) for name in healthy])
        outcome.record(plan, healthy, failures)
        remaining = rolled[rolled.index(names[-1]) + 1 :]
        stopped = f"image update stopped at batch {index + 1} ({', '.join(names)}): "
        if failures and not unhealthy:
            return outcome.stop(
                stopped + summarize(failures) + (f"; not updated: {', '.join(remaining)}" if remaining else ""),
                not_updated=remaining,
            )
        if unhealthy:
            return outcome.stop(
                stopped
                + roll_back(engine, outcome, unhealthy, scope, timeout, parallelism)
                + (f"; {summarize(failures)}" if failures else "")
                + (f"; left on the old image: {', '.join(remaining)}" if remaining else ""),
                unhealthy=unhealthy,
                rolled_back=outcome.rolled_back,
                not_updated=remaining,
            )

    waited, outcome.starting = split_created(touched, plan.actions, params["wait_created"])
    if params["wait_healthy"] and waited:
        unhealthy = engine.wait_healthy(scope, waited, timeout)
        if unhealthy:
            return outcome.stop(unhealthy_message(unhealthy, timeout), unhealthy=unhealthy)
    return outcome


def split_created(touched: list[str], actions: dict[str, str], wait_created: bool) -> tuple[list[str], list[str]]:
    """(to wait for now, ``starting``): with ``wait_created`` false, the containers this run
    created (new accounts) are left to a later wait (library/mt5_containers_healthy.py), so the
    caller can route and list them while they start; every other touched container is waited
    for now, as a rolled batch is, so a bad change stops the run before later hosts."""
    if wait_created:
        return touched, []
    created = sorted(name for name in touched if actions.get(name) == "created")
    return [name for name in touched if name not in created], created


def reconcile(module: AnsibleModule, engine: Engine) -> None:
    """Validate, plan, apply; exits the module (check mode and the no-op path after the plan)."""
    params = module.params
    scope = params["scope"]
    try:
        specs = validate(params, engine, check_mode=module.check_mode)
    except SpecError as error:
        module.fail_json(msg=str(error))

    current = {container_name(entry): entry for entry in engine.listing(scope)}
    plan = make_plan(specs, current, params["restart"])
    for name in plan.unknown_restarts:
        module.warn(f"restart: {name} is not one of the desired containers; ignored")
    purge = list(dict.fromkeys(params["purge_volumes"]))
    purged, warnings = purge_targets(purge, engine.scope_volumes(scope) if purge else set(), scope)
    for warning in warnings:
        module.warn(warning)
    diff = diff_of(specs, current)
    changed = bool(purged) or plan.changes
    if module.check_mode or not changed:
        module.exit_json(changed=changed, actions=plan.actions, purged_volumes=purged, diff=diff, starting=[], **result_lists(plan.actions))

    outcome = apply(engine, plan, purged, scope, params)
    done = {
        "actions": outcome.actions,
        "purged_volumes": outcome.purged_volumes,
        "diff": diff,
        "starting": outcome.starting,
        **result_lists(outcome.actions),
    }
    if outcome.failure is not None:
        module.fail_json(msg=outcome.failure, changed=outcome.changed, errors=outcome.errors, **done, **outcome.extra)
    module.exit_json(changed=True, **done)
