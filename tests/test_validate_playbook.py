"""playbooks/validate.yml against the broken inventories under tests/inventories/.

Each broken inventory must fail with its own message(s); the valid one and the example
production inventory must pass. In every run no host may be contacted: farm hosts point at
127.0.0.1:9 (closed), so a contact attempt would be UNREACHABLE, and the PLAY RECAP must
list localhost alone. The runs are independent ansible-playbook processes, started together
from one session fixture (pytest-xdist is not installed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
SECRET = "s3cr3t-must-not-print"

# case -> (number of problems, fragments that must appear among the problem messages)
BROKEN: dict[str, tuple[int, list[str]]] = {
    "dup_login_across_hosts": (
        1,
        [
            "host farm-b, account 1001 (mt5_accounts item 1): login 1001 is also used by host farm-a (mt5_accounts item 1)",
        ],
    ),
    "dup_login_same_host": (
        1,
        [
            "host farm-a, account 1001 (mt5_accounts item 3): login 1001 is also used by item 1 on this host",
        ],
    ),
    "login_not_integer": (1, ["host farm-a, account #1 in mt5_accounts: login must be a positive whole number, got 'twelve'"]),
    "login_zero": (1, ["host farm-a, account #1 in mt5_accounts: login must be a positive whole number, got 0"]),
    "login_negative": (1, ["host farm-a, account #1 in mt5_accounts: login must be a positive whole number, got -1001"]),
    "login_quoted": (1, ["host farm-a, account #1 in mt5_accounts: login is quoted ('1001'); write 1001 without quotes"]),
    "server_missing": (1, ["host farm-a, account 1001: server is missing; add `server: <broker server name"]),
    "password_missing": (
        1,
        [
            "host farm-a, account 1001: password is missing (the mt5linux backend logs in to a broker); "
            "add `password: \"{{ vault_mt5_passwords['1001'] }}\"` and the password to the vault file",
        ],
    ),
    "password_vault_undefined": (
        1,
        [
            "host farm-a, account 1001: password refers to an undefined variable (vault_mt5_passwords); add it to the vault file",
        ],
    ),
    "unknown_key": (1, ["host farm-a, account 1001: unknown key 'passwrd' (did you mean 'password'?)"]),
    "backend_wrong_platform": (
        1,
        [
            "host win-a, account 1001: backend 'mt5linux' is not available on Windows hosts; use one of mt5, simulator",
        ],
    ),
    "windows_key_on_linux": (
        1,
        [
            "host farm-a, account 1001: isolation is a Windows-only key but this is a Linux host; remove it, "
            "or move the account to a host in mt5_windows",
        ],
    ),
    "linux_key_on_windows": (
        1,
        [
            "host win-a, account 1001: vnc is a Linux-only key but this is a Windows host; remove it, or move the account to a host in mt5_linux",
        ],
    ),
    "vnc_without_password": (1, ["host farm-a, account 1001: vnc_password is missing (vnc is true)"]),
    "over_density_cap": (
        1,
        [
            "host farm-a: 14 enabled accounts exceed its density cap of 7 by 7 (memory-bound: (4 − 0.0625 − 2) GiB / 0.25 GiB = 7.7 → 7",
            "move 7 accounts to another host or disable them, or declare the real mt5_host_memory_gb",
        ],
    ),
    "memory_override_sum": (
        1,
        [
            "host farm-a: the enabled accounts' memory limits add up to 15 GiB, 1.0625 GiB more than the 13.9375 GiB left for accounts",
        ],
    ),
    "accounts_not_a_list": (1, ["host farm-a: mt5_accounts is a mapping, not a list; write it as a list"]),
    "host_in_both_groups": (1, ["host farm-a is in both mt5_linux and mt5_windows; a host runs one platform: remove it from one group"]),
    "windows_in_platform": (1, ["host win-a is in mt5_windows and platform; platform services run on Linux hosts only"]),
    "accounts_outside_farm": (1, ["host db-a defines mt5_accounts but is in neither mt5_linux nor mt5_windows"]),
    "bad_host_memory": (1, ["host farm-a: mt5_host_memory_gb is not a size: got 'lots'"]),
    "fleet_addresses": (
        4,
        [
            "platform host farm-a: the accounts on the other hosts reach Redis and Postgres at its mt5_bind_address, "
            "but it is not set (the default is 127.0.0.1); set mt5_bind_address (or mt5_platform_address) of farm-a",
            "host farm-b: mt5_bind_address is not set, so the platform host farm-a would reach its accounts at 127.0.0.1 "
            "(its own loopback); set mt5_bind_address to farm-b's private address",
            "host farm-c: the platform host farm-a cannot reach its accounts at mt5_bind_address '0.0.0.0': it is the unspecified address",
            "host farm-e: mt5_bind_address 10.20.0.14 is also farm-d's; each farm host needs its own address",
        ],
    ),
    "many_problems": (
        18,
        [
            # No host sets mt5_bind_address: the fleet's address problems come with the rest.
            "host farm-b: mt5_bind_address is not set, so the platform host farm-a would reach its accounts at 127.0.0.1",
            "host farm-a, account #2 in mt5_accounts: login is quoted ('2002')",
            "host farm-a, account 2003: server is missing",
            "host farm-a, account 2004: password is missing",
            "host farm-a, account 2005: unknown key 'passwd' (did you mean 'password'?)",
            "host farm-a, account 2006: vnc_password is missing (vnc is true)",
            "host farm-a, account 2006: isolation is a Windows-only key",
            # Five terminal accounts and a simulator one: their limits are added up (issue 13).
            "host farm-a: the enabled accounts' memory limits add up to 6.25 GiB, 5.5625 GiB more than the 0.6875 GiB left",
            "host farm-b, account 2001 (mt5_accounts item 1): login 2001 is also used by host farm-a (mt5_accounts item 1)",
            "host farm-b, account 2007: password refers to an undefined variable (vault_mt5_passwords)",
            "host farm-c: mt5_accounts is a mapping, not a list",
            "host win-a, account #1 in mt5_accounts: login must be a positive whole number, got 0",
            "host win-a, account #1 in mt5_accounts: backend 'mt5linux' is not available on Windows hosts",
            "host win-a, account #1 in mt5_accounts: password is missing",
            "host win-a, account 2009: isolation 'container' is not one of process, hyperv",
        ],
    ),
}
PASSING: dict[str, list[str]] = {
    "valid": ["-i", "tests/inventories/valid"],
    "example": ["-i", "inventories/example", "-e", "@inventories/example/group_vars/all/vault.yml.example"],
    "local": ["-i", "inventories/local"],
}


@dataclass
class Run:
    args: list[str]
    returncode: int
    output: str

    @property
    def problems(self) -> list[str]:
        """The fail task's message list (the result is printed as JSON), minus its heading line."""
        marker = "fatal: [localhost]: FAILED! => "
        start = self.output.find(marker)
        if start < 0:
            return []
        result, _ = json.JSONDecoder().raw_decode(self.output[start + len(marker) :])
        heading, *problems = result["msg"]
        assert heading.startswith(f"The inventory has {len(problems)} problem(s); nothing was changed on any host.")
        return problems

    @property
    def recap_hosts(self) -> list[str]:
        recap = self.output.split("PLAY RECAP", 1)[1]
        return re.findall(r"^(\S+)\s+: ok=", recap, flags=re.MULTILINE)


