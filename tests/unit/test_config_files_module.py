"""library/mt5_config_files.py, run by ansible-playbook as platform_nginx and monitoring run it.

Both roles' converge and `render` entry point write their config with it, from one list in the
role's vars/main.yml; these tests hold the module to what the template and file tasks it
replaced did: modes (missing parents alike), atomic replacement only on change, a second run
changed=0, check mode writes nothing, --diff shows plain files and never a secret, a failed
check (validate) leaves the file as it was, owners of secret files apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
SECRET = "Token-must-never-be-printed-5521"

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  connection: local
  tasks:
    - name: Write the config
      mt5_config_files:
        root: "{{ root }}"
        directories: "{{ directories }}"
        files: "{{ files }}"
        secret_owner: "{{ secret_owner | default(omit) }}"
        validate: "{{ validate | default({}) }}"
        absent: "{{ absent | default([]) }}"
      register: result
    - name: Keep the result
      ansible.builtin.copy:
        content: "{{ result | to_json }}"
        dest: "{{ root }}/../result.json"
        mode: "0600"
      check_mode: false
"""


def files(conf: str = "listen 80;\n", token: str = SECRET) -> list[dict[str, str]]:
    """A render-like list: a plain file in the root, one in a subdirectory, a secret."""
    return [
        {"path": "nginx.conf", "mode": "0644", "content": conf},
        {"path": "mt5farm/routes.conf", "mode": "0644", "content": "location / {}\n"},
        {"path": "secrets/token", "mode": "0400", "secret_content": token},
    ]


DIRECTORIES = [{"path": "mt5farm", "mode": "0755"}, {"path": "secrets", "mode": "0700"}]


def converge(tmp_path: Path, config: list[dict[str, str]], *extra: str, **variables: Any) -> tuple[dict[str, Any], str]:
    """One ansible-playbook run with --diff -v; (the module's result, the whole output). Asserts it passed."""
    done = play(tmp_path, config, *extra, **variables)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((tmp_path / "out" / "result.json").read_text()), done.stdout + done.stderr


def play(tmp_path: Path, config: list[dict[str, str]], *extra: str, **variables: Any) -> subprocess.CompletedProcess[str]:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    settings = {"root": str(tmp_path / "out" / "conf"), "directories": DIRECTORIES, "files": config, **variables}
    (tmp_path / "vars.json").write_text(json.dumps({**settings, "ansible_python_interpreter": sys.executable}))
    (tmp_path / "out").mkdir(exist_ok=True)
    command = [ANSIBLE_PLAYBOOK, "-i", "localhost,", str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}", "--diff", "-v"]
    environment = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run([*command, *extra], cwd=REPO, env=environment, capture_output=True, text=True, check=False, timeout=120)


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o7777)


def test_writes_directories_and_files_with_their_modes_in_one_run(tmp_path: Path) -> None:
    result, output = converge(tmp_path, files())
    conf = tmp_path / "out" / "conf"
    # The root was missing: created with the mode of the first directory, as the file module does.
    assert (mode(conf), mode(conf / "mt5farm"), mode(conf / "secrets")) == ("0o755", "0o755", "0o700")
    assert (conf / "nginx.conf").read_text() == "listen 80;\n"
    assert (conf / "secrets" / "token").read_text() == SECRET
    modes = [mode(conf / name) for name in ("nginx.conf", "mt5farm/routes.conf", "secrets/token")]
    assert modes == ["0o644", "0o644", "0o400"]
    assert result["changed"] is True
    assert result["written"] == ["nginx.conf", "mt5farm/routes.conf", "secrets/token"]
    assert "+listen 80;" in output  # --diff shows the plain file
    assert SECRET not in output
    assert not [name for name in os.listdir(conf) if name.startswith(".")]  # no temporary file left


def test_second_run_changes_nothing_and_check_mode_writes_nothing(tmp_path: Path) -> None:
    converge(tmp_path, files())
    result, _ = converge(tmp_path, files())
    assert result["changed"] is False
    conf = tmp_path / "out" / "conf"
    result, output = converge(tmp_path, files("listen 81;\n", "rotated-" + SECRET), "--check")
    assert result["changed"] is True
    assert result["written"] == ["nginx.conf", "secrets/token"]
    assert "-listen 80;" in output and "+listen 81;" in output
    assert SECRET not in output
    assert (conf / "nginx.conf").read_text() == "listen 80;\n"
    assert (conf / "secrets" / "token").read_text() == SECRET


