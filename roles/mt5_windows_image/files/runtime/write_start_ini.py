"""Write the MT5 terminal's start ini from the account's secret files (Windows image).

    python write_start_ini.py --out C:\\mt5farm\\run\\terminal.ini

Run by entrypoint.ps1 before each start of terminal64.exe. The bytes come from
``mt5farm_ini.start_ini`` -- the farm's ini writer (``mt5farm/runtime/ini.py``, the Linux
image's too), copied next to this script into the Windows build context unchanged: one
implementation of the format (UTF-16LE with BOM, CRLF, [Common] Login,
Password, Server and [Experts] AllowLiveTrading, Enabled).

Reads MT5_LOGIN, MT5_SERVER, MT5_SECRETS_DIR (default C:\\secrets, file ``password``) and
MT5_EXPERTS_ENABLED (default 1). Never prints the password: messages name files only. The
ini goes to a directory of the container's own file system whose ACL admits only SYSTEM,
Administrators and ContainerAdministrator (set in the Dockerfile); the entrypoint removes it
once the terminal is connected.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# Run by path, so its own directory (C:\mt5farm\runtime, where the build copies
# mt5farm_ini.py) is first on sys.path already.
from mt5farm_ini import IniError, read_secret, start_ini


def build(environ: dict[str, str]) -> bytes:
    """The ini bytes for this container's account (raises IniError, never with a secret)."""
    login_text = environ.get("MT5_LOGIN", "").strip()
    if not login_text.isdigit():
        raise IniError(f"MT5_LOGIN must be the account number, got {login_text!r}")
    server = environ.get("MT5_SERVER", "").strip()
    secrets = Path(environ.get("MT5_SECRETS_DIR") or "C:\\secrets")
    password = read_secret(secrets, "password")
    if password is None:
        raise IniError(f"no broker password: the file 'password' in {secrets} is missing or empty")
    experts = environ.get("MT5_EXPERTS_ENABLED", "1").strip() != "0"
    return start_ini(int(login_text), password, server, experts)


def write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ini-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the MT5 start ini from the secret files.")
    parser.add_argument("--out", required=True, help="where terminal64.exe /config: will read it")
    args = parser.parse_args(argv)
    try:
        data = build(dict(os.environ))
    except IniError as error:
        print(f"write_start_ini: {error}", file=sys.stderr)
        return 2
    write(Path(args.out), data)
    print(f"write_start_ini: wrote {args.out} for login {os.environ['MT5_LOGIN'].strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
