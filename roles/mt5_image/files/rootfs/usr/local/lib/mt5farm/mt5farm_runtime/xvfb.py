"""``mt5-xvfb``: clear a stale lock of the display, then exec Xvfb (supervisord's ``xvfb``)."""

from __future__ import annotations

import sys

from .common import clear_x_locks, exec_command, load_image, log


def main() -> int:
    image = load_image()
    display = image.get("display", ":99")
    for path in clear_x_locks(display):
        log("mt5-xvfb", f"removed stale X lock {path}")
    exec_command(["Xvfb", display, "-screen", "0", image.get("screen", "1280x800x24"), "-nolisten", "tcp"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
