#!/usr/bin/env bash
# Create (or refresh) the controller virtualenv in .venv with the pinned
# toolchain. Re-running is cheap: pip is skipped while the pins are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.mt5farm-installed"

if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "bootstrap: $PYTHON must be Python 3.11 or newer (ansible-core 2.19)" >&2
    exit 1
fi
if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
    echo "bootstrap: $PYTHON has no venv module; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
fi
# A virtualenv left half-made (an interrupted first run: python but no pip) is made again.
if ! [ -x "$VENV/bin/python" ] || ! [ -x "$VENV/bin/pip" ]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

# Everything that decides what pip installs; a change re-runs pip.
inputs=(requirements.txt constraints.txt pyproject.toml account_service/pyproject.toml)
want="$(cat "${inputs[@]}" | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt 2> >(grep -v "is ignored: it is neither a file" >&2)
    # Editable: the farm's package (filters, module_utils) and the account service.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -e . -e './account_service[test]' -c constraints.txt 2> >(grep -v "is ignored: it is neither a file" >&2)
    echo "$want" >"$STAMP"
fi
echo "bootstrap: toolchain ready in $VENV ($("$VENV/bin/ansible" --version | sed -n 1p))"
