"""The in-container watchdog.

Docker restarts a container whose main process exits, never one that is merely unhealthy,
and supervisord restarts a program that exits, never one that hangs or stays disconnected.
The watchdog closes that gap. Every ``WATCHDOG_INTERVAL`` seconds it asks the service's
``GET /health`` (timeout ``min(interval, 3)`` seconds) and sorts the answer:

- ``ok``: 200;
- ``degraded``: any other HTTP answer (503: the terminal is disconnected or polls are stale);
- ``down``: no answer (refused, reset or timed out: the service died or hangs).

When the service has not been ``ok`` for ``WATCHDOG_GRACE`` seconds (counted from the last
``ok`` answer, the watchdog's start or its last restart, whichever is latest), it restarts
through ``supervisorctl``:

- ``down`` -> the service;
- ``degraded`` -> the first step of the disconnected ladder (the terminal and its bridge in
  the Wine image), the next step if a later grace passes still degraded (adds the service),
  staying on the last step. An ``ok`` answer resets the ladder.

Bound: a service that stops answering at time T is restarted no later than
T + GRACE + INTERVAL + probe timeout, plus the program's stop time (``stopwaitsecs``, 10 s
for the service: a process that ignores SIGTERM, e.g. a stopped one, is then killed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Sequence

OK, DEGRADED, DOWN = "ok", "degraded", "down"


@dataclass(frozen=True)
class Policy:
    grace: float
    interval: float
    on_down: tuple[str, ...] = ("service",)
    on_degraded: tuple[tuple[str, ...], ...] = (("service",),)

    @property
    def timeout(self) -> float:
        return min(self.interval, 3.0)

    @property
    def bound(self) -> float:
        """Worst case from the last good answer to the start of the restart."""
        return self.grace + self.interval + self.timeout


@dataclass
class Decision:
    restart: tuple[str, ...]
    reason: str


@dataclass
class Watchdog:
    """Pure state machine: feed it observations, it says what to restart."""

    policy: Policy
    started: float
    last_ok: float | None = None
    last_restart: float | None = None
    level: int = 0
    history: list[Decision] = field(default_factory=list)

    def _since(self) -> float:
        return max(t for t in (self.started, self.last_ok, self.last_restart) if t is not None)

    def observe(self, now: float, status: str, detail: str = "") -> Decision | None:
        if status == OK:
            self.last_ok = now
            self.level = 0
            return None
        if status not in (DEGRADED, DOWN):
            raise ValueError(f"unknown status {status!r}")
        waited = now - self._since()
        if waited < self.policy.grace:
            return None
        if status == DOWN:
            targets = self.policy.on_down
            reason = f"/health has not answered for {waited:.0f} s (grace {self.policy.grace:g} s)"
        else:
            ladder = self.policy.on_degraded
            targets = ladder[min(self.level, len(ladder) - 1)]
            self.level += 1
            reason = (f"/health has reported not healthy for {waited:.0f} s "
                      f"(grace {self.policy.grace:g} s){': ' + detail if detail else ''}")
        self.last_restart = now
        decision = Decision(tuple(targets), reason)
        self.history.append(decision)
        return decision


def probe(port: int, timeout: float) -> tuple[str, str]:
    """One GET /health: (status, detail). The detail is the service's own reason."""
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return (OK if response.status == 200 else DEGRADED), ""
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read().decode(errors="replace")).get("reason") or ""
        except (ValueError, AttributeError, OSError):
            reason = ""
        return DEGRADED, f"HTTP {exc.code} {reason}".strip()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return DOWN, str(getattr(exc, "reason", exc))


def supervisorctl_restart(programs: Sequence[str]) -> int:
    """Restart programs through supervisord (stop, then start, in the given order)."""
    command = ["supervisorctl", "restart", *programs]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        log("supervisorctl restart timed out after 120 s")
        return 1
    for line in (done.stdout + done.stderr).splitlines():
        log(f"supervisorctl: {line}")
    return done.returncode


def log(message: str) -> None:
    print(f"mt5-watchdog: {message}", flush=True)


def run(policy: Policy, port: int,
        probe_fn: Callable[[int, float], tuple[str, str]] = probe,
        restart_fn: Callable[[Sequence[str]], int] = supervisorctl_restart,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rounds: int | None = None) -> None:
    dog = Watchdog(policy, started=clock())
    log(f"watching http://127.0.0.1:{port}/health every {policy.interval:g} s, grace {policy.grace:g} s; "
        f"not answering -> restart {','.join(policy.on_down)}; not healthy -> restart "
        + " then ".join(",".join(step) for step in policy.on_degraded)
        + f"; bound {policy.bound:g} s + stop time")
    previous = None
    count = 0
    while rounds is None or count < rounds:
        count += 1
        began = clock()
        status, detail = probe_fn(port, policy.timeout)
        if status != previous:
            log(f"/health is {status}{': ' + detail if detail else ''}")
            previous = status
        decision = dog.observe(clock(), status, detail)
        if decision:
            log(f"{decision.reason}: restarting {', '.join(decision.restart)}")
            restart_fn(decision.restart)
            previous = None
        sleep(max(0.0, policy.interval - (clock() - began)))


def _seconds(name: str, default: float, low: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"mt5-watchdog: {name}={raw!r} is not a number of seconds") from None
    if value < low:
        raise SystemExit(f"mt5-watchdog: {name}={value:g} is below {low:g} s")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mt5-watchdog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--on-down", default="service",
                        help="programs restarted when /health does not answer (comma-separated)")
    parser.add_argument("--on-degraded", action="append", default=None,
                        help="programs restarted when /health is not 200; repeat for the next steps")
    args = parser.parse_args(argv)
    policy = Policy(
        grace=_seconds("WATCHDOG_GRACE", 60.0, 1.0),
        interval=_seconds("WATCHDOG_INTERVAL", 5.0, 0.2),
        on_down=tuple(p for p in args.on_down.split(",") if p),
        on_degraded=tuple(tuple(p for p in step.split(",") if p) for step in (args.on_degraded or ["service"])),
    )
    port = int(os.environ.get("SERVICE_PORT", "8000"))
    try:
        run(policy, port)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
