"""A client polling every account through the platform's Nginx while a drill runs.

Each round (every --interval s) asks GET /accounts/<login>/api/account of every account at
once (one thread each, --timeout s) and notes which answered 200 with their own login. At the
end (the --stop file appears, or --max seconds pass) it writes JSON to --out:

    {"rounds": N, "seconds": S,
     "accounts": {login: {"host": h, "failed": n, "worst_gap_s": g}},
     "hosts": {host: {"most_down_at_once": k}}}

worst_gap_s is the longest time from the first failed round of a run of failures to the next
good answer (0.0 when it never failed). most_down_at_once is the largest number of the host's
accounts failing in the same round. Usage (the scenario's side effect runs it in the
background on the controller):

    python poll.py --nginx https://10.231.5.10 --key K --accounts 5001001=fleet-platform,... \
        --out gaps.json --stop stop-file
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx


def ask(client: httpx.Client, nginx: str, key: str, login: int, timeout: float) -> bool:
    try:
        response = client.get(f"{nginx}/accounts/{login}/api/account", headers={"X-API-Key": key}, timeout=timeout)
        return response.status_code == 200 and response.json().get("login") == login
    except (httpx.HTTPError, ValueError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nginx", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--accounts", required=True, help="login=host,login=host,...")
    parser.add_argument("--out", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--max", type=float, default=1800.0)
    args = parser.parse_args()
    host_of = {int(login): host for login, host in (pair.split("=") for pair in args.accounts.split(","))}
    logins = sorted(host_of)
    failed = dict.fromkeys(logins, 0)
    down_since: dict[int, float | None] = dict.fromkeys(logins)
    worst = dict.fromkeys(logins, 0.0)
    most_down = dict.fromkeys(set(host_of.values()), 0)
    started = time.monotonic()
    rounds = 0
    # The scenario's certificate is self-signed (platform_nginx's default).
    with httpx.Client(verify=False) as client, ThreadPoolExecutor(len(logins)) as pool:
        while not Path(args.stop).exists() and time.monotonic() - started < args.max:
            at = time.monotonic()
            answers = dict(zip(logins, pool.map(lambda login: ask(client, args.nginx, args.key, login, args.timeout), logins), strict=True))
            rounds += 1
            down_now = dict.fromkeys(most_down, 0)
            for login, ok in answers.items():
                since = down_since[login]
                if ok and since is not None:
                    worst[login] = max(worst[login], time.monotonic() - since)
                    down_since[login] = None
                elif not ok:
                    failed[login] += 1
                    down_now[host_of[login]] += 1
                    if since is None:
                        down_since[login] = at
            for host, count in down_now.items():
                most_down[host] = max(most_down[host], count)
            time.sleep(max(0.0, args.interval - (time.monotonic() - at)))
    end = time.monotonic()
    for login, since in down_since.items():  # still down at the end: the gap so far
        if since is not None:
            worst[login] = max(worst[login], end - since)
    report = {
        "rounds": rounds,
        "seconds": round(end - started, 1),
        "accounts": {
            str(login): {"host": host_of[login], "failed": failed[login], "worst_gap_s": round(worst[login], 2)} for login in logins
        },
        "hosts": {host: {"most_down_at_once": count} for host, count in sorted(most_down.items())},
    }
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
