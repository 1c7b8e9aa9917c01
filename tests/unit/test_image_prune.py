"""mt5farm.image_prune (mt5_prune_images, mt5_prune_archives): what a host keeps of the farm's images."""

from __future__ import annotations

from typing import Any

import pytest

from mt5farm.errors import FarmError
from mt5farm.image_prune import KEEP_IN_USE, KEEP_NEWEST, KEEP_PREVIOUS, mt5_prune_archives, mt5_prune_images

REPOS = ["mt5farm/account", "mt5farm/nginx"]


def image(n: int, *tags: str, created: Any = None) -> dict[str, Any]:
    return {"Id": f"sha256:{n:064x}", "RepoTags": list(tags), "Created": 1_000 + n if created is None else created}


def account(n: int) -> dict[str, Any]:
    return image(n, f"mt5farm/account:simulator-{n:04d}")


def test_keeps_the_newest_and_n_previous_and_removes_the_older_ones() -> None:
    plan = mt5_prune_images([account(n) for n in range(1, 7)], [], REPOS, keep=2)
    assert plan["repositories"]["mt5farm/account"] == {
        "keep": ["mt5farm/account:simulator-0006", "mt5farm/account:simulator-0005", "mt5farm/account:simulator-0004"],
        "remove": ["mt5farm/account:simulator-0003", "mt5farm/account:simulator-0002", "mt5farm/account:simulator-0001"],
    }
    assert plan["keep"]["mt5farm/account:simulator-0006"] == KEEP_NEWEST
    assert plan["keep"]["mt5farm/account:simulator-0005"] == KEEP_PREVIOUS


def test_an_image_a_container_uses_is_kept_whatever_its_age_and_does_not_count_as_a_previous_one() -> None:
    plan = mt5_prune_images([account(n) for n in range(1, 7)], [f"sha256:{1:064x}", f"{4:064x}"], REPOS, keep=1)
    assert plan["keep"] == {
        "mt5farm/account:simulator-0006": KEEP_NEWEST,
        "mt5farm/account:simulator-0005": KEEP_PREVIOUS,
        "mt5farm/account:simulator-0004": KEEP_IN_USE,
        "mt5farm/account:simulator-0001": KEEP_IN_USE,
    }
    assert plan["remove"] == ["mt5farm/account:simulator-0003", "mt5farm/account:simulator-0002"]


def test_keep_zero_leaves_the_newest_and_what_runs() -> None:
    plan = mt5_prune_images([account(n) for n in range(1, 4)], [f"sha256:{2:064x}"], REPOS, keep=0)
    assert set(plan["keep"]) == {"mt5farm/account:simulator-0003", "mt5farm/account:simulator-0002"}
    assert plan["remove"] == ["mt5farm/account:simulator-0001"]


def test_other_repositories_upstream_and_untagged_images_are_never_touched() -> None:
    images = [
        image(1, "nginx:1.26.3"),
        image(2, "mt5farm/testhost:debian12-aaaa"),
        image(3),
        {"Id": "sha256:" + "f" * 64, "RepoTags": None, "Created": 5},
        image(4, "mt5farm/account-other:x"),
        image(5, "registry.example:5000/mt5farm/account:old"),
    ]
    plan = mt5_prune_images(images, [], REPOS, keep=0)
    assert plan == {
        "remove": [],
        "keep": {},
        "repositories": {"mt5farm/account": {"keep": [], "remove": []}, "mt5farm/nginx": {"keep": [], "remove": []}},
    }


def test_an_image_with_several_tags_is_decided_once_per_repository() -> None:
    images = [
        image(1, "mt5farm/nginx:debian13-old", "mt5farm/nginx:alias", "elsewhere/nginx:keepme"),
        image(2, "mt5farm/nginx:debian13-new"),
    ]
    plan = mt5_prune_images(images, [], REPOS, keep=0)
    assert plan["remove"] == ["mt5farm/nginx:alias", "mt5farm/nginx:debian13-old"]
    assert plan["keep"] == {"mt5farm/nginx:debian13-new": KEEP_NEWEST}


def test_iso_creation_times_order_as_numbers_do() -> None:
    images = [
        image(1, "mt5farm/account:a", created="2026-12-01T10:00:00.123456789Z"),
        image(2, "mt5farm/account:b", created="2026-12-02T09:00:00+02:00"),
        image(3, "mt5farm/account:c", created="2026-12-01T09:59:59Z"),
    ]
    assert mt5_prune_images(images, [], REPOS, keep=1)["remove"] == ["mt5farm/account:c"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (([], [], REPOS, -1), "keep must be a whole number"),
        (([], [], REPOS, "2"), "keep must be a whole number"),
        (([], [], "mt5farm/account", 2), "repositories must be a list"),
        (("images", [], REPOS, 2), "images must be the list"),
        (([{"RepoTags": []}], [], REPOS, 2), "images[0] is not an image"),
        (([image(1, "mt5farm/account:a", created="yesterday")], [], REPOS, 2), "has Created 'yesterday'"),
    ],
)
def test_bad_input_is_refused_naming_the_filter_and_the_value(args: tuple, says: str) -> None:
    with pytest.raises(FarmError, match="mt5_prune_images") as error:
        mt5_prune_images(*args)
    assert says in str(error.value)


def test_archives_of_removed_images_go_and_the_others_stay() -> None:
    plan = {
        "remove": ["mt5farm/account:simulator-0001", "mt5farm/node-exporter:debian13-old"],
        "keep": {"mt5farm/account:simulator-0002": KEEP_NEWEST, "mt5farm/node-exporter:debian13-new": KEEP_NEWEST},
    }
    paths = [
        "/opt/mt5farm/images/simulator-0001.tar",
        "/opt/mt5farm/images/simulator-0002.tar",
        "/opt/mt5farm/images/node-exporter-debian13-old.tar",
        "/opt/mt5farm/images/node-exporter-debian13-new.tar",
        "/opt/mt5farm/images/node-exporter-v1.9.0.tar",
        "/opt/mt5farm/images/simulator-0001.tar.part",
        "/opt/mt5farm/images/notes.txt",
    ]
    assert mt5_prune_archives(paths, plan) == [
        "/opt/mt5farm/images/node-exporter-debian13-old.tar",
        "/opt/mt5farm/images/simulator-0001.tar",
    ]
    assert mt5_prune_archives(paths, {"remove": [], "keep": {}}) == []
    with pytest.raises(FarmError, match="mt5_prune_archives: plan must be"):
        mt5_prune_archives(paths, {"remove": []})
