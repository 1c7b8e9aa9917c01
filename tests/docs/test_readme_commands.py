"""The README's commands, run exactly as written against the local demo (issue 13).

Every command the README shows (in a fenced block or an inline code span: ``make …``,
``ansible-playbook …``, ``curl …``, ``.venv/bin/…``) is either run here, as written, from the
repository root against the demo inventory (``inventories/local``), or listed in
``NOT_RUN`` with the reason; a command added to the README and found in neither fails
``test_every_readme_command_is_run_or_says_why_not``, so the README cannot drift from what
works.

``test_a_day_on_the_demo`` runs the README's "A day on the demo" block (the block after the
marker ``<!-- doc test: a day on the demo -->``) in order, as an operator would: the first
command is ``make deploy`` (the whole demo, on this machine's Docker engine), and its steps
between the commands (the inventory edits the block names in its comments) are made by the
test on inventories/local, restored afterwards. After each command the test checks what the
README says it does (the account routed through Nginx, scraped and registered; held and
shown so; started again; gone after its removal), with bounds in seconds stated where they
are waited for.

It needs Docker and is slow (a whole demo deploy: about 4 minutes on a 2-CPU machine when
nothing is built yet). Outside CI it runs only when ``MT5FARM_DOC_TEST=1`` (it converges the
demo on this machine and stops and starts one of its accounts); under CI it always runs and
removes the demo's containers at the end, so the Molecule scenarios after it get the machine
to themselves.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from farm_testing import REPO, unavailable

README = REPO / "README.md"
HOST_VARS = REPO / "inventories" / "local" / "host_vars" / "localhost.yml"
MARKER = "<!-- doc test: a day on the demo -->"
COMMAND = re.compile(r"^(make|ansible-playbook|curl|\.venv/bin/\S+)( |$)")
ADDED = 5001004  # the account the day's block adds and removes again
KEY = "mt5farm-demo-key"  # inventories/local/group_vars/all.yml
ADD_LINES = f"  - login: {ADDED}\n    server: Simulator-Demo\n    backend: simulator\n"

# Commands the README shows that this test does not run, and why.
NOT_RUN: dict[str, str] = {
    "make test": "the command that runs this test (CI runs it on a fresh clone: .ci/run)",
    "make lint": "part of make test",
    "make unit": "part of make test",
    "make molecule SCENARIOS=docker_host": "part of make test",
    "make testbed": "part of make test",
    "make test-deps": "part of make test (it installed what this test runs on)",
    "ansible-playbook site.yml": "the run make deploy makes (ARGS empty), which the day's block runs first",
    'make deploy ARGS="-i inventories/prod"': "a real site's inventory (none in the repository)",
    "make deploy ARGS=\"-i inventories/prod --tags accounts --limit 'farm-01,platform-01,localhost'\"": "a real site's inventory",
    ".venv/bin/python bench/fleet/run.py": "a benchmark (5-7 minutes), not part of make test",
}


def readme() -> str:
    return README.read_text(encoding="utf-8")


def command_of(line: str) -> str | None:
    """The command on a line of a README block (its trailing ``# comment`` off), or None: a
    program name alone (prose naming it) and a template (``...``, ``[``, ``<``: the table's
    forms, whose concrete runs the day's block shows) are not commands."""
    text = re.split(r"\s{2,}#", line.strip(), maxsplit=1)[0].strip()
    if not COMMAND.match(text) or " " not in text or any(mark in text for mark in ("...", "[", "<")):
        return None
    return text


def readme_commands(text: str) -> list[str]:
    """Every command in the README's fenced blocks and inline code spans, in order, once each."""
    found: list[str] = []
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    for block in blocks:
        found += [c for c in map(command_of, block.splitlines()) if c]
    outside = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    found += [c for c in map(command_of, re.findall(r"`([^`\n]+)`", outside)) if c]
    return list(dict.fromkeys(found))


def day_block(text: str) -> list[str]:
    """The commands of the block after the marker, in order (repeats kept)."""
    after = text.split(MARKER, 1)[1]
    block = re.search(r"^```[^\n]*\n(.*?)^```", after, flags=re.MULTILINE | re.DOTALL)
    assert block, f"no fenced block after {MARKER}"
    return [c for c in map(command_of, block.group(1).splitlines()) if c]


# --- the parts that need no demo ---------------------------------------------------------------


def test_the_parser_finds_commands_in_blocks_and_spans() -> None:
    text = "x\n```\nmake deploy                # the demo\n# a comment\nmake status\n```\nrun `make stop LOGINS=1` or `ls`.\n"
    assert readme_commands(text) == ["make deploy", "make status", "make stop LOGINS=1"]


def test_every_readme_command_is_run_or_says_why_not() -> None:
    text = readme()
    run = set(day_block(text)) | set(EXTRA_RUN)
    unexplained = [c for c in readme_commands(text) if c not in run and c not in NOT_RUN]
    assert not unexplained, f"README commands neither run by the doc test nor in NOT_RUN: {unexplained}"
    stale = [c for c in NOT_RUN if c not in readme_commands(text)]
    assert not stale, f"NOT_RUN names commands the README no longer shows: {stale}"


# --- the demo -------------------------------------------------------------------------------------


def get(url: str, headers: dict[str, str] | None = None, auth: tuple[str, str] | None = None) -> tuple[int, Any]:
    """(status, JSON body or None) of a GET; 0 when nothing answers. The demo's certificate is self-signed."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers=headers or {})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def account(login: int) -> int:
    return get(f"https://127.0.0.1/accounts/{login}/api/account", {"X-API-Key": KEY})[0]


def scraped(login: int) -> bool:
    query = urllib.parse.quote(f'up{{job="mt5-accounts",login="{login}"}}')
    status, body = get(f"http://127.0.0.1:9090/api/v1/query?query={query}")
    return status == 200 and any(s["value"][1] == "1" for s in body["data"]["result"])


def fleet_state(login: int) -> str | None:
    status, body = get("https://127.0.0.1/fleet/fleet.json", auth=("operator", "mt5farm-demo-operator"))
    rows = [r for r in (body or {}).get("accounts", []) if r["login"] == login] if status == 200 else []
    return rows[0]["state"] if rows else None


def registered(login: int) -> bool:
    done = subprocess.run(
        ["docker", "exec", "mt5-redis", "sh", "-c",
         f'REDISCLI_AUTH="$(cat /run/secrets/redis/password)" redis-cli --no-auth-warning --user mt5-admin exists mt5:account:{login}'],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() == "1"


def wait(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds} s: {what}")


def run(command: str, log: Path) -> subprocess.CompletedProcess[str]:
    """One README command, as written, through bash from the repository root."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    done = subprocess.run(["bash", "-c", command], cwd=REPO, env=environment, capture_output=True, text=True, timeout=1800, check=False)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {command}\n(rc {done.returncode})\n{done.stdout}{done.stderr}")
    return done


# Other README commands run against the demo once the day's block is done (as written).
EXTRA_RUN: dict[str, int] = {
    'make deploy ARGS="--check --diff"': 0,
    "make canary": 0,  # the demo marks no canary: nothing to check, no failure
    'make deploy ARGS="--tags images,accounts -e mt5_update_serial=1"': 0,
    'curl -k -H "X-API-Key: mt5farm-demo-key" https://127.0.0.1/accounts/5001001/api/account': 0,
    'curl -H "X-API-Key: $(cat /etc/mt5farm/secrets/5001001/api_key)" http://127.0.0.1:21001/api/account': 0,
}


@pytest.fixture(scope="module")
def demo_allowed() -> Iterator[None]:
    if not os.environ.get("CI") and os.environ.get("MT5FARM_DOC_TEST") != "1":
        pytest.skip("the doc test converges the demo on this machine: run it with MT5FARM_DOC_TEST=1 (CI always runs it)")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        unavailable("no Docker engine answers: make test-deps")
    original = HOST_VARS.read_text(encoding="utf-8")
    yield
    HOST_VARS.write_text(original, encoding="utf-8")
    if os.environ.get("CI"):
        teardown_demo()


def teardown_demo() -> None:
    """CI only: the demo's containers and background loops go, so later suites have the machine."""
    for pidfile in Path("/run").glob("mt5farm-*.pid"):
        subprocess.run(
            ["start-stop-daemon", "--stop", "--oknodo", "--retry", "5", "--remove-pidfile", "--pidfile", str(pidfile)], check=False
        )
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=mt5farm.scope"], capture_output=True, text=True, check=False
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


def test_a_day_on_the_demo(demo_allowed: None, tmp_path: Path) -> None:
    log = Path(os.environ.get("MT5FARM_DOC_TEST_LOG", tmp_path / "doc-test.log"))
    commands = day_block(readme())
    assert commands[0] == "make deploy", "the day starts with the demo's deploy"
    accounts_runs = 0
    for command in commands:
        if command == 'make deploy ARGS="--tags accounts"':
            accounts_runs += 1
            # The block's comments: the first accounts run follows adding an account, the second its removal.
            text = HOST_VARS.read_text(encoding="utf-8")
            HOST_VARS.write_text(text + ADD_LINES if accounts_runs == 1 else text.replace(ADD_LINES, ""), encoding="utf-8")
        done = run(command, log)
        expected = 0
        assert done.returncode == expected, f"{command}: rc {done.returncode}, see {log}\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
        check_effect(command, accounts_runs, done.stdout)
    for command, expected in EXTRA_RUN.items():
        done = run(command, log)
        assert done.returncode == expected, f"{command}: rc {done.returncode}, see {log}\n{done.stdout[-3000:]}{done.stderr[-2000:]}"


def check_effect(command: str, accounts_runs: int, out: str) -> None:
    """What the README says the command did, checked from outside (bounds in seconds)."""
    words = shlex.split(command)
    if command == "make deploy":
        assert account(5001001) == 200
        assert "Fleet status at" in out and "Fleet page: https://127.0.0.1/fleet/" in " ".join(out.split())
    elif command == 'make deploy ARGS="--tags accounts"' and accounts_runs == 1:
        # Routed at once; scraped within one scrape interval (15 s) of Prometheus' reload; registered within its heartbeat.
        assert account(ADDED) == 200
        wait(lambda: scraped(ADDED), 30, f"Prometheus scrapes {ADDED}")
        wait(lambda: registered(ADDED), 30, f"{ADDED} registers in Redis")
        wait(lambda: fleet_state(ADDED) == "healthy", 30, f"the fleet page shows {ADDED} healthy")
    elif command == 'make deploy ARGS="--tags accounts"':
        assert account(ADDED) == 404
        wait(lambda: not scraped(ADDED), 30, f"Prometheus drops {ADDED}")
    elif words[:2] == ["make", "stop"]:
        assert account(ADDED) == 502
        # The hold reaches the page through the container metrics (every 30 s) and a scrape (15 s).
        wait(lambda: fleet_state(ADDED) == "held", 90, f"the fleet page shows {ADDED} held")
    elif words[:2] == ["make", "status"] and fleet_state(ADDED) == "held":
        assert re.search(rf"{ADDED}\s.*\bheld\b", out), out[-2000:]
    elif words[:2] in (["make", "start"], ["make", "restart"]):
        wait(lambda: account(ADDED) == 200, 60, f"{ADDED} answers again")
    elif words[:2] == ["make", "backup"]:
        assert f"/var/backups/mt5farm/accounts/{ADDED}/mt5-{ADDED}-data-" in out, out[-2000:]
    elif words[:2] == ["make", "restore"]:
        assert f"login {ADDED}: restored from /var/backups/mt5farm/accounts/{ADDED}/" in out, out[-2000:]
        wait(lambda: account(ADDED) == 200, 60, f"{ADDED} answers again")
    elif words[:2] == ["make", "logs"]:
        assert f"{ADDED}" in out
