"""Desired container specs: validation, the canonical form and the config hash (pure, no Docker).

A *spec* is one element of the module's ``containers`` option after Ansible's argument
validation: a dict with every documented field (unset ones ``None`` or their default).
:func:`normalize` makes it comparable; :func:`config_hash` is what the label
``mt5farm.config-hash`` stores. Reconciled specs also carry ``_image_id`` and ``_hash``
(set by :func:`hashed`), which the plan and the engine read.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

LABEL_SCOPE = "mt5farm.scope"
LABEL_HASH = "mt5farm.config-hash"
LABEL_IMAGE = "mt5farm.image-id"
RESERVED_LABELS = (LABEL_SCOPE, LABEL_HASH, LABEL_IMAGE)
# The image id a pending image stands in with (check mode, ``pending_images``): never a real
# id, so every container planned with it is created or recreated, as it will be.
PENDING_IMAGE_ID = "(not on this host yet: built or shipped by this run)"
# Bump only on purpose: a new value recreates every container of every farm.
HASH_VERSION = 1
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


class SpecError(Exception):
    """A desired spec (or option) that cannot be applied; the message says what to fix."""


def _string_map(container: str, field: str, values: dict[str, Any] | None) -> dict[str, str]:
    """Labels and env values as strings: numbers are converted, ``None`` is ``""``.

    Raises SpecError for a boolean (``true`` or ``"True"``? ambiguous: the operator quotes
    it) and for a list or dict value.
    """
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


def normalize(container: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the spec with strings where strings are meant and order-free lists sorted.

    Ports are sorted by (container_port, protocol, host_ip, host_port), mounts by (target,
    type, source), ``cap_drop`` and ``security_opt`` alphabetically; an empty ``command`` is
    ``None`` (the image's). Raises SpecError for an invalid Docker name, a reserved label or
    a value that is not a string (see :func:`_string_map`).
    """
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
    spec["extra_hosts"] = _string_map(name, "extra_hosts", spec.get("extra_hosts"))
    spec["ports"] = sorted(spec.get("ports") or [], key=lambda p: (p["container_port"], p["protocol"], p["host_ip"], p["host_port"]))
    spec["mounts"] = sorted(spec.get("mounts") or [], key=lambda m: (m["target"], m["type"], m["source"]))
    spec["cap_drop"] = sorted(spec.get("cap_drop") or [])
    spec["security_opt"] = sorted(spec.get("security_opt") or [])
    if not spec.get("command"):
        spec["command"] = None
    return spec


def _prune(value: Any) -> Any:
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


def canonical_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The part of a normalized spec that enters the hash: everything but the image reference."""
    pruned: dict[str, Any] = _prune({key: value for key, value in spec.items() if key != "image"})
    return pruned


def config_hash(spec: dict[str, Any], image_id: str) -> str:
    """sha256 hex digest (64 characters) of the canonical JSON of version, spec and image id."""
    payload = {"version": HASH_VERSION, "spec": canonical_spec(spec), "image_id": image_id}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hashed(spec: dict[str, Any], image_id: str) -> dict[str, Any]:
    """The normalized spec with ``_image_id`` and ``_hash`` added (what the plan compares).

    The hash is taken of the spec *with* ``_image_id`` in it, as it always was: every
    running container's label was computed so, and another payload would recreate them all.
    """
    result = dict(spec, _image_id=image_id)
    result["_hash"] = config_hash(result, image_id)
    return result


def container_name(listing: dict[str, Any]) -> str:
    """The container's own name from a ``/containers/json`` entry (link aliases have two slashes)."""
    names = [name[1:] for name in listing.get("Names") or [] if name.count("/") == 1]
    return names[0] if names else str((listing.get("Names") or ["/" + listing["Id"]])[0]).lstrip("/")


def check_unique(specs: list[dict[str, Any]]) -> None:
    """Names and published ``host_ip:host_port/protocol`` must be unique on the host; SpecError otherwise."""
    seen: set[str] = set()
    for spec in specs:
        if spec["name"] in seen:
            raise SpecError(f"container {spec['name']} is listed twice")
        seen.add(spec["name"])
    bindings: dict[tuple[str, int, str], str] = {}
    for spec in specs:
        for port in spec["ports"]:
            key = (port["host_ip"], port["host_port"], port["protocol"])
            if key in bindings and bindings[key] != spec["name"]:
                raise SpecError(
                    f"containers {bindings[key]} and {spec['name']} both publish {port['host_ip']}:{port['host_port']}/{port['protocol']}"
                )
            bindings[key] = spec["name"]


def check_purge(specs: list[dict[str, Any]], purge: list[str]) -> None:
    """A volume to purge must not be mounted by a desired container; SpecError naming them otherwise."""
    in_use = {mount["source"]: spec["name"] for spec in specs for mount in spec["mounts"] if mount["type"] == "volume"}
    still_used = [f"{volume} (mounted by {in_use[volume]})" for volume in purge if volume in in_use]
    if still_used:
        raise SpecError(
            "purge_volumes names volumes of containers that are still wanted: "
            + ", ".join(still_used)
            + "; remove or disable the account first, or drop the purge flag"
        )
