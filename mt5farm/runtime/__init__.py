"""MT5 Farm container runtime: entrypoint, supervisor programs, watchdog, terminal start.

Stdlib only: it runs on the image's Debian Python (3.13) before and beside the account
service's own virtualenv, and is unit-tested on the controller's Python (3.11).
"""

IMAGE_JSON = "/usr/share/mt5farm/image.json"
# What the build found (build.txt) and the terminal's build (terminal-build; empty: unknown).
REPORT_DIR = "/usr/share/mt5farm/report"
RUNTIME_DIR = "/tmp/mt5farm"
PROGRAMS_DIR = RUNTIME_DIR + "/programs"
SUPERVISOR_CONF = "/etc/supervisor/supervisord.conf"
# The terminal's start ini holds the broker password: it lives on the container's tmpfs only.
SECRET_RUNTIME_DIR = "/dev/shm/mt5farm"
