"""``mt5-xvfb``: clear a stale lock of the display, then exec Xvfb (supervisord's ``xvfb``).

``mt5-xvfb wait -- CMD...`` waits for the display, then execs CMD (x11vnc: started before
the display is up it exits, and supervisord counts a failed start).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .common import clear_x_locks, display_number, exec_command, load_image, log, wait_for


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    image = load_image()
    display = image.get("display", ":99")
    if args[:1] == ["wait"]:
        command = args[2:] if args[1:2] == ["--"] else args[1:]
        socket = Path("/tmp/.X11-unix") / f"X{display_number(display)}"
        if not command or not wait_for(socket.exists, 30.0):
            log("mt5-xvfb", f"the X display {display} did not come up in 30 s" if command else "usage: mt5-xvfb wait -- CMD")
            return 1
        exec_command(command)
    for path in clear_x_locks(display):
        log("mt5-xvfb", f"removed stale X lock {path}")
    exec_command(["Xvfb", display, "-screen", "0", image.get("screen", "1280x800x24"), "-nolisten", "tcp"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
