"""Every role documents its inputs: argument_specs, defaults and README agree."""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ROLE_NAMES = sorted(path.name for path in ROLES.iterdir() if path.is_dir())


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_has_metadata_argument_specs_and_readme(role):
    assert (ROLES / role / "meta" / "main.yml").exists()
    assert (ROLES / role / "meta" / "argument_specs.yml").exists()
    assert (ROLES / role / "README.md").exists()


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_default_is_specified_with_the_same_value(role):
    defaults = load_yaml(ROLES / role / "defaults" / "main.yml") or {}
    options = load_yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"] or {}
    assert sorted(defaults) == sorted(options), "defaults/main.yml and argument_specs list different inputs"
    for name, value in defaults.items():
        assert options[name].get("default") == value, f"{name}: argument_specs default differs from defaults/main.yml"
        assert name.startswith(role + "_"), f"{name} lacks the role prefix {role}_"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_readme_lists_every_input(role):
    readme = (ROLES / role / "README.md").read_text()
    options = load_yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"] or {}
    missing = [name for name in options if f"| `{name}` |" not in readme]
    assert not missing, f"README.md of {role} has no table row for {missing}"
