#!/usr/bin/python
"""Write a service's config files and their directories in one module run (MT5 Farm)."""

# ruff: noqa: E402
# (E402: an Ansible module documents itself before its imports, as validate-modules requires.)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mt5_config_files
short_description: Write several config files (content rendered on the controller) and their directories in one run
description:
  - Makes the directories in O(directories) and writes the files in O(files) below O(root), in
    one module run instead of one M(ansible.builtin.file) or two M(ansible.builtin.template)
    runs per path (each costs Ansible's fixed overhead, about 0.3 s of CPU).
  - The content comes rendered, typically from C(lookup('ansible.builtin.template', ...)) on
    the controller, so a role's converge and its render entry point can pass the same list.
  - A file is replaced atomically (a temporary file in the same directory, then a rename),
    only when its content differs; mode, owner and group are corrected when they differ.
  - A file given as O(files[].secret_content) is never shown in C(--diff) or in the result
    (the option is no_log); only its path is.
version_added: "1.0.0"
options:
  root:
    description: The directory relative paths in O(directories) and O(files) are below.
    type: path
    required: true
  directories:
    description:
      - Directories to create or correct, in order. A missing parent is created with the same
        mode, owner and group (as M(ansible.builtin.file) does). V(.) is O(root) itself; an
        absolute path is taken as it is.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to O(root), or absolute.
        type: str
        required: true
      mode:
        description: Octal mode, as a string.
        type: str
        required: true
      owner:
        description: Owner (name or uid); unset leaves it.
        type: str
      group:
        description: Group (name or gid); unset leaves it.
        type: str
  files:
    description: Files to write; their directory must exist or be in O(directories).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to O(root).
        type: str
        required: true
      content:
        description: The file's text (shown by C(--diff)). Exactly one of O(files[].content) and O(files[].secret_content).
        type: str
      secret_content:
        description: The file's text when it is a secret (no_log; never in C(--diff)).
        type: str
      mode:
        description: Octal mode, as a string.
        type: str
        required: true
      owner:
        description: This file's owner (name or uid), over O(owner) or O(secret_owner).
        type: str
      group:
        description: This file's group, over O(group) or O(secret_group).
        type: str
  absent:
    description:
      - Files to remove when they exist (paths relative to O(root), or absolute), after the
        files are written: what an earlier version or another setting left behind (a TLS key
        once TLS is off). A directory there fails the run. Removing them here saves one
        M(ansible.builtin.file) run per path.
    type: list
    elements: str
    default: []
  owner:
    description: Owner (name or uid) of the files that hold O(files[].content); unset leaves it.
    type: str
  group:
    description: Group of the files that hold O(files[].content); unset leaves it.
    type: str
  secret_owner:
    description: Owner of the files that hold O(files[].secret_content) (the user of the service that reads them); default O(owner).
    type: str
  secret_group:
    description: Group of the files that hold O(files[].secret_content); default O(group).
    type: str
  validate:
    description:
      - File path (as in O(files[].path)) to a command that checks the new content before it
        replaces the file, C(%s) standing for the temporary file (as M(ansible.builtin.template)'s
        O(ansible.builtin.template#module:validate)). Runs only when the content changes; a
        non-zero exit fails the run and leaves the file as it was.
    type: dict
    default: {}
  max_diff_size:
    description: A file larger than this (bytes, either side) is named in C(--diff) but its content is not shown (Ansible's C(MAX_FILE_SIZE_FOR_DIFF) default).
    type: int
    default: 104448
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author: MT5 Farm
"""

EXAMPLES = r"""
- name: Write Prometheus' config
  mt5_config_files:
    root: /etc/mt5farm/prometheus
    directories:
      - {path: rules, mode: "0755", owner: root, group: root}
      - {path: secrets, mode: "0500", owner: "65534", group: "65534"}
    files:
      - {path: prometheus.yml, mode: "0644", content: "{{ lookup('ansible.builtin.template', 'prometheus.yml.j2') }}"}
      - {path: secrets/metrics_token, mode: "0400", secret_content: "{{ metrics_token }}"}
    owner: root
    group: root
    secret_owner: "65534"
    secret_group: "65534"
    validate:
      prometheus.yml: promtool check config --syntax-only %s
"""

RETURN = r"""
written:
  description: Paths (as given) of the files whose content was (or in check mode would be) written.
  returned: always
  type: list
  elements: str
corrected:
  description: Paths of directories and files created or whose mode, owner or group was (or would be) corrected.
  returned: always
  type: list
  elements: str
removed:
  description: Paths (as given in O(absent)) that existed and were (or in check mode would be) removed.
  returned: always
  type: list
  elements: str
"""

import os
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

_OWNERSHIP = {"owner": {"type": "str"}, "group": {"type": "str"}}
ARGUMENT_SPEC: dict[str, Any] = {
    "root": {"type": "path", "required": True},
    "directories": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {"path": {"type": "str", "required": True}, "mode": {"type": "str", "required": True}, **_OWNERSHIP},
    },
    "files": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "path": {"type": "str", "required": True},
            "content": {"type": "str"},
            "secret_content": {"type": "str", "no_log": True},
            "mode": {"type": "str", "required": True},
            **_OWNERSHIP,
        },
        "required_one_of": [["content", "secret_content"]],
        "mutually_exclusive": [["content", "secret_content"]],
    },
    **_OWNERSHIP,
    "secret_owner": {"type": "str"},
    "secret_group": {"type": "str"},
    "absent": {"type": "list", "elements": "str", "default": []},
    "validate": {"type": "dict", "default": {}},
    "max_diff_size": {"type": "int", "default": 104448},
}


def read_bytes(path: str) -> bytes | None:
    """The file's bytes; None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def attributes(module: AnsibleModule, path: str, mode: str, owner: str | None, group: str | None, diff: dict[str, Any]) -> bool:
    """Correct mode, owner and group of an existing path (in check mode: only tell); True when they differed."""
    wanted = module.load_file_common_arguments({"mode": mode, "owner": owner, "group": group}, path=path)
    return bool(module.set_fs_attributes_if_different(wanted, False, diff))


def ensure_directory(module: AnsibleModule, path: str, spec: dict[str, Any]) -> bool:
    """Create a directory (and its missing parents, alike) or correct it; True when something changed."""
    missing: list[str] = []
    probe = path
    while not os.path.lexists(probe):
        missing.insert(0, probe)
        probe = os.path.dirname(probe)
    if missing and module.check_mode:
        return True
    for directory in missing:
        os.mkdir(directory, 0o700)  # the mode comes next, with owner and group
        attributes(module, directory, spec["mode"], spec["owner"], spec["group"], {"before": {}, "after": {}})
    if not os.path.isdir(path):
        module.fail_json(msg=f"{path} exists and is not a directory")
    return attributes(module, path, spec["mode"], spec["owner"], spec["group"], {"before": {}, "after": {}}) or bool(missing)


def write_file(
    module: AnsibleModule, path: str, content: bytes, mode: str, owner: str | None, group: str | None, check: str | None
) -> None:
    """Replace ``path`` atomically by ``content`` with its attributes, after the ``check`` command (%s: the new file) passes."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        attributes(module, temporary, mode, owner, group, {"before": {}, "after": {}})
        if check:
            rc, out, err = module.run_command(check % temporary if "%s" in check else check, use_unsafe_shell=False)
            if rc != 0:
                module.fail_json(msg=f"{path}: the check failed ({check}): {(err or out).strip()}", rc=rc, stdout=out, stderr=err)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def content_diff(path: str, before: bytes | None, after: bytes, secret: bool, limit: int) -> dict[str, Any]:
    """One entry of the module's diff list: the file's text before and after, unless secret or too large."""
    entry: dict[str, Any] = {"before_header": path if before is not None else "/dev/null", "after_header": path}
    if secret:
        entry.update(before="", after=f"(secret: {path} changes, its content is not shown)\n")
    elif max(len(before or b""), len(after)) > limit:
        entry.update(before="", after=f"(content of {path} not shown: larger than {limit} bytes)\n")
    else:
        entry.update(before=(before or b"").decode(errors="replace"), after=after.decode(errors="replace"))
    return entry


def remove_file(module: AnsibleModule, path: str) -> bool:
    """Remove a file (or symlink) when it exists (in check mode: only tell); True when it existed."""
    if not os.path.lexists(path):
        return False
    if os.path.isdir(path) and not os.path.islink(path):
        module.fail_json(msg=f"{path} is a directory: absent removes files only")
    if not module.check_mode:
        os.unlink(path)
    return True


def run_module() -> None:
    """Make the directories, write the files, remove the absent ones; exit with written, corrected, removed and the diff list."""
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    root = params["root"]
    unknown = sorted(set(params["validate"]) - {file["path"] for file in params["files"]})
    if unknown:
        module.fail_json(msg=f"validate names files that are not in files: {', '.join(unknown)}")
    written: list[str] = []
    corrected: list[str] = []
    diffs: list[dict[str, Any]] = []
    for spec in params["directories"]:
        if ensure_directory(module, os.path.normpath(os.path.join(root, spec["path"])), spec):
            corrected.append(spec["path"])
    for spec in params["files"]:
        path = os.path.join(root, spec["path"])
        secret = spec["secret_content"] is not None
        content = (spec["secret_content"] if secret else spec["content"]).encode()
        owner = spec["owner"] or ((params["secret_owner"] or params["owner"]) if secret else params["owner"])
        group = spec["group"] or ((params["secret_group"] or params["group"]) if secret else params["group"])
        before = read_bytes(path)
        if before != content:
            written.append(spec["path"])
            diffs.append(content_diff(path, before, content, secret, params["max_diff_size"]))
            if not module.check_mode:
                write_file(module, path, content, spec["mode"], owner, group, params["validate"].get(spec["path"]))
        elif attributes(module, path, spec["mode"], owner, group, {"before": {}, "after": {}}):
            corrected.append(spec["path"])
            diffs.append(
                {"before_header": path, "after_header": path, "before": "", "after": f"({path}: mode, owner or group corrected)\n"}
            )
    removed: list[str] = []
    for given in params["absent"]:
        path = os.path.normpath(os.path.join(root, given))
        if remove_file(module, path):
            removed.append(given)
            diffs.append({"before_header": path, "after_header": "/dev/null", "before": "", "after": f"({path} removed)\n"})
    module.exit_json(changed=bool(written or corrected or removed), written=written, corrected=corrected, removed=removed, diff=diffs)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
