"""The Windows image's files as the role renders them, and the start ini as the image writes it.

An ansible-playbook run on localhost applies the mt5_windows_image role's own tasks
(its `render` entry point) for sample inputs, which writes the rendered Dockerfile and image.json,
plus the role's runtime files (the same list the build context is made from), into a temp dir.
The ini is then written by the image's own write_start_ini.py with mt5farm_ini.py (the farm's
writer, mt5farm/runtime/ini.py, copied as the build copies it) under this machine's Python: the same code
path the entrypoint runs, on another OS. The PowerShell entrypoint cannot run here; it is
read for its structure and parsed for syntax by tree-sitter's PowerShell grammar.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from farm_testing import run_ansible
from mt5_windows_testlib import REPO, SECRETS

RENDER_PLAYBOOK = """---
- name: Render the Windows image's files with the role's own tasks
  hosts: localhost
  gather_facts: false
  vars:
    mt5_windows_image_python_installer: {{path: /nonexistent/python-3.11.9-amd64.exe, sha256: "{sha}"}}
    mt5_windows_image_terminal_archive: {{path: /nonexistent/mt5-terminal.zip, sha256: "{sha}"}}
    mt5_windows_image_experts:
      - {{path: /nonexistent/Grid.ex5, sha256: "{sha}"}}
      - {{url: "https://example.invalid/t.ex5", sha256: "{sha}", kind: Indicators, name: Trend.ex5}}
    mt5_accounts:
      - {{login: 32345678, server: Broker-Win02, password: mock-broker-password-5a1f}}
    mt5_api_key: windows-mock-api-key-0123456789
  tasks:
    - name: Render with the role's render entry point
      ansible.builtin.include_role:
        name: mt5_windows_image
        tasks_from: render
      vars:
        mt5_windows_image_render_dir: "{out}"
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    (out / "runtime").mkdir()
    playbook = out.parent / "render.yml"
    playbook.write_text(RENDER_PLAYBOOK.format(sha="a" * 64, out=out))
    inventory = out.parent / "inventory.ini"
    inventory.write_text("[mt5_windows]\n")
    done = run_ansible(["-i", str(inventory), str(playbook)], timeout=300, ANSIBLE_LOCALHOST_WARNING="false")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return out


def test_dockerfile_structure(rendered: Path) -> None:
    text = (rendered / "Dockerfile").read_text()
    lines = text.splitlines()
    assert lines[0] == "# escape=`", "the escape directive must be the first line"
    instructions = [line.split()[0] for line in lines if line and not line.startswith((" ", "#"))]
    assert instructions[0] == "FROM" and instructions.count("FROM") == 1
    assert "FROM mcr.microsoft.com/windows/servercore:ltsc2022" in lines
    assert re.search(r"^EXPOSE 8000$", text, re.M)
    assert 'CMD ["C:\\\\Python\\\\python.exe", "-m", "mt5_account_service", "healthcheck"]' in text
    assert re.search(r"^HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 `$", text, re.M)
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    assert entry is not None, "the Dockerfile has no exec-form ENTRYPOINT"
    assert json.loads(entry.group(1)) == [
        "powershell.exe",
        "-NoLogo",
        "-NoProfile",
        "-ExecutionPolicy",
        "Bypass",
        "-File",
        "C:\\mt5farm\\runtime\\entrypoint.ps1",
    ]
    copies = re.findall(r"^COPY (\S+) (\S+)$", text, re.M)
    assert copies == [
        ("inputs/python-installer.exe", "C:/mt5farm/inputs/"),
        ("wheels/", "C:/mt5farm/wheels/"),
        ("inputs/terminal.zip", "C:/mt5farm/inputs/"),
        # the experts go into the terminal's MQL5 folder, after the terminal
        ("inputs/mql5-Experts-Grid.ex5", "C:/MT5/MQL5/Experts/Grid.ex5"),
        ("inputs/mql5-Indicators-Trend.ex5", "C:/MT5/MQL5/Indicators/Trend.ex5"),
        ("runtime/", "C:/mt5farm/runtime/"),
    ]
    assert "TargetDir=C:\\Python" in text and "terminal64.exe" in text and "Expand-Archive -Path C:\\mt5farm\\inputs\\terminal.zip" in text
    assert "pip install --no-index --no-deps" in text
    env_block = text[text.index("\nENV ") : text.index("\nEXPOSE")]
    assert "MT5_SECRETS_DIR=C:\\secrets" in env_block and "STATE_DIR=C:\\data\\service" in env_block
    assert "MT5_TERMINAL_PATH=C:\\MT5\\terminal64.exe" in env_block
    assert not re.search(r"(?i)password|api_key|secret_?key|token", env_block.replace("MT5_SECRETS_DIR", ""))
    assert not re.search(r"(?im)^(ARG|ENV)\b.*(password|api_key)", text)
    for secret in SECRETS:
        assert secret not in text
    # the start ini's folder is closed to everyone but SYSTEM, Administrators, ContainerAdministrator
    assert (
        "icacls C:\\mt5farm\\run /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' '*S-1-5-93-2-1:(OI)(CI)F'" in text
    )


