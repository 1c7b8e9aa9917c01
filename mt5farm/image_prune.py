"""Which of the farm's images a host may drop (playbooks/prune.yml).

Every image update leaves the previous account image (``mt5farm/account:<variant>-<hash>``)
and, with the offline set, the previous platform images (``mt5farm/<service>:debian13-<hash>``)
on each host. Per repository the farm owns, a host keeps:

* every image a container uses, running or stopped (also an update's ``*-mt5farm-prev``);
* the newest image (what the next converge runs, also when no container runs it yet);
* the ``keep`` newest of the others (default 2): what a rollback goes back to;

and drops the rest. Only the named repositories are looked at: upstream images
(``nginx:1.26.3``), untagged build layers and images of other projects never are. An image
is "dropped" from a repository by removing its tags there; an image also tagged elsewhere
keeps its other tags (and its layers).

Image archives left in the archive directory (``<variant>-<hash>.tar`` by mt5_image,
``node-exporter-<tag>.tar`` by platform_images) go with their images: an archive named after
a dropped tag is removed, one named after a kept tag or after nothing known is left alone.

Pure functions: no Ansible state; the filter shim is filter_plugins/mt5_operations.py.
"""

from __future__ import annotations

import datetime
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mt5farm.errors import FarmError
from mt5farm.values import is_int, type_name

KEEP_IN_USE = "in use by a container"
KEEP_NEWEST = "newest"
KEEP_PREVIOUS = "previous (kept for rollback)"


def _split(ref: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag); the colon of a registry port is not a tag separator."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repo, tag


def _created(value: Any, where: str) -> float:
    """An image's creation time as Unix seconds: a number (docker_host_info) or an ISO 8601 text
    (``docker inspect``: nanoseconds and ``Z``)."""
    if (is_int(value) or isinstance(value, float)) and value >= 0:
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
        if match:
            whole = datetime.datetime.fromisoformat(match[1] + ("+00:00" if match[3] == "Z" else match[3]))
            return whole.timestamp() + float(f"0.{match[2] or 0}")
    raise FarmError(f"mt5_prune_images: {where} has Created {value!r}; expected Unix seconds or an ISO 8601 time")


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")


def mt5_prune_images(
    images: Sequence[Mapping[str, Any]], in_use: Iterable[str], repositories: Sequence[str], keep: int = 2
) -> dict[str, Any]:
    """What a host keeps and removes of ``repositories``' images.

    ``images``: the host's images as ``docker_host_info`` lists them (``Id``, ``RepoTags``,
    ``Created``); ``in_use``: the image ids its containers run (``ImageID``, any state);
    ``repositories``: the repositories the farm owns (``mt5farm/account``, ...); ``keep``:
    how many images before the newest each repository keeps for rollback (at least 0).

    Returns ``{"remove": [ref, ...], "keep": {ref: reason}, "repositories": {repo: {"keep":
    [ref, ...], "remove": [ref, ...]}}}``, refs ``repo:tag``, newest first within a repository.
    """
    if not is_int(keep) or keep < 0:
        raise FarmError(f"mt5_prune_images: keep must be a whole number of images, 0 or more, got {keep!r}: e.g. -e mt5_prune_keep=2")
    if isinstance(repositories, str) or not isinstance(repositories, Sequence) or not all(isinstance(r, str) and r for r in repositories):
        raise FarmError(f"mt5_prune_images: repositories must be a list of repository names (mt5farm/account), got {repositories!r}")
    if not isinstance(images, Sequence) or isinstance(images, str):
        raise FarmError(f"mt5_prune_images: images must be the list docker_host_info gives (images: true), got {type_name(images)}")
    used = {_short(str(image_id)) for image_id in in_use if image_id}
    # repo -> [(created, id, [refs])]
    by_repo: dict[str, list[tuple[float, str, list[str]]]] = {repo: [] for repo in repositories}
    for index, image in enumerate(images):
        if not isinstance(image, Mapping) or "Id" not in image:
            raise FarmError(f"mt5_prune_images: images[{index}] is not an image of docker_host_info (no Id): {image!r}")
        refs: dict[str, list[str]] = {}
        for ref in image.get("RepoTags") or []:
            repo, _ = _split(str(ref))
            if repo in by_repo:
                refs.setdefault(repo, []).append(str(ref))
        for repo, tags in refs.items():
            by_repo[repo].append((_created(image.get("Created"), f"image {image['Id']}"), _short(str(image["Id"])), sorted(tags)))
    remove: list[str] = []
    kept: dict[str, str] = {}
    report: dict[str, dict[str, list[str]]] = {}
    for repo in repositories:
        entries = sorted(by_repo[repo], key=lambda entry: (entry[0], entry[1]), reverse=True)
        report[repo] = {"keep": [], "remove": []}
        previous = 0
        for position, (_, image_id, tags) in enumerate(entries):
            if image_id in used:
                reason = KEEP_IN_USE
            elif position == 0:
                reason = KEEP_NEWEST
            elif previous < keep:
                reason = KEEP_PREVIOUS
                previous += 1
            else:
                reason = ""
            for tag in tags:
                if reason:
                    kept[tag] = reason
                    report[repo]["keep"].append(tag)
                else:
                    remove.append(tag)
                    report[repo]["remove"].append(tag)
    return {"remove": remove, "keep": kept, "repositories": report}


def _archive_names(ref: str) -> set[str]:
    """The archive stems an image tag may have: ``<tag>`` (mt5_image) and ``<repo basename>-<tag>`` (platform_images)."""
    repo, tag = _split(ref)
    return {tag, f"{posixpath.basename(repo)}-{tag}"}


def mt5_prune_archives(paths: Sequence[str], plan: Mapping[str, Any]) -> list[str]:
    """The archive files (``*.tar``) of ``paths`` that belong to images ``plan`` removes.

    ``plan``: what ``mt5_prune_images`` returned. An archive whose name (without ``.tar``)
    is a removed tag, or ``<repository basename>-<removed tag>``, is listed, unless it is also
    the name of a kept tag's archive; any other file is not.
    """
    if not isinstance(plan, Mapping) or "remove" not in plan or "keep" not in plan:
        raise FarmError(f"mt5_prune_archives: plan must be what mt5_prune_images returned, got {type_name(plan)}")
    removed = set().union(*(_archive_names(ref) for ref in plan["remove"])) if plan["remove"] else set()
    kept = set().union(*(_archive_names(ref) for ref in plan["keep"])) if plan["keep"] else set()
    out = []
    for path in paths:
        name = posixpath.basename(str(path))
        if name.endswith(".tar") and name[: -len(".tar")] in removed - kept:
            out.append(str(path))
    return sorted(out)