def _run(name: str, args: list[str]) -> tuple[str, Run]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",  # one message per JSON string, no line folding
        ANSIBLE_RETRY_FILES_ENABLED="0",
        PATH=f"{ANSIBLE_PLAYBOOK.parent}{os.pathsep}{env.get('PATH', '')}",
    )
    command = [str(ANSIBLE_PLAYBOOK), *args, "playbooks/validate.yml"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    return name, Run(command, done.returncode, done.stdout + done.stderr)


@pytest.fixture(scope="session")
def runs() -> dict[str, Run]:
    jobs = [(case, ["-i", f"tests/inventories/{case}"]) for case in BROKEN]
    jobs += list(PASSING.items())
    jobs.append(("many_problems_verbose", ["-i", "tests/inventories/many_problems", "-vvv"]))
    with ThreadPool(min(8, os.cpu_count() or 2) * 2) as pool:
        return dict(pool.starmap(_run, jobs))


def test_every_inventory_case_is_covered() -> None:
    on_disk = {p.name for p in (REPO / "tests" / "inventories").iterdir() if p.is_dir()}
    assert on_disk == set(BROKEN) | {"valid"}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_inventory_fails_with_its_own_message(runs: dict[str, Run], case: str) -> None:
    run = runs[case]
    count, fragments = BROKEN[case]
    assert run.returncode != 0, run.output
    problems = run.problems
    assert len(problems) == count, problems
    for fragment in fragments:
        assert any(fragment in problem for problem in problems), f"{fragment!r} not in {problems}"


@pytest.mark.parametrize("case", sorted(BROKEN) + sorted(PASSING) + ["many_problems_verbose"])
def test_no_host_is_contacted(runs: dict[str, Run], case: str) -> None:
    run = runs[case]
    assert "UNREACHABLE" not in run.output
    assert run.recap_hosts == ["localhost"], run.output


@pytest.mark.parametrize("case", sorted(PASSING))
def test_valid_inventories_pass(runs: dict[str, Run], case: str) -> None:
    run = runs[case]
    assert run.returncode == 0, run.output
    assert run.problems == []
    assert re.search(r"^localhost\s+: ok=2 .* failed=0 ", run.output, flags=re.MULTILINE), run.output


def test_valid_inventory_shows_caps_and_what_is_not_checked(runs: dict[str, Run]) -> None:
    output = runs["valid"].output
    assert "farm-a (linux): 2 enabled of 3 accounts, cap 37 — memory-bound: (64 − 17.3125 − 2) GiB / 1.2 GiB = 37.2 → 37" in output
    assert "win-a (windows): 2 enabled of 2 accounts, cap 28 — cpu-bound: (8 − 1) CPUs / 0.25 CPU = 28 → 28" in output
    assert "host farm-b (linux): density not checked here because mt5_host_memory_gb is not declared" in output


def test_secrets_never_appear_in_output(runs: dict[str, Run]) -> None:
    for case in ("many_problems", "many_problems_verbose"):
        assert SECRET in (REPO / "tests/inventories/many_problems/host_vars/farm-a.yml").read_text()
        assert SECRET not in runs[case].output
    assert runs["many_problems_verbose"].returncode != 0
    assert "placeholder-not-a-password" not in runs["valid"].output
    assert "<broker password of" not in runs["example"].output


def test_validation_runs_under_other_tags() -> None:
    """Tagged always: `--tags accounts` (or any other stage's tag) still validates."""
    _, run = _run("tags", ["-i", "tests/inventories/login_zero", "--tags", "accounts"])
    assert run.returncode != 0
    assert any("login must be a positive whole number, got 0" in p for p in run.problems)