def test_a_changed_mode_is_corrected_without_rewriting(tmp_path: Path) -> None:
    converge(tmp_path, files())
    conf = tmp_path / "out" / "conf"
    (conf / "secrets" / "token").chmod(0o644)
    (conf / "secrets").chmod(0o755)
    result, output = converge(tmp_path, files())
    assert result["written"] == []
    assert result["corrected"] == ["secrets", "secrets/token"]
    assert (mode(conf / "secrets"), mode(conf / "secrets" / "token")) == ("0o700", "0o400")
    assert SECRET not in output


def test_absent_files_are_removed_in_the_same_run_without_showing_their_content(tmp_path: Path) -> None:
    converge(tmp_path, files())
    conf = tmp_path / "out" / "conf"
    (conf / "secrets" / "tls_key.pem").write_text(SECRET)
    absent = ["secrets/tls_key.pem", "secrets/never-there.pem"]
    result, output = converge(tmp_path, files(), "--check", absent=absent)
    assert (result["changed"], result["removed"]) == (True, ["secrets/tls_key.pem"])
    assert (conf / "secrets" / "tls_key.pem").exists()
    result, output = converge(tmp_path, files(), absent=absent)
    assert result["removed"] == ["secrets/tls_key.pem"] and not (conf / "secrets" / "tls_key.pem").exists()
    assert "tls_key.pem removed" in output and SECRET not in output
    result, _ = converge(tmp_path, files(), absent=absent)
    assert (result["changed"], result["removed"]) == (False, [])
    done = play(tmp_path, files(), absent=["secrets"])
    assert done.returncode != 0 and "is a directory" in done.stdout


def test_a_failed_check_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    converge(tmp_path, files())
    # grep -q listen: passes for the first content, fails for the second.
    done = play(tmp_path, files("server_tokens off;\n"), validate={"nginx.conf": "grep -q listen %s"})
    assert done.returncode != 0
    assert "nginx.conf: the check failed" in done.stdout
    conf = tmp_path / "out" / "conf"
    assert (conf / "nginx.conf").read_text() == "listen 80;\n"
    assert not [name for name in os.listdir(conf) if name.startswith(".")]
    result, _ = converge(tmp_path, files("listen 82;\n"), validate={"nginx.conf": "grep -q listen %s"})
    assert result["written"] == ["nginx.conf"]
    assert (conf / "nginx.conf").read_text() == "listen 82;\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_secret_files_belong_to_secret_owner(tmp_path: Path) -> None:
    converge(tmp_path, files(), secret_owner="65534")
    conf = tmp_path / "out" / "conf"
    assert (conf / "secrets" / "token").stat().st_uid == 65534
    assert (conf / "nginx.conf").stat().st_uid == 0
    result, _ = converge(tmp_path, files(), secret_owner="65534")
    assert result["changed"] is False


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_owner_wins_over_the_run_owners(tmp_path: Path) -> None:
    """One run writes files of different users (Postgres' and its migration's): files[].owner and group win."""
    config = [*files(), {"path": "secrets/other", "mode": "0400", "secret_content": "x", "owner": "65533", "group": "65533"}]
    converge(tmp_path, config, secret_owner="65534")
    secrets = tmp_path / "out" / "conf" / "secrets"
    assert (secrets / "token").stat().st_uid == 65534
    assert ((secrets / "other").stat().st_uid, (secrets / "other").stat().st_gid) == (65533, 65533)
    result, _ = converge(tmp_path, config, secret_owner="65534")
    assert result["changed"] is False


@pytest.mark.parametrize(
    ("role", "converge_tasks", "files_var"),
    [("platform_nginx", "config.yml", "_platform_nginx_config_files"), ("monitoring", "prometheus.yml", "_monitoring_prometheus_files")],
)
def test_converge_and_render_write_the_same_list(role: str, converge_tasks: str, files_var: str) -> None:
    """The render entry point renders exactly what the converge writes: both pass the one list of vars/main.yml.

    The converge may add files that come from the host's certificates, not from the inventory
    (Prometheus' copy of the farm's CA), after the list: ``{{ <list> + (...) }}``.
    """
    tasks = REPO / "roles" / role / "tasks"
    for name in (converge_tasks, "render.yml"):
        writes = [task["mt5_config_files"] for task in yaml.safe_load((tasks / name).read_text()) if "mt5_config_files" in task]
        assert len(writes) == 1, name
        assert writes[0]["files"] == "{{ " + files_var + " }}" or writes[0]["files"].startswith("{{ " + files_var + " + "), name
    listed = yaml.safe_load((REPO / "roles" / role / "vars" / "main.yml").read_text())[files_var]
    assert all("secret_content" in entry for entry in listed if entry["path"].startswith("secrets/"))
