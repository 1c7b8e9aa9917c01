"""Every role documents its inputs: argument_specs, defaults and README agree."""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ROLE_NAMES = sorted(path.name for path in ROLES.iterdir() if path.is_dir())


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.exists() else None


def all_options(role: str) -> dict:
    """Options of every entry point by name; an option two entry points share must have one type and default."""
    specs = load_yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    options: dict = {}
    for entry_point, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            known = options.get(name, option)
            for key in ("type", "default"):
                assert known.get(key) == option.get(key), f"{name}: entry point {entry_point} gives another {key}"
            options[name] = option
    return options


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_has_metadata_argument_specs_and_readme(role):
    assert (ROLES / role / "meta" / "main.yml").exists()
    assert (ROLES / role / "meta" / "argument_specs.yml").exists()
    assert (ROLES / role / "README.md").exists()


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_default_is_specified_with_the_same_value(role):
    defaults = load_yaml(ROLES / role / "defaults" / "main.yml") or {}
    options = all_options(role)
    with_default = sorted(name for name, option in options.items() if "default" in option)
    assert sorted(defaults) == with_default, "defaults/main.yml and argument_specs' defaults list different inputs"
    for name, value in defaults.items():
        assert options[name].get("default") == value, f"{name}: argument_specs default differs from defaults/main.yml"
        assert name.startswith(role + "_"), f"{name} lacks the role prefix {role}_"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_readme_lists_every_input(role):
    readme = (ROLES / role / "README.md").read_text()
    specs = load_yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    # The operator's inputs: the main entry point's and every option with a default (a guard or
    # started entry point's); a test-only entry point's required inputs need no row.
    options = set(specs["main"].get("options") or {}) | set(load_yaml(ROLES / role / "defaults" / "main.yml") or {})
    missing = [name for name in sorted(options) if f"| `{name}` |" not in readme]
    assert not missing, f"README.md of {role} has no table row for {missing}"
