# MT5 Farm test double. SPDX-License-Identifier: GPL-3.0-or-later
"""A MOCK connection standing in for WinRM: no Windows host exists where these tests run."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = r"""
name: mock_winrm
short_description: A MOCK standing in for WinRM, because no Windows host exists here
description:
  - This is not a connection to anything. It stands in for C(ansible.builtin.winrm) so that
    the mt5_windows plays can run end to end (in check mode) without a Windows host.
  - It accepts what Ansible sends to a Windows host over WinRM - PowerShell modules wrapped by
    Ansible's exec wrapper, the temporary-directory and clean-up scripts, file transfers -
    records every module call (module name and arguments) as one JSON line, and answers
    with canned results, what a Windows Server 2022 host prepared by the role would
    plausibly answer. No PowerShell runs. A canned answer proves only that the role makes
    the call with these arguments and copes with that answer.
  - The canned answers are in C(CANNED) below; a module it does not know gets
    an answer of changed false.
author: MT5 Farm
options:
  log:
    description: File the calls are appended to (JSON lines).
    type: path
    env:
      - name: MT5FARM_MOCK_WINRM_LOG
    vars:
      - name: mock_winrm_log
  scenario:
    description:
      - Named answer sets. C(farm) is a host already running the farm, with one stale
        firewall rule and one stale secrets folder (of account 99999999) to be removed.
    type: str
    default: farm
    env:
      - name: MT5FARM_MOCK_WINRM_SCENARIO
    vars:
      - name: mock_winrm_scenario
