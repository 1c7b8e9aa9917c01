"""filter_plugins/*.py: thin shims over mt5farm, loaded the way ansible-core loads them.

Each file maps filter names to package functions; the package's FarmError reaches a
playbook as AnsibleFilterError with the same message, and the validation filters accept
Ansible 2.19's lazy markers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible.plugins.loader import filter_loader, init_plugin_loader

from mt5farm import ansible_filters
from mt5farm.errors import FarmError

FILTER_PLUGINS = Path(__file__).resolve().parents[2] / "filter_plugins"

# file → the filters it provides (the names the roles and playbooks call).
EXPECTED: dict[str, set[str]] = {
    "mt5_density.py": {"mt5_size_gib", "mt5_density_profile", "mt5_host_services", "mt5_infrastructure_gib", "mt5_density_cap"},
    "mt5_inventory.py": {"mt5_inventory_report", "mt5_inventory_problems"},
    "mt5_accounts.py": {"mt5_resolved_accounts", "mt5_account_secrets"},
    "mt5_credentials.py": {"mt5_account_credential"},
    "mt5_platform.py": {
        "mt5_platform_accounts",
        "mt5_platform_account_targets",
        "mt5_platform_node_targets",
        "mt5_fleet_status_accounts",
        "mt5_platform_url",
        "mt5_platform_api_keys",
        "mt5_platform_nginx_connections",
        "mt5_grafana_dashboard",
        "mt5_postgres_account_roles",
    },
    "mt5_container_specs.py": {"mt5_container_specs"},
    "mt5_moves.py": {"mt5_account_moves"},
    "mt5_operations.py": {"mt5_account_targets", "mt5_prune_images", "mt5_prune_archives"},
    "mt5_pki.py": {"mt5_tls_enabled", "mt5_pki_names"},
    "mt5_image.py": {"mt5_image_input_hash", "mt5_image_sha256"},
    "mt5farm_files.py": {"mt5farm_path", "mt5_service_packages"},
    "mt5_windows.py": {
        "mt5_windows_firewall_rules",
        "mt5_windows_defender_paths",
        "mt5_windows_san",
        "mt5_windows_input_hash",
        "mt5_windows_input_source",
        "mt5_windows_pair",
        "mt5_windows_path",
    },
}


@pytest.fixture(scope="module")
def loaded() -> dict[str, Any]:
    """Filter name → Ansible's plugin object, for every filter of the repository's filter_plugins/."""
    init_plugin_loader()
    filter_loader.add_directory(str(FILTER_PLUGINS))
    # _original_path: the file a Jinja plugin came from (ansible-core has no public name for it).
    return {plugin.ansible_name: plugin for plugin in filter_loader.all() if Path(plugin._original_path).parent == FILTER_PLUGINS}


def test_every_file_provides_its_filters_and_no_other(loaded: dict[str, Any]) -> None:
    found: dict[str, set[str]] = {}
    for name, plugin in loaded.items():
        found.setdefault(Path(plugin._original_path).name, set()).add(name)
    assert found == EXPECTED
    assert {path.name for path in FILTER_PLUGINS.glob("*.py")} == set(EXPECTED)


def test_a_farm_error_reaches_ansible_as_a_filter_error_with_the_same_message(loaded: dict[str, Any]) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        loaded["mt5_size_gib"].j2_function("lots")
    assert str(caught.value).startswith("mt5_size_gib: size is not a size: got 'lots' (str)")
    assert not isinstance(caught.value.__cause__, FarmError)  # the message alone, not chained twice


def test_only_the_validation_filters_accept_lazy_markers(loaded: dict[str, Any]) -> None:
    lazy = {name for name, plugin in loaded.items() if getattr(plugin.j2_function, "accept_lazy_markers", False)}
    assert lazy == {"mt5_inventory_report", "mt5_inventory_problems"}


def test_the_bridge_keeps_results_and_other_errors_as_they_are() -> None:
    def double(value: int) -> int:
        """Twice value."""
        if value < 0:
            raise KeyError(value)
        return 2 * value

    wrapped = ansible_filters.ansible_filter(double)
    assert wrapped(2) == 4 and wrapped.__doc__ == "Twice value."
    with pytest.raises(KeyError):
        wrapped(-1)


def test_lazy_markers_must_name_filters_of_the_table() -> None:
    with pytest.raises(ValueError, match=r"lazy_markers names filters not in the table: \['nope'\]"):
        ansible_filters.filters({"x": len}, lazy_markers=("nope",))
