"""bench/fleet/inventories.py: the generated fleet inventories are valid, even and reproducible.

Run as the bench runs it (a program of the repository, not a package: it is called on the
command line here); the inventories are then checked by playbooks/validate.yml itself.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from farm_testing import REPO, run_ansible

from mt5farm.accounts import account_ports

GENERATOR = REPO / "bench/fleet/inventories.py"


def generate(out: Path, accounts: int, hosts: int, vault: str, seed: int = 16) -> Path:
    done = subprocess.run(
        [
            sys.executable,
            str(GENERATOR),
            "--accounts",
            str(accounts),
            "--hosts",
            str(hosts),
            "--vault",
            vault,
            "--seed",
            str(seed),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out


def files(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): path.read_text() for path in sorted(root.rglob("*.yml"))}


def accounts_by_host(root: Path) -> dict[str, list[dict]]:
    out = {}
    for path in sorted((root / "host_vars").rglob("*.yml")):
        document = yaml.safe_load(path.read_text())
        if "mt5_accounts" in document:
            out[path.stem if path.parent.name == "host_vars" else path.parent.name] = document["mt5_accounts"]
    return out


@pytest.mark.parametrize("vault", ["host", "site"])
def test_a_generated_fleet_passes_validation_spread_evenly_with_ports_unique_per_host(tmp_path: Path, vault: str) -> None:
    root = generate(tmp_path / "fleet", 230, 6, vault)
    done = run_ansible(["-i", str(root), "playbooks/validate.yml"], timeout=180)
    assert done.returncode == 0 and "failed=0" in done.stdout, done.stdout[-3000:]
    hosts = accounts_by_host(root)
    assert sorted(len(accounts) for accounts in hosts.values()) == [38, 38, 38, 38, 39, 39]
    logins = [account["login"] for accounts in hosts.values() for account in accounts]
    assert len(logins) == len(set(logins)) == 230
    for accounts in hosts.values():
        ports = Counter(port for account in accounts for port in account_ports(account["login"]))
        assert max(ports.values()) == 1


def test_the_same_seed_gives_the_same_fleet_and_the_layouts_hold_the_same_accounts(tmp_path: Path) -> None:
    first, again = generate(tmp_path / "a", 100, 3, "host"), generate(tmp_path / "b", 100, 3, "host")
    assert files(first) == files(again)
    assert accounts_by_host(generate(tmp_path / "c", 100, 3, "site")) == accounts_by_host(first)
    assert accounts_by_host(generate(tmp_path / "d", 100, 3, "host", seed=17)) != accounts_by_host(first)
