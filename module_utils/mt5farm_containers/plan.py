"""The plan: what to do to every container, from the desired specs and one listing (pure, no Docker).

``specs`` are hashed specs (see :func:`.spec.hashed`); ``current`` maps a container name to
its ``/containers/json`` entry (keys ``Id``, ``Names``, ``State``, ``Image``, ``ImageID``,
``Labels``) for every container of the scope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from .spec import LABEL_HASH, LABEL_SCOPE

ACTIONS = ("created", "recreated", "restarted", "started", "removed", "unchanged")

Spec = dict[str, Any]
Listed = dict[str, Any]
T = TypeVar("T")


@dataclass
class Plan:
    """Every container's action, and the work grouped by how it is applied."""

    actions: dict[str, str] = field(default_factory=dict)  # name -> one of ACTIONS
    create: list[Spec] = field(default_factory=list)
    recreate: list[tuple[Spec, Listed]] = field(default_factory=list)  # config changed: concurrently
    roll: list[tuple[Spec, Listed]] = field(default_factory=list)  # image changed: in health-gated batches, by name
    start: list[tuple[Spec, Listed]] = field(default_factory=list)
    restart: list[tuple[Spec, Listed]] = field(default_factory=list)
    remove: list[Listed] = field(default_factory=list)
    unknown_restarts: list[str] = field(default_factory=list)  # names in `restart` that are not wanted

    @property
    def changes(self) -> bool:
        """Whether any container would change."""
        return any(action != "unchanged" for action in self.actions.values())


def make_plan(specs: list[Spec], current: dict[str, Listed], restart: list[str]) -> Plan:
    """Decide every container's action (the table in library/README.md, "The hash rule").

    A hash label that differs, or a ``dead``/``removing`` container, is a recreate: rolled
    when the listed image id differs from the wanted one, otherwise concurrent. An equal hash
    that is not running is started; running and named in ``restart``, restarted. A container
    of the scope that is not wanted is removed.
    """
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


def purge_targets(purge: list[str], managed: set[str], scope: str) -> tuple[list[str], list[str]]:
    """The volumes to purge (in the order asked, duplicates dropped) and a warning per one left alone.

    Only volumes labelled with the scope (``managed``) are purged: another is absent or not ours.
    """
    purged: list[str] = []
    warnings: list[str] = []
    for volume in dict.fromkeys(purge):
        if volume in managed:
            purged.append(volume)
        else:
            warnings.append(f"purge_volumes: {volume} is not a volume labelled {LABEL_SCOPE}={scope} (absent or not ours); left alone")
    return purged, warnings


def batches(items: list[T], size: int) -> list[list[T]]:
    """``items`` in order, ``size`` at a time (the last batch may be shorter); size >= 1."""
    return [items[index : index + size] for index in range(0, len(items), size)]


def result_lists(actions: dict[str, str]) -> dict[str, list[str]]:
    """One sorted list of names per action (the module's ``created``, ``recreated``, ... returns)."""
    return {action: sorted(name for name, done in actions.items() if done == action) for action in ACTIONS}


def diff_of(specs: list[Spec], current: dict[str, Listed]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"before": {name: {config_hash, image, image_id}}, "after": {...}}`` (what --diff shows)."""
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