"""


STALE_LOGIN = "99999999"
TMP_RE = re.compile(r"ansible-tmp-[A-Za-z0-9_.-]+")


def _win_copy(args: dict) -> dict:
    if args.get("_copy_mode") == "query":
        # Everything differs on the host: every file would be copied.
        return {
            "changed": False,
            "files": list(args.get("files") or []),
            "directories": list(args.get("directories") or []),
            "symlinks": [],
        }
    return {"changed": True, "dest": args.get("dest"), "operation": "file_copy"}


def _win_powershell(args: dict) -> dict:
    script = str(args.get("script") or "")
    if "Get-NetFirewallRule" in script:
        return {
            "changed": False,
            "output": [f"MT5 Farm account {STALE_LOGIN}"],
            "result": {},
            "error": [],
            "warning": [],
            "verbose": [],
            "debug": [],
            "information": [],
            "host_out": "",
            "host_err": "",
        }
    if "MpPreference" in script:
        return {
            "changed": True,
            "output": [],
            "result": {"added": list((args.get("parameters") or {}).get("Paths") or []), "removed": []},
            "error": [],
            "warning": [],
            "verbose": [],
            "debug": [],
            "information": [],
            "host_out": "",
            "host_err": "",
        }
    return {
        "changed": False,
        "output": [],
        "result": {},
        "error": [],
        "warning": [],
        "verbose": [],
        "debug": [],
        "information": [],
        "host_out": "",
        "host_err": "",
    }


def _win_find(args: dict) -> dict:
    root = str((args.get("paths") or [""])[0] if isinstance(args.get("paths"), list) else args.get("paths"))
    if args.get("file_type") == "directory":
        files = [{"path": f"{root}\\{STALE_LOGIN}", "isdir": True}]
    else:
        files = [{"path": f"{root}\\{STALE_LOGIN}\\password", "isdir": False}]
    return {"changed": False, "examined": len(files), "matched": len(files), "files": files}


CANNED: dict[str, Any] = {
    "win_ping": {"changed": False, "ping": "pong"},
    "win_feature": {"changed": True, "success": True, "exitcode": "Success", "reboot_required": False, "feature_result": []},
    "win_file": {"changed": False},
    "win_acl": {"changed": False},
    "win_acl_inheritance": {"changed": False},
    "win_service_info": {
        "changed": False,
        "exists": True,
        "services": [{"name": "docker", "display_name": "Docker Engine", "state": "started", "start_mode": "auto"}],
    },
    "win_stat": {"changed": False, "stat": {"exists": True}},
    "win_get_url": {"changed": True},
    "win_copy": _win_copy,
    "win_unzip": {"changed": True},
    "win_path": {"changed": False, "path_value": "C:\\Windows\\system32;C:\\Program Files\\docker"},
    "win_command": {"changed": True, "rc": 0, "stdout": "", "stderr": ""},
    "win_service": {"changed": False, "exists": True, "name": "docker", "state": "running", "start_mode": "auto"},
    "win_firewall_rule": {"changed": True},
    "win_powershell": _win_powershell,
    "win_find": _win_find,
}


class Connection(ConnectionBase):
    """MOCK: answers the Windows module calls the role makes with canned results (see DOCUMENTATION)."""

    transport = "mock_winrm"
    module_implementation_preferences = (".ps1", ".exe", "")
    allow_executable = False
    has_pipelining = True
    allow_extras = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.always_pipeline_modules = True
        self.has_native_async = True
        self._shell_type = "powershell"
        super().__init__(*args, **kwargs)

    def _connect(self) -> Connection:
        self._connected = True
        return self

    def _record(self, entry: dict) -> None:
        path = self.get_option("log")
        if path:
            entry = {"host": self._play_context.remote_addr, "time": time.time(), **entry}
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, sort_keys=True) + "\n")

    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = True) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        if in_data and b"\n\0\0\0\0\n" in in_data:
            return self._module_call(in_data)
        text = (in_data or b"").decode("utf-8", "replace") + " " + self._decoded(cmd)
        found = TMP_RE.search(text)
        if found and ("mkdtemp" in text or "New-Item" in text or '"Name"' in text):
            path = f"C:\\Users\\ansible\\AppData\\Local\\Temp\\{found.group(0)}"
            self._record({"kind": "mkdtemp", "path": path})
            return 0, (path + "\r\n").encode(), b""
        self._record({"kind": "raw", "command": self._decoded(cmd)[:200]})
        return 0, b"", b""

    @staticmethod
    def _decoded(cmd: str) -> str:
        parts = cmd.split()
        if "-EncodedCommand" in parts:
            try:
                return base64.b64decode(parts[parts.index("-EncodedCommand") + 1]).decode("utf-16-le", "replace")
            except (IndexError, ValueError):
                return cmd
        return cmd

    def _module_call(self, in_data: bytes) -> tuple[int, bytes, bytes]:
        _, _, exec_part = in_data.partition(b"\n\0\0\0\0\n")
        manifest = json.loads(exec_part)
        wrappers = [action for action in manifest["actions"] if action["name"] == "module_wrapper.ps1"]
        if not wrappers:
            return self._script_call(manifest)
        wrapper = wrappers[-1]
        script = wrapper["params"]["Script"]
        name = script[:-4] if script.endswith(".ps1") else script
        args: dict[str, Any] = {}
        for variable in wrapper["params"].get("Variables") or []:
            if variable.get("Name") == "complex_args":
                args = variable.get("Value") or {}
        short = name.rsplit(".", 1)[-1]
        self._record({"kind": "module", "module": name, "args": args, "check_mode": bool(args.get("_ansible_check_mode"))})
        answer = CANNED.get(short, {"changed": False})
        result = answer(args) if callable(answer) else json.loads(json.dumps(answer))
        result.setdefault("invocation", {"module_args": {k: v for k, v in args.items() if not k.startswith("_ansible")}})
        return 0, json.dumps(result).encode(), b""

    def _script_call(self, manifest: dict) -> tuple[int, bytes, bytes]:
        """Ansible's own scripts (temporary directory, clean-up) sent through the exec wrapper."""
        for action in manifest["actions"]:
            params = action.get("params") or {}
            if "mkdtemp" in action["name"] and params.get("Name"):
                path = f"C:\\Users\\ansible\\AppData\\Local\\Temp\\{params['Name']}"
                self._record({"kind": "mkdtemp", "path": path})
                return 0, (path + "\r\n").encode(), b""
        self._record({"kind": "script", "scripts": [action["name"] for action in manifest["actions"]]})
        return 0, b"", b""

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        self._record({"kind": "put_file", "dest": out_path})

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        raise NotImplementedError("mock_winrm: the role never fetches from a Windows host")

    def close(self) -> None:
        self._connected = False