def test_no_secret_in_anything_the_build_context_holds(rendered: Path) -> None:
    for path in rendered.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f"{path.name} holds a secret"


def test_image_json_matches_the_paths(rendered: Path) -> None:
    image = json.loads((rendered / "runtime" / "image.json").read_text())
    assert image["python"] == "C:\\Python\\python.exe"
    assert image["ini_path"] == "C:\\mt5farm\\run\\terminal.ini"
    assert image["terminal"] == {"included": True, "source": "archive", "path": "C:\\MT5\\terminal64.exe"}
    assert "MQL5\\Files" in image["terminal_data_dirs"] and image["service_port"] == 8000
    assert image["experts"] == ["MQL5/Experts/Grid.ex5", "MQL5/Indicators/Trend.ex5"]


def test_entrypoint_structure(rendered: Path) -> None:
    text = (rendered / "runtime" / "entrypoint.ps1").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "$ErrorActionPreference = 'Stop'" in code
    assert "Get-Setting 'MT5_SECRETS_DIR' 'C:\\secrets'" in code
    # secrets by name only: the script tests that the files exist and never reads one
    assert "Test-Path -LiteralPath (Join-Path $SecretsDir $name) -PathType Leaf" in code
    assert not re.search(r"Get-Content[^\n]*(Secrets|password|api_key)", code, re.I)
    assert not re.search(r"(Write-Output|Write-Host|Write-Log)[^\n]*\$(password|secret|apikey)", code, re.I)
    # ini written by Python (the shared writer), to a path inside the container, then the terminal, then the service
    start_terminal = code[code.index("function Start-Terminal") : code.index("function Start-AccountService")]
    assert "write_start_ini.py') --out $IniPath" in start_terminal
    assert "@('/portable', \"/config:$IniPath\")" in start_terminal
    main = code[code.index("Assert-Settings\nInitialize-Data") :]
    assert main.index("Start-Terminal") < main.index("Start-AccountService")
    assert "while ($true)" in main and "HasExited" in main and "Get-Health" in main
    assert "Remove-StartIni" in main


def test_the_start_ini_is_utf16le_with_bom_and_crlf(rendered: Path, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "password").write_text("mock-broker-password-5a1f\n")
    (secrets / "api_key").write_text("windows-mock-api-key-0123456789\n")
    out = tmp_path / "run" / "terminal.ini"
    env = dict(os.environ, MT5_LOGIN="32345678", MT5_SERVER="Broker-Win02", MT5_SECRETS_DIR=str(secrets))
    done = subprocess.run(
        [sys.executable, str(rendered / "runtime" / "write_start_ini.py"), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "mock-broker-password" not in done.stdout + done.stderr
    data = out.read_bytes()
    assert data[:2] == b"\xff\xfe"
    text = data[2:].decode("utf-16-le")
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
    assert text.split("\r\n") == [
        "[Common]",
        "Login=32345678",
        "Password=mock-broker-password-5a1f",
        "Server=Broker-Win02",
        "",
        "[Experts]",
        "AllowLiveTrading=1",
        "Enabled=1",
        "",
    ]


def test_the_ini_writer_refuses_without_a_password_and_names_no_secret(rendered: Path, tmp_path: Path) -> None:
    env = dict(os.environ, MT5_LOGIN="32345678", MT5_SERVER="Broker-Win02", MT5_SECRETS_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(rendered / "runtime" / "write_start_ini.py"), "--out", str(tmp_path / "x.ini")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "'password'" in done.stderr and not (tmp_path / "x.ini").exists()


def test_the_ini_writer_is_the_linux_images(rendered: Path) -> None:
    shared = REPO / "mt5farm/runtime/ini.py"
    assert (rendered / "runtime" / "mt5farm_ini.py").read_bytes() == shared.read_bytes()


def _powershell_parser():
    """tree-sitter's PowerShell grammar (pinned in requirements.txt)."""
    import tree_sitter
    import tree_sitter_powershell

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def test_the_entrypoint_parses_as_powershell(rendered: Path) -> None:
    parser = _powershell_parser()
    tree = parser.parse((rendered / "runtime" / "entrypoint.ps1").read_bytes())
    errors = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            errors.append(f"line {node.start_point[0] + 1}: {node.type}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    assert not errors, errors
    assert parser.parse(b"function f( { $x = ( }\n").root_node.has_error, "the parser must catch a broken script"
