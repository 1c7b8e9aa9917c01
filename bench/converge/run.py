#!/usr/bin/env python3
"""Converge benchmark: library/mt5_containers.py against a community.docker loop.

Prints a table: seconds to converge one Docker host's account containers with our module
(one `ansible-playbook bench/converge/module.yml` per converge, so Ansible's own start-up
and the module's transfer are counted) and with a playbook that loops
`community.docker.docker_container` over the same containers (bench/converge/loop.yml),
side by side in the same run, with the ratio and the targets of issue 4:

  fresh 10, fresh 50, fresh 100   from no container at all
  no-op 100                       the same 100 again, nothing to change
  add 1 to 50                     50 converged, then 51 asked for

  targets: fresh 100 <= 60 s, no-op 100 <= 15 s, add one <= 10 s, module >= 5x the loop.

Also, for scale, `docker run -d` of the same 100 containers one after another (the seeds'
"30 s per 100 containers"), unless --no-docker-run.

Both methods get identical containers: the same image, env, labels, one API port published
on 127.0.0.1 (never anything else), a named data volume and a read-only bind mount (the
secrets directory), memory limit and reservation, CPU quota, healthcheck, restart policy
unless-stopped, stop timeout. Neither waits for health (the loop cannot, and a converge is
done when the containers run). Everything the bench makes carries the label
`mt5bench.run=<id>` or its name prefix and is removed between scenarios and at the end.

The image. By default the bench makes a stand-in itself: a static busybox serving
`/health` with `busybox httpd` on the API port, imported from a tarball (no registry here,
and the simulator image is built by another part of the project). Its containers start in
milliseconds and use ~1 MiB, so the figures measure Docker, Ansible and the converge logic,
not the application's start-up. Pass the real simulator image with
`--image mt5farm/simulator:<tag> --container-port <its API port>
--health-cmd '<its health command>'` (and `--env KEY=VALUE` for what it needs) once it
exists: it must already be loaded on this host (never pulled).

Usage:  .venv/bin/python bench/converge/run.py [--sizes 10,50,100] [--image IMG]
        [--parallelism 8] [--port-base 28100] [--scenarios fresh,add] [--no-loop] [--no-docker-run]
Needs:  a Docker engine (`docker info`), a static busybox (busybox-static) for the
        stand-in image, the repository's virtualenv (ansible-core, community.docker).
Bounded: every converge has a timeout (--timeout, 900 s); a full run took 8 to 10
minutes on 2 cores, most of it in the docker_container loop.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BUSYBOX = Path("/bin/busybox")
PREFIX = "mt5bench"
GIB = 1024**3
TARGETS = {"fresh 100": 60.0, "no-op 100": 15.0, "add 1 to 50": 10.0}
RATIO_TARGET = 5.0

STANDIN_ENTRY = """#!/bin/busybox sh
# Stand-in for the simulator image: answers GET /health on $PORT, exits on SIGTERM.
trap 'kill $pid 2>/dev/null; exit 0' TERM INT
/bin/busybox httpd -f -p "${PORT:-8000}" -h /www &
pid=$!
wait $pid
"""
STANDIN_HEALTH = "/bin/busybox wget -q -O /dev/null http://127.0.0.1:${PORT:-8000}/health"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def standin_image(api) -> str:
    """Import the stand-in image from a tarball; the tag is a hash of its content."""
    if not BUSYBOX.exists():
        sys.exit("bench: /bin/busybox is missing: apt-get install busybox-static (or pass --image)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("tmp", 0o1777), ("www", 0o755), ("data", 0o755)):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)
        for name, data, mode in (
            ("bin/busybox", BUSYBOX.read_bytes(), 0o755),
            ("entry.sh", STANDIN_ENTRY.encode(), 0o755),
            ("www/health", b"ok\n", 0o644),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    import hashlib

    tag = hashlib.sha256(buffer.getvalue()).hexdigest()[:12]
    reference = f"mt5farm/bench-standin:{tag}"
    try:
        api.inspect_image(reference)
    except docker.errors.NotFound:
        api.import_image_from_data(buffer.getvalue(), repository="mt5farm/bench-standin", tag=tag, changes=['CMD ["/entry.sh"]'])
    return reference


def specs(count: int, args, image: str, run_id: str, secrets: Path) -> list[dict]:
    """The desired containers: what the mt5_linux role would pass for `count` accounts."""
    result = []
    for index in range(1, count + 1):
        name = f"{PREFIX}-{run_id}-{index:03d}"
        login = 7100000 + index
        # A placeholder, not a secret: readable by the image's non-root user.
        (secrets / name).mkdir(mode=0o755, exist_ok=True)
        (secrets / name / "api_key").write_text("bench-not-a-secret\n")
        (secrets / name / "api_key").chmod(0o644)
        env = {"MT5_LOGIN": str(login), "MT5_SERVER": "Bench-Demo", "PORT": str(args.container_port)}
        env.update(args.env)
        result.append(
            {
                "name": name,
                "image": image,
                "env": env,
                "labels": {"mt5farm.login": str(login), "mt5farm.server": "Bench-Demo", "mt5bench.run": run_id},
                "ports": [
                    {"container_port": args.container_port, "host_port": args.port_base + index, "host_ip": "127.0.0.1", "protocol": "tcp"}
                ],
                "mounts": [
                    {"type": "volume", "source": f"{name}-data", "target": "/data", "read_only": False},
                    {"type": "bind", "source": str(secrets / name), "target": "/run/secrets/mt5", "read_only": True},
                ],
                "memory": int(1.2 * GIB),
                "memory_reservation": 1 * GIB,
                "nano_cpus": 500_000_000,
                "healthcheck": {"test": ["CMD-SHELL", args.health_cmd], "interval": 10, "timeout": 3, "retries": 3, "start_period": 5},
                "restart_policy": "unless-stopped",
                "stop_timeout": 10,
                "init": False,
            }
        )
    return result


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.api = docker.APIClient(version="auto", timeout=300)
        self.run_id = uuid.uuid4().hex[:8]
        self.scope = f"{PREFIX}-{self.run_id}"
        self.prefix = f"{PREFIX}-{self.run_id}-"
        self.workdir = Path(tempfile.mkdtemp(prefix="mt5bench-"))
        self.secrets = self.workdir / "secrets"
        self.secrets.mkdir(mode=0o700)
        self.image = ""
        self.made_image = False

    # -- state ---------------------------------------------------------------

    def ours(self) -> list[dict]:
        return self.api.containers(all=True, filters={"label": f"mt5bench.run={self.run_id}"})

    def clean(self) -> None:
        """Remove the bench's containers (SIGKILL: not measured) and volumes."""
        entries = self.ours()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda c: self._quiet(self.api.remove_container, c["Id"], force=True, v=True), entries))
        for volume in (self.api.volumes(filters={"name": self.prefix}) or {}).get("Volumes") or []:
            if volume["Name"].startswith(self.prefix):
                self._quiet(self.api.remove_volume, volume["Name"], force=True)

    @staticmethod
    def _quiet(function, *args, **kwargs) -> None:
        try:
            function(*args, **kwargs)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            if error.status_code != 409:  # "removal already in progress"
                raise

    def running(self) -> int:
        return len(self.api.containers(filters={"label": f"mt5bench.run={self.run_id}", "status": "running"}))

    # -- converges -------------------------------------------------------------

    def converge(self, method: str, count: int) -> tuple[float, dict]:
        containers = specs(count, self.args, self.image, self.run_id, self.secrets)
        variables = {
            "bench_scope": self.scope,
            "bench_containers": containers,
            "bench_parallelism": self.args.parallelism,
            "ansible_python_interpreter": self.args.python,
        }
        vars_file = self.workdir / "vars.json"
        vars_file.write_text(json.dumps(variables))
        playbook = HERE / ("module.yml" if method == "module" else "loop.yml")
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json",
        )
        command = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", str(playbook), "-e", f"@{vars_file}"]
        started = time.monotonic()
        try:
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=self.args.timeout, check=False)
        except subprocess.TimeoutExpired:
            return float("inf"), {"error": f"timed out after {self.args.timeout} s"}
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(
                f"bench: {method} converge of {count} failed:\n{failures(done.stdout) or done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        running = self.running()
        if running != count:
            raise SystemExit(f"bench: after the {method} converge of {count}, {running} containers run")
        return elapsed, result

    def docker_run(self, count: int) -> float:
        """`docker run -d` of the same containers, one after another (CLI, as the seeds measured)."""
        containers = specs(count, self.args, self.image, self.run_id, self.secrets)
        started = time.monotonic()
        for spec in containers:
            port = spec["ports"][0]
            command = [
                "docker",
                "run",
                "-d",
                "--name",
                spec["name"],
                "--restart",
                spec["restart_policy"],
                "-p",
                f"127.0.0.1:{port['host_port']}:{port['container_port']}",
                "--memory",
                str(spec["memory"]),
                "--memory-reservation",
                str(spec["memory_reservation"]),
                "--cpus",
                "0.5",
                "--stop-timeout",
                str(spec["stop_timeout"]),
                "--health-cmd",
                self.args.health_cmd,
                "--health-interval",
                "10s",
                "--health-timeout",
                "3s",
                "--health-retries",
                "3",
                "--health-start-period",
                "5s",
            ]
            for key, value in spec["env"].items():
                command += ["-e", f"{key}={value}"]
            for key, value in spec["labels"].items():
                command += ["--label", f"{key}={value}"]
            for mount in spec["mounts"]:
                command += [
                    "--mount",
                    f"type={mount['type']},source={mount['source']},target={mount['target']}" + (",readonly" if mount["read_only"] else ""),
                ]
            done = subprocess.run([*command, spec["image"]], check=False, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"docker run of {spec['name']} failed: {done.stderr.strip()}")
        return time.monotonic() - started


def failures(stdout: str) -> str:
    """The failure messages of an ansible.posix.json report (loop items included)."""
    try:
        report = json.loads(stdout)
    except ValueError:
        return ""
    messages = []
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                if result.get("failed") and not result.get("results"):
                    messages.append(str(result.get("msg")))
                for item in result.get("results") or []:
                    if item.get("failed"):
                        messages.append(f"{(item.get('item') or {}).get('name')}: {item.get('msg')}")
    return "\n".join(messages[:10])


def ports_free(base: int, count: int) -> list[int]:
    busy = []
    for port in range(base + 1, base + count + 2):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "timeout" if seconds == float("inf") else f"{seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", help="image to run (must be on this host); default: a busybox stand-in made here")
    parser.add_argument("--container-port", type=int, default=8000, help="the image's API port (default 8000)")
    parser.add_argument("--health-cmd", default=STANDIN_HEALTH, help="healthcheck command (CMD-SHELL)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment, repeatable")
    parser.add_argument("--sizes", default="10,50,100", help="fresh converge sizes; the largest is also rerun (no-op)")
    parser.add_argument("--add-base", type=int, default=50, help="accounts present before one is added (default 50)")
    parser.add_argument("--parallelism", type=int, default=8, help="mt5_containers worker threads (default 8)")
    parser.add_argument(
        "--port-base", type=int, default=28100, help="host ports base+1.. on 127.0.0.1, below the ephemeral range (default 28100)"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter the module runs under (default: this one)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per converge (default 900)")
    parser.add_argument("--scenarios", default="fresh,add", help="which of fresh (with the no-op rerun), add (default both)")
    parser.add_argument("--no-loop", action="store_true", help="skip the docker_container loop")
    parser.add_argument("--no-docker-run", action="store_true", help="skip the bare docker run reference")
    parser.add_argument("--keep-image", action="store_true", help="keep the stand-in image afterwards")
    args = parser.parse_args()
    args.env = dict(item.split("=", 1) for item in args.env)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    largest = sizes[-1]

    bench = Bench(args)
    busy = ports_free(args.port_base, max(largest, args.add_base + 1))
    if busy:
        sys.exit(f"bench: ports {busy[:10]} on 127.0.0.1 are in use; pick another --port-base")
    version = bench.api.version()
    if args.image:
        bench.image = args.image
        bench.api.inspect_image(args.image)  # fails clearly if it is not loaded
    else:
        bench.image = standin_image(bench.api)
        bench.made_image = True
    load_start = load()
    methods = ["module"] + ([] if args.no_loop else ["loop"])
    rows: list[tuple[str, dict[str, float], str]] = []
    notes: list[str] = []
    try:
        bench.clean()

        def measure(label: str, count: int, before: int | None = None, then_noop: bool = False) -> None:
            times: dict[str, float] = {}
            noop: dict[str, float] = {}
            loads = []
            for method in methods:
                bench.clean()
                if before is not None:
                    log(f"{method}: converging {before} first (not timed)")
                    bench.converge(method, before)
                log(f"{method}: {label} (load {load()})")
                seconds, result = bench.converge(method, count)
                times[method] = seconds
                loads.append(os.getloadavg()[0])
                if method == "module":
                    check_module_result(label, result, count, before)
                if then_noop:
                    log(f"{method}: no-op {count} (load {load()})")
                    seconds, result = bench.converge(method, count)
                    noop[method] = seconds
                    if method == "module" and result.get("changed"):
                        notes.append(f"no-op {count}: the module reported changed=true")
            rows.append((label, times, f"{max(loads):.2f}"))
            if then_noop:
                rows.append((f"no-op {count}", noop, load().split()[0]))

        scenarios = set(args.scenarios.split(","))
        if "fresh" in scenarios:
            for size in sizes:
                measure(f"fresh {size}", size, then_noop=(size == largest))
        if "add" in scenarios:
            measure(f"add 1 to {args.add_base}", args.add_base + 1, before=args.add_base)
        docker_run = None
        if not args.no_docker_run:
            bench.clean()
            log(f"docker run x{largest} (load {load()})")
            try:
                docker_run = bench.docker_run(largest)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                notes.append(f"the docker run reference failed: {error}")
    finally:
        bench.clean()
        if bench.made_image and not args.keep_image:
            try:
                bench.api.remove_image(bench.image)
            except docker.errors.APIError:
                pass
        shutil.rmtree(bench.workdir, ignore_errors=True)

    print_table(rows, methods, docker_run, largest, version, load_start, load(), args, bench.image, notes)


def check_module_result(label: str, result: dict, count: int, before: int | None) -> None:
    if before is not None:
        assert result["created"] and len(result["created"]) == count - before, result["actions"]
        assert len(result["unchanged"]) == before, result["actions"]
    else:
        assert len(result["created"]) == count, result["actions"]


def print_table(rows, methods, docker_run, largest, version, load_start, load_end, args, image, notes) -> None:
    print()
    print(
        f"Converge of one Docker host ({version.get('Version')}, API {version.get('ApiVersion')}, "
        f"{os.cpu_count()} cores), image {image}, mt5_containers parallelism {args.parallelism}"
    )
    print(f"load average at start {load_start}, at end {load_end}")
    print()
    header = f"| {'scenario':<14} | {'mt5_containers':>14} | {'docker_container loop':>21} | {'ratio':>7} | {'load':>5} | {'target':<22} | {'met':<4} |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for label, times, load_1m in rows:
        module_s, loop_s = times.get("module"), times.get("loop")
        ratio = loop_s / module_s if module_s and loop_s and loop_s != float("inf") else None
        target = TARGETS.get(label)
        if label.startswith("add 1"):
            target = TARGETS["add 1 to 50"]
        goals, met = [], []
        if target is not None:
            goals.append(f"<= {target:.0f} s")
            met.append(module_s is not None and module_s <= target)
        if "loop" in methods:
            goals.append(f">= {RATIO_TARGET:.0f}x")
            met.append(ratio is not None and ratio >= RATIO_TARGET)
        print(
            f"| {label:<14} | {fmt(module_s):>14} | {fmt(loop_s):>21} | {(f'{ratio:.2f}x' if ratio else '-'):>7} | "
            f"{load_1m:>5} | {', '.join(goals):<22} | {('yes' if all(met) else 'NO') if met else '-':<4} |"
        )
    totals = {method: sum(times.get(method) or 0.0 for _, times, _ in rows) for method in methods}
    if "loop" in methods and totals["module"]:
        ratio = totals["loop"] / totals["module"]
        print(
            f"| {'all of them':<14} | {fmt(totals['module']):>14} | {fmt(totals['loop']):>21} | {f'{ratio:.2f}x':>7} | "
            f"{'':>5} | {'>= 5x':<22} | {'yes' if ratio >= RATIO_TARGET else 'NO':<4} |"
        )
    print("load: 1-minute load average right after the timed converge (the bench's own containers included)")
    if docker_run is not None:
        print(
            f"\nreference: `docker run -d` of the same {largest} containers one after another: {fmt(docker_run)}"
            f" (the seeds: about 30 s per 100)"
        )
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
