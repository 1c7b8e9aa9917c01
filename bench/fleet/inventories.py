#!/usr/bin/env python3
"""Generated fleet inventories for bench/fleet/run.py: N accounts on H Linux farm hosts and a platform host.

The layout is inventories/example's, scaled up: hosts.yml (groups mt5_linux and platform),
group_vars/all/main.yml (site settings, secrets through vault_* variables, the density
defaults written out), group_vars/all/vault.yml (the vault, here plain test values, not
encrypted: nothing in it opens anything), group_vars/mt5_linux.yml (64 GiB, 16 CPUs: the
PRD's host) and host_vars/<host>.yml (mt5_bind_address, mt5_accounts).

Where the accounts' passwords live (``vault``):

* ``host`` (default): each farm host's in its own vault file, host_vars/<host>/vault.yml
  next to host_vars/<host>/main.yml; group_vars/all/vault.yml keeps the site-wide secrets;
* ``site``: every password in group_vars/all/vault.yml, as inventories/example lays it out.

Both hold the same accounts and passwords. They differ in what Ansible 2.19 does per
password: each ``{{ vault_mt5_passwords['<login>'] }}`` wraps the whole dict it indexes for
that one template, so with one site vault a run that reads every password (validation)
does work proportional to accounts x accounts (README, "Fleets of hundreds of accounts").

What the accounts look like (deterministic for a seed, so two runs bench the same inventory):

* logins: distinct 8-digit numbers; on one host, distinct modulo 10,000 too, so that the API
  and VNC ports computed from them (mt5farm.accounts.account_ports) never collide, as an
  operator placing accounts would see to;
* accounts spread evenly: host i gets N // H accounts, the first N % H hosts one more
  (5,000 on 130 hosts: 38 or 39 each, the PRD's "38 per 64 GiB host"; a farm-only host's cap
  here is 51, mt5farm.density);
* per account, drawn from the seed: 80 % broker accounts on the default mt5linux backend and
  10 % on the mt5 backend, each with ``password: "{{ vault_mt5_passwords['<login>'] }}"``
  (a template, as in a real inventory: validation reads it through Ansible's lazy
  templating); 10 % simulator accounts (no password); 30 % with an expert, 20 % with a name,
  5 % with VNC (and its vault password), 2 % disabled with a comment;
* the platform host (``platform-01``) is a separate host in ``platform`` only, with no
  accounts: at this size Nginx, Redis, Postgres and Prometheus get their own machine;
* no host is ever contacted: every host's ansible_host is 127.0.0.1 port 9 (closed), so a
  run that tried would fail at once as UNREACHABLE instead of waiting on a timeout.

Usage:  python bench/fleet/inventories.py --accounts 1000 --hosts 25 --out /tmp/fleet-1000 [--seed 16] [--vault host|site]
Needs:  Python 3.11 and PyYAML (the repository's .venv).
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PLATFORM_HOST = "platform-01"
# Private addresses: farm hosts from 10.16.0.10, the platform host 10.16.255.10.
FARM_NETWORK = ipaddress.IPv4Address("10.16.0.10")
PLATFORM_ADDRESS = "10.16.255.10"
SERVERS: tuple[str, ...] = ("Broker-Live", "Broker-Live2", "Broker-Demo")
EXPERTS: tuple[str, ...] = ("Grid.ex5", "TrendFollower.ex5", "Hedger.ex5")
PORT_SPAN = 10_000  # mt5farm.accounts.PORT_SPAN: ports are computed from login mod this
# Test values, not secrets (the bench's own site; nothing it renders is ever served).
TEST_SECRET = "bench-fleet-test-value-not-a-secret"
API_KEY = "bench-fleet-api-key-0123456789abcdef"
VAULT_LAYOUTS: tuple[str, ...] = ("host", "site")


@dataclass(frozen=True)
class Fleet:
    """A generated inventory, in memory: what the files hold, for the bench's in-process timings.

    hosts: host name → its variables as validation and the platform filters read them (group
    vars merged in, passwords left as their template text, as a plain dict would carry them);
    groups: Ansible's ``groups`` (all, mt5_linux, platform, ungrouped); files: path relative to
    the inventory directory → YAML document.
    """

    hosts: dict[str, dict[str, Any]]
    groups: dict[str, list[str]]
    files: dict[str, Any]

    @property
    def accounts(self) -> int:
        return sum(len(view.get("mt5_accounts") or []) for view in self.hosts.values())


def farm_host_name(index: int, hosts: int) -> str:
    """farm-001 ... farm-130: zero-padded so that sorted names are in index order."""
    return f"farm-{index + 1:0{max(3, len(str(hosts)))}d}"


def farm_host_address(index: int) -> str:
    """The private address of farm host ``index`` (0-based): 10.16.0.10, 10.16.0.11, ..."""
    return str(FARM_NETWORK + index + (index // 240) * 16)  # skip .250-.255 and .0-.9 of each /24


def _logins(rng: random.Random, accounts: int, per_host: list[int]) -> list[list[int]]:
    """Distinct 8-digit logins, ``per_host[i]`` for host i, distinct modulo PORT_SPAN on each host."""
    used: set[int] = set()
    out: list[list[int]] = []
    for count in per_host:
        residues: set[int] = set()
        mine: list[int] = []
        while len(mine) < count:
            login = rng.randrange(10_000_000, 100_000_000)
            if login in used or login % PORT_SPAN in residues:
                continue
            used.add(login)
            residues.add(login % PORT_SPAN)
            mine.append(login)
        out.append(sorted(mine))
    return out


def _account(rng: random.Random, login: int, vault: dict[str, dict[str, str]]) -> dict[str, Any]:
    """One account as an operator writes it in host_vars (secrets through the vault)."""
    roll = rng.random()
    account: dict[str, Any] = {"login": login}
    if roll < 0.10:
        account.update(server="Simulator-Demo", backend="simulator")
    else:
        account["server"] = rng.choice(SERVERS)
        if roll < 0.20:
            account["backend"] = "mt5"
        account["password"] = f"{{{{ vault_mt5_passwords['{login}'] }}}}"
        vault["vault_mt5_passwords"][str(login)] = TEST_SECRET
    if rng.random() < 0.20:
        account["name"] = f"client {login % 100000:05d}"
    if rng.random() < 0.30:
        account["experts"] = [rng.choice(EXPERTS)]
    if rng.random() < 0.05:
        account["vnc"] = True
        account["vnc_password"] = f"{{{{ vault_mt5_vnc_passwords['{login}'] }}}}"
        vault["vault_mt5_vnc_passwords"][str(login)] = TEST_SECRET
    if rng.random() < 0.02:
        account["enabled"] = False
        account["comment"] = "paused by the client"
    return account


def generate(accounts: int, hosts: int, seed: int = 16, vault: str = "host") -> Fleet:
    """A fleet inventory of ``accounts`` accounts on ``hosts`` Linux farm hosts plus platform-01.

    Deterministic: the same (accounts, hosts, seed) gives the same accounts, whatever the
    ``vault`` layout (``host``: each host's passwords in host_vars/<host>/vault.yml;
    ``site``: all in group_vars/all/vault.yml). Raises ValueError when a host would get more
    than PORT_SPAN accounts (ports would collide), the sizes are not positive or the layout
    is unknown.
    """
    if accounts < 1 or hosts < 1:
        raise ValueError(f"accounts and hosts must be at least 1, got {accounts} and {hosts}")
    if vault not in VAULT_LAYOUTS:
        raise ValueError(f"vault must be one of {', '.join(VAULT_LAYOUTS)}, got {vault!r}")
    if -(-accounts // hosts) > PORT_SPAN:
        raise ValueError(f"{accounts} accounts on {hosts} hosts is more than {PORT_SPAN} on one host")
    rng = random.Random(f"mt5farm-bench-fleet-{accounts}-{hosts}-{seed}")
    per_host = [accounts // hosts + (1 if index < accounts % hosts else 0) for index in range(hosts)]
    names = [farm_host_name(index, hosts) for index in range(hosts)]
    host_vars: dict[str, dict[str, Any]] = {}
    host_vaults: dict[str, dict[str, dict[str, str]]] = {}
    for index, (name, logins) in enumerate(zip(names, _logins(rng, accounts, per_host), strict=True)):
        secrets: dict[str, dict[str, str]] = {"vault_mt5_passwords": {}, "vault_mt5_vnc_passwords": {}}
        host_vars[name] = {
            "mt5_bind_address": farm_host_address(index),
            "mt5_accounts": [_account(rng, login, secrets) for login in logins],
        }
        host_vaults[name] = secrets
    host_vars[PLATFORM_HOST] = {"mt5_bind_address": PLATFORM_ADDRESS}

    site = {
        "mt5_api_key": "{{ vault_mt5_api_key }}",
        "mt5_platform_image_set": "offline",
        "mt5_platform_redis_password": "{{ vault_mt5_platform_redis_password }}",
        "mt5_platform_postgres_passwords": "{{ vault_mt5_platform_postgres_passwords }}",
        "mt5_platform_grafana_admin_password": "{{ vault_mt5_platform_grafana_admin_password }}",
        "mt5_density_headroom_gb": 2,
        "mt5_density_reserved_cpus": 1,
        "mt5_platform_service_memory_gb": {"nginx": 1, "redis": 4, "postgres": 8, "prometheus": 2, "grafana": 2, "node_exporter": 0.0625},
    }
    site_vault: dict[str, Any] = {
        "vault_mt5_api_key": API_KEY,
        "vault_mt5_platform_redis_password": TEST_SECRET,
        "vault_mt5_platform_postgres_passwords": {
            role: f"{TEST_SECRET}-{role}" for role in ("superuser", "owner", "writer", "reader", "monitor")
        },
        "vault_mt5_platform_grafana_admin_password": TEST_SECRET,
    }
    if vault == "site":
        site_vault = {
            "vault_mt5_passwords": {k: v for secrets in host_vaults.values() for k, v in secrets["vault_mt5_passwords"].items()},
            "vault_mt5_vnc_passwords": {k: v for secrets in host_vaults.values() for k, v in secrets["vault_mt5_vnc_passwords"].items()},
            **site_vault,
        }
    linux = {"mt5_host_memory_gb": 64, "mt5_host_cpus": 16}
    connection = {"ansible_host": "127.0.0.1", "ansible_port": 9}
    files: dict[str, Any] = {
        "hosts.yml": {
            "all": {
                "vars": connection,
                "children": {
                    "mt5_linux": {"hosts": dict.fromkeys(names)},
                    "platform": {"hosts": {PLATFORM_HOST: None}},
                },
            }
        },
        "group_vars/all/main.yml": site,
        "group_vars/all/vault.yml": site_vault,
        "group_vars/mt5_linux.yml": linux,
    }
    for name, variables in host_vars.items():
        if vault == "host" and name in host_vaults:
            files[f"host_vars/{name}/main.yml"] = variables
            files[f"host_vars/{name}/vault.yml"] = host_vaults[name]
        else:
            files[f"host_vars/{name}.yml"] = variables
    groups = {"all": [*names, PLATFORM_HOST], "mt5_linux": names, "platform": [PLATFORM_HOST], "ungrouped": []}
    views = {
        name: {
            **connection,
            **site,
            **site_vault,
            **(linux if name in names else {}),
            **(host_vaults.get(name, {}) if vault == "host" else {}),
            **variables,
        }
        for name, variables in host_vars.items()
    }
    return Fleet(hosts=views, groups=groups, files=files)


HEADERS: Mapping[str, str] = {
    "hosts.yml": "Generated by bench/fleet/inventories.py: a fleet for the bench, never a real site. No host is contacted\n"
    "(127.0.0.1 port 9 is closed: a run that tried fails at once as UNREACHABLE).",
    "group_vars/all/vault.yml": "Test values only, deliberately not encrypted: nothing rendered from them is ever served.",
}
HOST_VAULT_HEADER = "This host's passwords. Test values only, deliberately not encrypted."


def write(fleet: Fleet, out: Path) -> Path:
    """Write the inventory's files under ``out`` (created; existing files are replaced); returns out."""
    for relative, document in fleet.files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = HEADERS.get(relative, HOST_VAULT_HEADER if relative.endswith("/vault.yml") else "Generated by bench/fleet/inventories.py.")
        header = "".join(f"# {line}\n" for line in text.splitlines())
        path.write_text("---\n" + header + yaml.safe_dump(document, sort_keys=False, width=1000), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, required=True)
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--vault", choices=VAULT_LAYOUTS, default="host", help="where the passwords are (host)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    fleet = generate(args.accounts, args.hosts, args.seed, args.vault)
    write(fleet, args.out)
    print(f"{args.out}: {fleet.accounts} accounts on {len(fleet.groups['mt5_linux'])} farm hosts and {PLATFORM_HOST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
