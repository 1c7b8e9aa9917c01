#!/usr/bin/env python3
"""What Nginx costs: GET /accounts/<login>/api/account through Nginx vs. straight to the accounts.

What runs, all on 127.0.0.1, bounded in time (about a minute), removed at the end:
  * 10 account containers (`mt5bench-plat-<n>`) of the demo's own account image (the image of
    a running account container, or --account-image), simulator backend, published on
    127.0.0.1:39301-39310, pinned to core 0 (--account-cpus);
  * one Nginx container (`mt5bench-plat-nginx`) of the platform's own Nginx image, in the
    host's network namespace on 127.0.0.1:39443 (TLS), with the config rendered from the
    platform_nginx role's render entry point for those 10 accounts (bench/platform/render.yml),
    pinned to core 1 (--nginx-cpus): the platform host is another machine than the farm hosts
    in a real site, so Nginx does not take the accounts' CPU;
  * wrk (core 1, with Nginx), 64 connections over 16 threads for --duration s (10): thread i
    asks account i mod 10; once straight to each container (http://127.0.0.1:<api_port>/api/
    account), once through Nginx (https://127.0.0.1:39443/accounts/<login>/api/account, an API
    key without a rate limit), after a 2 s warm-up of each. The same threads, connections and
    account mix in both runs.

Usage:  python bench/platform/run.py [--duration 10] [--rounds 1]
Needs:  Docker, wrk, taskset, openssl, the repository's .venv (ansible-playbook), and the
        images of the local demo (make deploy with the offline image set).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = 10
FIRST_LOGIN = 6100001
FIRST_PORT = 39301
NGINX_PORT = 39443
STATUS_PORT = 39081
PREFIX = "mt5bench-plat"
SERVICE_KEY = "mt5bench-service-key-0123456789"
CLIENT_KEY = "mt5bench-client-key-0123456789"
TARGETS = {"p95_added_ms": 2.0, "throughput_ratio": 0.80}

# wrk's script (setup, init, request); bench/wrk_report.lua adds the summary line ("JSON {...}") parsed in wrk().
WRK_LUA = """
local targets = {TARGETS}
local counter = 0
function setup(thread)
  local target = targets[counter % #targets + 1]
  thread.addr = wrk.lookup(target[1], target[2])[1]
  thread:set("path", target[3])
  counter = counter + 1
end
function init(args)
  wrk.headers["X-API-Key"] = "{KEY}"
end
function request()
  return wrk.format("GET", path)
end
""" + (REPO / "bench/wrk_report.lua").read_text()


def run(*args: str, **kwargs) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs).stdout.strip()


def image_of(label_filter: str, name: str | None) -> str:
    """The image of a running container (by name, or the first with a label)."""
    if name:
        return run("docker", "inspect", "--format", "{{.Config.Image}}", name)
    ids = run("docker", "ps", "-q", "--filter", f"label={label_filter}").split()
    if not ids:
        sys.exit(f"no running container with label {label_filter}: run `make deploy` first, or pass the image")
    return run("docker", "inspect", "--format", "{{.Config.Image}}", ids[0])


def cleanup() -> None:
    names = run("docker", "ps", "-aq", "--filter", f"name=^{PREFIX}-").split()
    if names:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, check=False)


def start_accounts(image: str, accounts: list[tuple[int, int]], secrets: Path, cpus: str) -> None:
    """One container per (login, port), holding the key file render.yml wrote for its login."""
    for login, port in accounts:
        run(
            "docker",
            "run",
            "-d",
            "--name",
            f"{PREFIX}-{login}",
            "--cpuset-cpus",
            cpus,
            "--memory",
            "512m",
            "--user",
            "10001:10001",
            "-p",
            f"127.0.0.1:{port}:8000",
            "--tmpfs",
            "/data:uid=10001,gid=10001,mode=0750",
            "-v",
            f"{secrets / str(login)}:/run/secrets/mt5:ro",
            "-e",
            f"MT5_LOGIN={login}",
            "-e",
            "MT5_SERVER=Bench-Sim",
            "-e",
            "MT5_BACKEND=simulator",
            "-e",
            "POLL_INTERVAL=0.5",
            "-e",
            "SERVICE_PORT=8000",
            "-e",
            "MT5_SECRETS_DIR=/run/secrets/mt5",
            "-e",
            "STATE_DIR=/data/service",
            "-e",
            "LOG_LEVEL=warning",
            image,
        )


def wait_answering(url: str, key: str | None, timeout: float = 120.0) -> None:
    import ssl

    context = ssl._create_unverified_context()
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
            with urllib.request.urlopen(request, timeout=3, context=context) as answer:
                if answer.status == 200:
                    return
        except Exception:  # noqa: BLE001 - still starting
            pass
        if time.monotonic() > deadline:
            sys.exit(f"{url} does not answer after {timeout:.0f} s")
        time.sleep(0.5)


def render_nginx(out: Path, accounts: list[tuple[int, int]], secrets: Path) -> None:
    """The role's config for these accounts (its render entry point, see render.yml), a self-signed
    pair, and each account's key file under ``secrets/<login>/api_key``."""
    (out / "tls").mkdir(parents=True)
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(out / "tls" / "key.pem"),
        "-out",
        str(out / "tls" / "cert.pem"),
    )
    spec = {
        "bench_out": str(out),
        "bench_secrets": str(secrets),
        "bench_accounts": [{"login": login, "server": "Bench-Sim", "backend": "simulator", "api_port": port} for login, port in accounts],
        "bench_keys": [{"name": "bench", "key": CLIENT_KEY, "rate": "off"}],
        "bench_service_key": SERVICE_KEY,
        "bench_https_port": NGINX_PORT,
        "bench_status_port": STATUS_PORT,
        "ansible_python_interpreter": sys.executable,
    }
    extra = out.parent / "render-vars.json"
    extra.write_text(json.dumps(spec))
    playbook = Path(sys.executable).with_name("ansible-playbook")
    if not playbook.exists():
        playbook = REPO / ".venv" / "bin" / "ansible-playbook"
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run(
        [str(playbook), "-i", "localhost,", "-c", "local", str(REPO / "bench/platform/render.yml"), "-e", f"@{extra}"],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit("rendering the Nginx config failed:\n" + done.stdout[-3000:] + done.stderr[-2000:])


def wrk(url: str, targets: list[tuple[str, int, str]], key: str, duration: int, cpus: str, workdir: Path) -> dict:
    lua = workdir / "bench.lua"
    lua.write_text(
        WRK_LUA.replace("{TARGETS}", "{" + ", ".join(f'{{"{h}", "{p}", "{path}"}}' for h, p, path in targets) + "}").replace("{KEY}", key)
    )
    out = run("taskset", "-c", cpus, "wrk", "-t", "16", "-c", "64", "-d", f"{duration}s", "-s", str(lua), url)
    line = next(line for line in out.splitlines() if line.startswith("JSON "))
    result = json.loads(line[5:])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured run (10)")
    parser.add_argument("--rounds", type=int, default=1, help="direct/Nginx pairs measured; the median is printed (1)")
    parser.add_argument("--account-image", help="default: the image of a running account container")
    parser.add_argument("--nginx-image", help="default: the image of the running mt5-nginx")
    parser.add_argument("--account-cpus", default="0", help="cores of the account containers (0)")
    parser.add_argument("--nginx-cpus", default="1", help="cores of Nginx and wrk (1)")
    args = parser.parse_args()
    if not 1 <= args.duration <= 60 or not 1 <= args.rounds <= 5:
        sys.exit("--duration 1-60, --rounds 1-5")
    for tool in ("docker", "wrk", "taskset", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    account_image = args.account_image or image_of("mt5farm.scope=accounts", None)
    nginx_image = args.nginx_image or image_of("", "mt5-nginx")
    load_before = os.getloadavg()
    cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="mt5bench-platform-"))
    try:
        accounts = [(FIRST_LOGIN + index, FIRST_PORT + index) for index in range(ACCOUNTS)]
        render_nginx(workdir / "nginx", accounts, workdir / "secrets")
        start_accounts(account_image, accounts, workdir / "secrets", args.account_cpus)
        run(
            "docker",
            "run",
            "-d",
            "--name",
            f"{PREFIX}-nginx",
            "--network",
            "host",
            "--cpuset-cpus",
            args.nginx_cpus,
            "-v",
            f"{workdir / 'nginx'}:/etc/nginx:ro",
            nginx_image,
        )
        for login, port in accounts:
            wait_answering(f"http://127.0.0.1:{port}/api/account", SERVICE_KEY)
            wait_answering(f"https://127.0.0.1:{NGINX_PORT}/accounts/{login}/api/account", CLIENT_KEY)
        direct = [("127.0.0.1", port, "/api/account") for _, port in accounts]
        proxied = [("127.0.0.1", NGINX_PORT, f"/accounts/{login}/api/account") for login, _ in accounts]
        results: dict[str, list[dict]] = {"direct": [], "nginx": []}
        for _ in range(args.rounds):
            for name, url, targets, key in (
                ("direct", f"http://127.0.0.1:{FIRST_PORT}/", direct, SERVICE_KEY),
                ("nginx", f"https://127.0.0.1:{NGINX_PORT}/", proxied, CLIENT_KEY),
            ):
                wrk(url, targets, key, 2, args.nginx_cpus, workdir)  # warm-up: connections, TLS sessions, caches
                results[name].append(wrk(url, targets, key, args.duration, args.nginx_cpus, workdir))
    finally:
        cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()

    def median(name: str, field: str) -> float:
        return statistics.median(r[field] for r in results[name])

    direct_rps, nginx_rps = median("direct", "rps"), median("nginx", "rps")
    figures = [
        ("requests/s", f"{direct_rps:,.0f}", f"{nginx_rps:,.0f}", f"{nginx_rps / direct_rps:.2f}"),
        (
            "p50 (ms)",
            f"{median('direct', 'p50') / 1000:.2f}",
            f"{median('nginx', 'p50') / 1000:.2f}",
            f"{median('nginx', 'p50') / median('direct', 'p50'):.2f}",
        ),
        (
            "p95 (ms)",
            f"{median('direct', 'p95') / 1000:.2f}",
            f"{median('nginx', 'p95') / 1000:.2f}",
            f"{median('nginx', 'p95') / median('direct', 'p95'):.2f}",
        ),
        (
            "p99 (ms)",
            f"{median('direct', 'p99') / 1000:.2f}",
            f"{median('nginx', 'p99') / 1000:.2f}",
            f"{median('nginx', 'p99') / median('direct', 'p99'):.2f}",
        ),
        (
            "errors / non-2xx",
            f"{median('direct', 'errors'):.0f} / {median('direct', 'non2xx'):.0f}",
            f"{median('nginx', 'errors'):.0f} / {median('nginx', 'non2xx'):.0f}",
            "",
        ),
    ]
    added = (median("nginx", "p95") - median("direct", "p95")) / 1000
    ratio = nginx_rps / direct_rps
    print(
        f"GET /accounts/<login>/api/account over {ACCOUNTS} accounts, 64 connections, {args.duration} s, "
        f"median of {args.rounds} round(s); accounts on core(s) {args.account_cpus}, Nginx and wrk on {args.nginx_cpus}"
    )
    print(f"account image {account_image}, Nginx image {nginx_image}")
    print()
    print("| figure | direct | through Nginx (TLS) | ratio |")
    print("|---|---|---|---|")
    for row in figures:
        print("| " + " | ".join(row) + " |")
    print()
    print("| target | measured | met |")
    print("|---|---|---|")
    print(
        f"| Nginx adds <= {TARGETS['p95_added_ms']:.0f} ms at p95 | {added:+.2f} ms | {'yes' if added <= TARGETS['p95_added_ms'] else 'NO'} |"
    )
    print(
        f"| Nginx keeps >= {TARGETS['throughput_ratio']:.0%} of the direct throughput | {ratio:.0%} | "
        f"{'yes' if ratio >= TARGETS['throughput_ratio'] else 'NO'} |"
    )
    print()
    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} (1 min; 2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
