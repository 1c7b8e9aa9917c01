"""The filters under ansible-core's templating (tests/unit/filters_in_ansible.yml)."""

from pathlib import Path

from farm_testing import run_ansible

REPO = Path(__file__).resolve().parents[2]


def test_filters_work_from_a_playbook() -> None:
    done = run_ansible(["-i", "localhost,", "tests/unit/filters_in_ansible.yml"])
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "failed=0" in output and "rescued=1" in output, output
