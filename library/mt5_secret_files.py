#!/usr/bin/python
"""Write every account's secret files on a host in one pass (MT5 Farm)."""

# ruff: noqa: E402
# (E402: an Ansible module documents itself before its imports, as validate-modules requires.)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mt5_secret_files
short_description: Write each account's secret files into its own directory, in one pass
description:
  - Keeps one directory per account below O(root), holding that account's secret files
    (broker password, API key, ...), owned by the uid the account container runs as.
  - The containers mount their directory read-only; secrets never go through environment
    variables, labels or command lines.
  - Files are replaced atomically, only when their content differs. Files and account
    directories that are no longer wanted are removed (O(prune)).
  - Reports which accounts changed, so their containers can be restarted. Values are never
    returned or shown in C(--diff); only account keys and file names are.
version_added: "1.0.0"
options:
  root:
    description: Existing directory holding one subdirectory per account (root-only, 0700).
    type: path
    required: true
  accounts:
    description:
      - Account key (the login, as text) to a mapping of file name to content.
      - Values are secrets; the option is no_log.
    type: dict
    required: true
  owner:
    description: Numeric uid owning the directories and files (the container's user).
    type: int
    required: true
  group:
    description: Numeric gid owning the directories and files.
    type: int
    required: true
  dir_mode:
    description: Mode of each account directory.
    type: str
    default: "0500"
  file_mode:
    description: Mode of each secret file.
    type: str
    default: "0400"
  prune:
    description: Remove account directories below O(root) that O(accounts) does not list.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author: MT5 Farm
"""

EXAMPLES = r"""
- name: Write the accounts' secret files
  mt5_secret_files:
    root: /etc/mt5farm/secrets
    owner: 10001
    group: 10001
    accounts:
      "12345678":
        password: "{{ vault_mt5_passwords['12345678'] }}"
        api_key: "{{ vault_mt5_api_key }}"
  no_log: true
"""

RETURN = r"""
changed_accounts:
  description: Account keys whose files were written or removed (restart their containers).
  returned: always
  type: list
  elements: str
removed_accounts:
  description: Account directories removed because O(accounts) no longer lists them.
  returned: always
  type: list
  elements: str
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def safe_name(name: str) -> bool:
    """A plain file or directory name: no path separators, no dot-only names."""
    return bool(name) and set(name) <= NAME_CHARS and name.strip(".") != ""


def read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def ensure_dir(path: str, owner: int, group: int, mode: int, check: bool) -> bool:
    """Create or correct an account directory; True when something changed."""
    try:
        stat = os.lstat(path)
    except FileNotFoundError:
        if not check:
            os.mkdir(path, mode)
            os.chown(path, owner, group)
            os.chmod(path, mode)
        return True
    changed = False
    if (stat.st_uid, stat.st_gid) != (owner, group):
        changed = True
        if not check:
            os.chown(path, owner, group)
    if stat.st_mode & 0o7777 != mode:
        changed = True
        if not check:
            os.chmod(path, mode)
    return changed


def write_file(path: str, content: bytes, owner: int, group: int, mode: int, check: bool) -> bool:
    """Replace a secret file atomically when its content, owner or mode differ."""
    current = read_bytes(path)
    if current == content:
        stat = os.lstat(path)
        if (stat.st_uid, stat.st_gid, stat.st_mode & 0o7777) == (owner, group, mode):
            return False
    if check:
        return True
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        os.fchmod(handle, mode)
        os.fchown(handle, owner, group)
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return True


def sync_account(directory: str, files: dict, params: dict, check: bool) -> list[str]:
    """Bring one account directory in line; return the names of files that changed."""
    owner, group = params["owner"], params["group"]
    changed = []
    if ensure_dir(directory, owner, group, int(params["dir_mode"], 8), check):
        changed.append(".")
    present = set(os.listdir(directory)) if os.path.isdir(directory) else set()
    for name, content in sorted(files.items()):
        if write_file(os.path.join(directory, name), str(content).encode(), owner, group, int(params["file_mode"], 8), check):
            changed.append(name)
    for name in sorted(present - set(files)):
        changed.append(name)
        if not check:
            os.unlink(os.path.join(directory, name))
    return changed


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "accounts": {"type": "dict", "required": True, "no_log": True},
            "owner": {"type": "int", "required": True},
            "group": {"type": "int", "required": True},
            "dir_mode": {"type": "str", "default": "0500"},
            "file_mode": {"type": "str", "default": "0400"},
            "prune": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params, check = module.params, module.check_mode
    root = params["root"]
    if not os.path.isdir(root):
        module.fail_json(msg=f"{root} does not exist; the docker_host role creates it (docker_host_secrets_root)")

    accounts = {str(key): value for key, value in params["accounts"].items()}
    bad = [
        key
        for key, files in accounts.items()
        if not safe_name(key) or not isinstance(files, dict) or not all(safe_name(str(n)) for n in files)
    ]
    if bad:
        module.fail_json(
            msg=f"account keys and file names must be plain names, and each account a mapping of file name to content: {', '.join(sorted(bad))}"
        )

    changed_files = {}
    for key, files in sorted(accounts.items()):
        changed = sync_account(os.path.join(root, key), files, params, check)
        if changed:
            changed_files[key] = changed

    removed = []
    if params["prune"]:
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if name not in accounts and os.path.isdir(path) and not os.path.islink(path):
                removed.append(name)
                if not check:
                    shutil.rmtree(path)

    diff = {
        "before": "".join(f"{key}: {', '.join(names)}\n" for key, names in changed_files.items())
        + "".join(f"{key}: (all files)\n" for key in removed),
        "after": "".join(f"{key}: {', '.join(names)} (new content)\n" for key, names in changed_files.items()),
        "before_header": f"{root} (file names only)",
        "after_header": f"{root} (file names only)",
    }
    module.exit_json(
        changed=bool(changed_files or removed),
        changed_accounts=sorted(changed_files),
        removed_accounts=removed,
        diff=diff,
    )


if __name__ == "__main__":
    main()
