"""mt5farm.paths and mt5farm.service_packages, and their filters (filter_plugins/mt5farm_files.py)
as a playbook sees them: the files and the pins the roles ship from the mt5farm package."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from farm_testing import run_ansible

import mt5farm
from mt5farm.paths import package_path
from mt5farm.service_packages import service_packages

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(mt5farm.__file__).resolve().parent


@pytest.mark.parametrize("relative", ["runtime/ini.py", "runtime", "guard.py", "container_metrics.py", "wheelhouse.py"])
def test_a_file_of_the_package_has_its_absolute_path(relative):
    path = Path(package_path(relative))
    assert path.is_absolute() and path.exists()
    assert path == PACKAGE / relative


@pytest.mark.parametrize(
    "relative, says",
    [
        ("runtime/nothing.py", "is not in the mt5farm package"),
        ("/etc/passwd", "not a relative path inside the mt5farm package"),
        ("runtime/../../pyproject.toml", "not a relative path inside the mt5farm package"),
        ("", "expected a path inside the mt5farm package"),
        (None, "expected a path inside the mt5farm package"),
    ],
)
def test_a_path_outside_the_package_or_missing_is_refused_by_name(relative, says):
    with pytest.raises(ValueError, match=says):
        package_path(relative)


def test_the_windows_service_pins_are_exact_and_include_the_windows_only_dependencies():
    pins = service_packages("windows")
    assert pins and all(pin.count("==") == 1 for pin in pins)
    names = [pin.split("==")[0] for pin in pins]
    assert len(names) == len(set(names))
    assert {"fastapi", "uvicorn", "colorama", "tzdata"} <= set(names)


def test_the_windows_service_pins_agree_with_the_services_own_pins():
    """A pin both lists name is the same version: one change of the service, one change here."""
    service = (REPO / "account_service" / "pyproject.toml").read_text()
    linux = (REPO / "roles" / "mt5_image" / "files" / "constraints" / "service-linux.txt").read_text()
    compared = 0
    for pin in service_packages("windows"):
        name = pin.split("==")[0]
        for text in (service, linux):
            for line in text.splitlines():
                stripped = line.strip().strip('",')
                if stripped.lower().startswith(name + "=="):
                    assert stripped.split(";")[0].strip() == pin, f"{pin} vs {stripped}"
                    compared += 1
    assert compared >= len(service_packages("windows")) - 2, (
        "colorama and tzdata are Windows-only; every other pin is in the service's lists"
    )


def test_the_list_is_a_copy_callers_cannot_change():
    service_packages("windows").append("x==1")
    assert "x==1" not in service_packages("windows")


def test_there_is_no_list_for_linux():
    with pytest.raises(ValueError, match="no pinned account service packages for os 'linux'"):
        service_packages("linux")


def _ansible_debug(expression: str) -> subprocess.CompletedProcess:
    return run_ansible(
        ["localhost", "-m", "ansible.builtin.debug", "-a", f"msg={{{{ {expression} }}}}"],
        program="ansible",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="json",
    )


def test_the_filters_in_a_playbook():
    done = _ansible_debug("{'ini': 'runtime/ini.py' | mt5farm_path, 'pins': 'windows' | mt5_service_packages}")
    assert done.returncode == 0, done.stdout + done.stderr
    # The json callback's document; ansible.cfg's profile_tasks adds a timing line before it.
    result, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("{") :])
    msg = result["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    assert msg == {"ini": str(PACKAGE / "runtime" / "ini.py"), "pins": service_packages("windows")}


def test_a_missing_file_fails_the_task_naming_the_filter():
    done = _ansible_debug("'runtime/nothing.py' | mt5farm_path")
    assert done.returncode != 0
    assert "mt5farm_path: 'runtime/nothing.py' is not in the mt5farm package" in done.stdout
