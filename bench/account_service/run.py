#!/usr/bin/env python3
"""Benchmark of the account service; prints a table of figures against targets.

What runs, all on 127.0.0.1 and bounded in time (about one minute in all):
  * the simulated terminal served over RPyC (`mt5-account-service simulator-rpyc`), the
    same path as the Wine bridge in production, pinned to core 1;
  * the service (`mt5-account-service`, MT5_BACKEND=mt5linux), pinned to core 0;
  * HTTP: wrk (core 1), 64 connections, 10 s of GET /api/account;
  * WebSocket: 50 clients (this script, core 1); the script changes the account directly on
    the terminal (an order sent over its own RPyC connection, as a manual trade or an EA
    would), and measures from just *before* that order_send until each client has received
    the update carrying the new position (so the figure includes up to one POLL_INTERVAL of
    waiting for the next poll, and the RPyC round trip of the order itself);
  * bars: one client (this script, httpx, core 1) asking GET
    /api/rates/EURUSD?timeframe=M1&count=10000 one request after another for the duration (a
    bot's own latency; requests at once queue on the one backend thread) (issue 15: p95 <= 50
    ms on one core; the simulator builds finished bars once and keeps them, as a terminal
    keeps its history; the figure includes the bridge's side, on the other core). wrk with
    one connection measured the same median but a p95 about twice as high here: it shares
    core 1 with the bridge;
  * tick fan-out: 50 clients each subscribed to 4 symbols at a 250 ms interval; the figure is
    from the tick's own time (time_msc: when the service read it from the terminal) to its
    arrival at each client (issue 15: p95 <= the interval + 25 ms);
  * RSS of the service process (VmRSS) after the load.

Usage:  python bench/account_service/run.py [--duration 10] [--changes 30]
Needs:  wrk (Debian package), taskset (util-linux), the package installed with [test] extras.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

API_KEY = "bench-key-0123456789abcdef"
LOGIN = 7000001
TARGETS = {"rps": 1500.0, "p95_ms": 10.0, "ws_slack_ms": 25.0, "rss_mib": 80.0, "rates_p95_ms": 50.0, "tick_slack_ms": 25.0}
RATES_PATH = "/api/rates/EURUSD?timeframe=M1&count=10000"
#: Two symbols open every day, two with forex hours (no ticks at weekends: fewer samples).
TICK_SYMBOLS = ["BTCUSD", "Volatility 75 (1s) Index", "EURUSD", "GBPUSD"]
TICK_INTERVAL_MS = 250
PRD = {"rps": 100.0, "p95_ms": 200.0, "ws_ms": 500.0}

WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"errors\\": %d,"
    .. " \\"non2xx\\": %d, \\"p50\\": %d, \\"p95\\": %d, \\"p99\\": %d}\\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, summary.errors.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command() -> str:
    found = shutil.which("mt5-account-service")
    if found:
        return found
    return str(Path(sys.executable).parent / "mt5-account-service")


def pinned(core: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if shutil.which("taskset") else argv


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: timed out waiting for {what}")


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class Processes:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        secrets = workdir / "secrets"
        secrets.mkdir()
        (secrets / "api_key").write_text(API_KEY + "\n")
        (secrets / "password").write_text("simulator-accepts-any\n")
        self.secrets = secrets

    def simulator(self, port: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            pinned(1, [command(), "simulator-rpyc", "--port", str(port), "--balance", "1000000"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), 0.2).close() is None, 15, "the RPyC simulator")
        return proc

    def service(self, port: int, rpyc_port: int, poll: float) -> subprocess.Popen[bytes]:
        state = self.workdir / f"state-{port}"
        env = {
            **os.environ,
            "MT5_LOGIN": str(LOGIN),
            "MT5_SERVER": "Bench-Sim",
            "MT5_BACKEND": "mt5linux",
            "MT5LINUX_PORT": str(rpyc_port),
            "MT5_SECRETS_DIR": str(self.secrets),
            "STATE_DIR": str(state),
            "SERVICE_PORT": str(port),
            "POLL_INTERVAL": str(poll),
            "LOG_LEVEL": "warning",
        }
        proc = subprocess.Popen(pinned(0, [command()]), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_for(lambda: healthy(port), 30, "the service to be healthy")
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def run_wrk(port: int, duration: int, workdir: Path, path: str = "/api/account", connections: int = 64) -> dict[str, float]:
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk not found: apt-get install wrk")
    script = workdir / "report.lua"
    script.write_text(WRK_LUA)
    argv = pinned(
        1,
        [
            "wrk",
            "-t",
            str(min(2, connections)),
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "-s",
            str(script),
            "-H",
            f"X-API-Key: {API_KEY}",
            f"http://127.0.0.1:{port}{path}",
        ],
    )
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    line = next(text for text in out.splitlines() if text.startswith("JSON "))
    data = json.loads(line[5:])
    return {
        "rps": data["requests"] / (data["duration_us"] / 1e6),
        "p50_ms": data["p50"] / 1000,
        "p95_ms": data["p95"] / 1000,
        "p99_ms": data["p99"] / 1000,
        "errors": data["errors"] + data["non2xx"],
        "requests": data["requests"],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def ws_latency(port: int, rpyc_port: int, poll: float, clients: int, changes: int) -> dict[str, float]:
    from mt5linux import MetaTrader5
    from websockets.asyncio.client import connect

    terminal = MetaTrader5(host="127.0.0.1", port=rpyc_port)
    terminal.initialize()
    sockets = [
        await connect(f"ws://127.0.0.1:{port}/ws", compression=None, max_size=None, additional_headers={"X-API-Key": API_KEY})
        for _ in range(clients)
    ]
    for ws in sockets:
        json.loads(await ws.recv())  # the snapshot
    first_seen: list[dict[int, float]] = [{} for _ in range(clients)]

    async def reader(i: int, ws: Any) -> None:
        async for text in ws:
            now = time.perf_counter()
            for row in (json.loads(text).get("positions") or {}).get("changed", []):
                first_seen[i].setdefault(int(row["ticket"]), now)

    tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(sockets)]
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    for _ in range(changes):
        await asyncio.sleep(random.uniform(0, poll))  # a random phase against the poll
        request = {"action": 1, "symbol": "BTCUSD", "volume": 0.01, "type": 0, "type_filling": 0}
        start = time.perf_counter()
        result = await loop.run_in_executor(None, terminal.order_send, request)
        ticket = int(result.order)
        deadline = time.monotonic() + poll * 4 + 5
        while not all(ticket in seen for seen in first_seen):
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: position {ticket} never reached every client")
            await asyncio.sleep(0.005)
        latencies.extend((seen[ticket] - start) * 1000 for seen in first_seen)
        close = {"action": 1, "symbol": "BTCUSD", "volume": 0.01, "type": 1, "type_filling": 0, "position": ticket}
        await loop.run_in_executor(None, terminal.order_send, close)
    for task in tasks:
        task.cancel()
    for ws in sockets:
        await ws.close()
    return {
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 95),
        "max_ms": max(latencies),
        "samples": len(latencies),
    }


def sequential_get(port: int, path: str, duration: float) -> dict[str, float]:
    """GET ``path`` one request after another for ``duration`` seconds: req/s and latencies."""
    import httpx

    latencies: list[float] = []
    errors = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": API_KEY}, timeout=30) as client:
        client.get(path)  # the first one builds the simulator's history blocks
        end = time.monotonic() + duration
        while time.monotonic() < end:
            start = time.perf_counter()
            errors += client.get(path).status_code != 200
            latencies.append((time.perf_counter() - start) * 1000)
    return {
        "rps": len(latencies) / duration,
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 95),
        "errors": errors,
    }


async def tick_fanout(port: int, clients: int, seconds: float) -> dict[str, float]:
    """Subscribe ``clients`` to TICK_SYMBOLS; tick time -> arrival, for ``seconds``."""
    from websockets.asyncio.client import connect

    subscribe = json.dumps({"action": "subscribe", "symbols": TICK_SYMBOLS, "interval_ms": TICK_INTERVAL_MS})
    sockets = []
    for _ in range(clients):
        ws = await connect(f"ws://127.0.0.1:{port}/ws", compression=None, max_size=None, additional_headers={"X-API-Key": API_KEY})
        await ws.recv()  # the snapshot
        await ws.send(subscribe)
        sockets.append(ws)
    latencies: list[float] = []
    start = time.time() + 1.0  # the first second is the subscriptions' current ticks

    async def reader(ws: Any) -> None:
        async for text in ws:
            now = time.time()
            message = json.loads(text)
            if message.get("type") == "tick" and now > start:
                latencies.append(now * 1000 - message["time_msc"])

    tasks = [asyncio.create_task(reader(ws)) for ws in sockets]
    await asyncio.sleep(seconds + 1.0)
    for task in tasks:
        task.cancel()
    for ws in sockets:
        await ws.close()
    if not latencies:
        raise SystemExit("bench: no tick reached a client")
    return {"p50_ms": statistics.median(latencies), "p95_ms": percentile(latencies, 95), "samples": len(latencies)}


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="wrk seconds (default 10)")
    parser.add_argument("--changes", type=int, default=30, help="account changes per WebSocket run (default 30)")
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    if args.duration > 60 or args.changes > 200 or args.clients > 500:
        raise SystemExit("bench: keep it bounded (duration <= 60, changes <= 200, clients <= 500)")
    random.seed(1)
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="mt5-bench-"))
    procs = Processes(workdir)
    rows: list[tuple[str, str, str, str]] = []
    try:
        rpyc_port = free_port()
        procs.simulator(rpyc_port)

        port = free_port()
        service = procs.service(port, rpyc_port, 0.5)
        http = run_wrk(port, args.duration, workdir)
        rates = sequential_get(port, RATES_PATH, args.duration)
        ticks = asyncio.run(tick_fanout(port, args.clients, args.duration))
        rss_http = rss_mib(service.pid)
        procs.stop(service)

        ws_results = {}
        rss_ws = 0.0
        for poll in (0.1, 0.5):
            port = free_port()
            service = procs.service(port, rpyc_port, poll)
            ws_results[poll] = asyncio.run(ws_latency(port, rpyc_port, poll, args.clients, args.changes))
            rss_ws = max(rss_ws, rss_mib(service.pid))
            procs.stop(service)
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    rows.append(
        (
            f"GET /api/account req/s (64 conn, {args.duration}s)",
            f"{http['rps']:,.0f}",
            f">= {TARGETS['rps']:,.0f}",
            verdict(http["rps"] >= TARGETS["rps"]),
        )
    )
    rows.append(("GET /api/account p50 latency", f"{http['p50_ms']:.2f} ms", "", ""))
    rows.append(
        (
            "GET /api/account p95 latency",
            f"{http['p95_ms']:.2f} ms",
            f"<= {TARGETS['p95_ms']:.0f} ms",
            verdict(http["p95_ms"] <= TARGETS["p95_ms"]),
        )
    )
    rows.append(("GET /api/account p99 latency", f"{http['p99_ms']:.2f} ms", "", ""))
    rows.append(("GET /api/account errors / non-2xx", f"{http['errors']}", "0", verdict(http["errors"] == 0)))
    rows.append((f"GET {RATES_PATH} req/s (1 client)", f"{rates['rps']:,.1f}", "", ""))
    rows.append(("  ... p50 latency", f"{rates['p50_ms']:.1f} ms", "", ""))
    rows.append(
        (
            "  ... p95 latency",
            f"{rates['p95_ms']:.1f} ms",
            f"<= {TARGETS['rates_p95_ms']:.0f} ms",
            verdict(rates["p95_ms"] <= TARGETS["rates_p95_ms"] and rates["errors"] == 0),
        )
    )
    tick_limit = TICK_INTERVAL_MS + TARGETS["tick_slack_ms"]
    rows.append((f"WS tick->client p50, {args.clients} clients x {len(TICK_SYMBOLS)} symbols", f"{ticks['p50_ms']:.1f} ms", "", ""))
    rows.append(
        (
            f"WS tick->client p95, interval {TICK_INTERVAL_MS} ms ({ticks['samples']} samples)",
            f"{ticks['p95_ms']:.1f} ms",
            f"<= {tick_limit:.0f} ms",
            verdict(ticks["p95_ms"] <= tick_limit),
        )
    )
    for poll, res in ws_results.items():
        limit = poll * 1000 + TARGETS["ws_slack_ms"]
        rows.append((f"WS change->client p50, POLL_INTERVAL {poll} s, {args.clients} clients", f"{res['p50_ms']:.1f} ms", "", ""))
        rows.append(
            (
                f"WS change->client p95, POLL_INTERVAL {poll} s ({res['samples']} samples)",
                f"{res['p95_ms']:.1f} ms",
                f"<= {limit:.0f} ms",
                verdict(res["p95_ms"] <= limit),
            )
        )
    rss = max(rss_http, rss_ws)
    rows.append(
        ("service RSS after load (max of runs)", f"{rss:.1f} MiB", f"<= {TARGETS['rss_mib']:.0f} MiB", verdict(rss <= TARGETS["rss_mib"]))
    )

    load = os.getloadavg()
    print(
        f"\nmachine: {os.cpu_count()} cores, load average before/after "
        f"{load_before[0]:.2f}/{load[0]:.2f} (other work on the cores inflates the tails)"
    )
    width = max(len(r[0]) for r in rows)
    print(f"\n{'figure':<{width}}  {'measured':>12}  {'target':>10}  result")
    print("-" * (width + 36))
    for name, value, target, result in rows:
        print(f"{name:<{width}}  {value:>12}  {target:>10}  {result}")
    print(
        "\nagainst the PRD's own targets:"
        f" throughput {http['rps'] / PRD['rps']:.1f}x its 100 req/s,"
        f" p95 {PRD['p95_ms'] / max(http['p95_ms'], 1e-9):.0f}x under its 200 ms,"
        f" WS p95 (0.5 s poll) {ws_results[0.5]['p95_ms']:.0f} ms vs its 500 ms."
    )
    missed = [r for r in rows if r[3] == "MISSED"]
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
