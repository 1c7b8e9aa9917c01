"""Fixtures of the Windows tests: the TLS engine, stand-in operator inputs, and a runner for
the Windows plays against tests/windows/inventory (WinRM mocked, Docker API real)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import mtls_engine
import pytest
from farm_testing import unavailable
from mt5_windows_testlib import BASE_IMAGE, BIN, REPO

HERE = Path(__file__).resolve().parent


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    why = mtls_engine.available()
    if why:
        unavailable(why)
    engine = mtls_engine.start(tmp_path_factory.mktemp("tls-engine"))
    client = engine.client()
    # The stand-in for Microsoft's base image, under its name: nothing is ever pulled.
    repository, tag = BASE_IMAGE.rsplit(":", 1)
    client.tag(engine.standin, repository, tag)
    return engine


@pytest.fixture(scope="session")
def stand_in_inputs(tmp_path_factory) -> dict:
    """Operator inputs that are not the real thing: bytes with a sha256, never executed here."""
    root = tmp_path_factory.mktemp("operator-inputs")
    python = root / "python-3.11.9-amd64.exe"
    python.write_bytes(b"MZ stand-in for the Windows Python installer\n")
    terminal = root / "mt5-terminal.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("terminal64.exe", b"MZ stand-in terminal")
    terminal.write_bytes(buffer.getvalue())
    package = root / "docker-27.3.1.zip"
    package.write_bytes(b"PK stand-in for Docker's static Windows zip")
    return {
        "mt5_windows_image_python_installer": {"path": str(python), "sha256": sha256(python)},
        "mt5_windows_image_terminal_archive": {"path": str(terminal), "sha256": sha256(terminal)},
        "mt5_windows_host_docker_package": {"path": str(package), "sha256": sha256(package)},
    }


class PlayRun:
    def __init__(self, done: subprocess.CompletedProcess, log: Path) -> None:
        self.done = done
        self.output = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        self.calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        self.text = done.stdout + done.stderr

    def modules(self, short: str) -> list[dict]:
        return [c for c in self.calls if c.get("kind") == "module" and c["module"].rsplit(".", 1)[-1] == short]

    def task_results(self, name: str) -> list[dict]:
        found = []
        for play in self.output.get("plays", []):
            for task in play["tasks"]:
                if task["task"]["name"] == name:
                    found.extend(task["hosts"].values())
        return found

    def recap(self) -> dict:
        return self.output.get("stats", {})


@pytest.fixture(scope="session")
def play(engine, stand_in_inputs, tmp_path_factory):
    """Run a Windows play in check mode against the mock host; returns a PlayRun."""
    work = tmp_path_factory.mktemp("plays")

    def run(playbook: str, *extra: str, extra_vars: dict | None = None) -> PlayRun:
        log = work / f"{Path(playbook).stem}-{len(list(work.iterdir()))}.jsonl"
        variables = {
            "mt5_windows_host_docker_api_port": engine.port,
            "mt5_windows_host_tls_dir": str(engine.tls_dir),
            "mt5_windows_image_controller_cache": str(work / "cache"),
            **stand_in_inputs,
            **(extra_vars or {}),
        }
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_CONNECTION_PLUGINS=str(HERE / "connection_plugins"),
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
            # (ansible.cfg's profile_tasks would print into the JSON; tree writes files only)
            ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree",
            ANSIBLE_CALLBACK_TREE_DIR=str(work / "tree"),
            ANSIBLE_NOCOLOR="1",
            MT5FARM_MOCK_WINRM_LOG=str(log),
            PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        )
        done = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(HERE / "inventory"),
                "--check",
                "--diff",
                "-e",
                json.dumps(variables),
                *extra,
                str(REPO / playbook),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        return PlayRun(done, log)

    return run
