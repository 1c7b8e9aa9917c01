"""playbooks/prune.yml names the repositories of the mt5_image and platform_images roles: its fallbacks are their defaults."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def defaults(role: str) -> dict:
    return yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())


def test_the_playbooks_fallbacks_are_the_roles_defaults() -> None:
    play = yaml.safe_load((REPO / "playbooks" / "prune.yml").read_text())[0]
    text = " ".join(str(value) for value in play["vars"].values())
    image, platform = defaults("mt5_image"), defaults("platform_images")
    for name, value in [
        ("mt5_image_name", image["mt5_image_name"]),
        ("mt5_image_base_name", image["mt5_image_base_name"]),
        ("mt5_image_archive_dir", image["mt5_image_archive_dir"]),
        ("platform_images_name_prefix", platform["platform_images_name_prefix"]),
        ("platform_images_archive_dir", platform["platform_images_archive_dir"]),
    ]:
        assert f"{name} | default('{value}')" in text, name
    services = re.search(r"platform_images_offline_services\s*\|\s*default\((\[.*?\])\)", text, re.S)
    assert services and yaml.safe_load(services.group(1)) == platform["platform_images_offline_services"]
