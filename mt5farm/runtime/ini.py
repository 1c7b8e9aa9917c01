"""The terminal's start configuration (``terminal64.exe /config:<file>``).

MetaTrader 5 writes its own ini files as UTF-16LE with a byte-order mark and CRLF line ends,
and reads start configurations in that form; the BOM is what tells it the file is UTF-16.
The file holds the broker password, so it is written only to a tmpfs (``/dev/shm``), mode
0600 in a 0700 directory, replaced atomically, and never printed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

BOM = b"\xff\xfe"


class IniError(ValueError):
    """A value cannot go into the start ini; the message never contains a secret."""


def _flag(value: bool) -> str:
    return "1" if value else "0"


def start_ini(login: int, password: str, server: str, experts_enabled: bool) -> bytes:
    """The start ini as MT5 reads it: UTF-16LE with BOM, CRLF, [Common] and [Experts].

    ``experts_enabled`` sets both ``Enabled`` (the terminal's Algo Trading switch, which the
    MetaTrader5 Python module's ``order_send`` needs too) and ``AllowLiveTrading``.
    """
    if not isinstance(login, int) or isinstance(login, bool) or login <= 0:
        raise IniError(f"the login must be a positive whole number, not {login!r}")
    if not password:
        raise IniError("the broker password is empty")
    if any(ch in password for ch in "\r\n\x00"):
        raise IniError("the broker password contains a line break or NUL: it cannot go into an ini line")
    if not server or any(ch in server for ch in "\r\n\x00"):
        raise IniError(f"the server name {server!r} is empty or contains a line break")
    lines = [
        "[Common]",
        f"Login={login}",
        f"Password={password}",
        f"Server={server}",
        "",
        "[Experts]",
        f"AllowLiveTrading={_flag(experts_enabled)}",
        f"Enabled={_flag(experts_enabled)}",
        "",
    ]
    return BOM + "\r\n".join(lines).encode("utf-16-le")


def read_secret(directory: Path, name: str) -> str | None:
    """A secret file's content without surrounding whitespace (as the service reads it)."""
    try:
        text = (directory / name).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    text = text.strip()
    return text or None


def mount_type(path: Path, mounts: str = "/proc/self/mounts") -> str | None:
    """File system type of the mount holding ``path`` (longest matching mount point)."""
    best, best_type = "", None
    target = str(path.resolve())
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type


def write_private(path: Path, data: bytes, require_tmpfs: bool = True) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600, its directory 0700.

    With ``require_tmpfs`` the directory must be on a tmpfs, so a password never reaches
    a disk (the container's writable layer or a volume).
    """
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if require_tmpfs and mount_type(directory) != "tmpfs":
        raise IniError(f"{directory} is not on a tmpfs: refusing to write the broker password there")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ini-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
