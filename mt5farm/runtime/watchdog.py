"""The in-container watchdog.

Docker restarts a container whose main process exits, never one that is merely unhealthy,
and supervisord restarts a program that exits, never one that hangs or stays disconnected.
The watchdog closes that gap. It asks the service's ``GET /health`` (over HTTPS, verified
against the farm's CA, when the service serves HTTPS: health_target) every ``WATCHDOG_INTERVAL``
seconds (5) while the answers are 200, and every ``RECHECK`` seconds (2; at most the interval)
once one is not, with a timeout of ``min(interval, 2)`` seconds, and sorts the answer:

- ``ok``: 200;
- ``held``: a 503 that says the broker refused the login (``auth_failed: true``, or a reason
  starting ``auth_failed:``; the service's login_guard, issue 12 fault 6). Every start of the
  terminal is a login at the broker (its start ini holds the password), and brokers lock
  accounts and ban addresses for repeated failures: the watchdog restarts nothing for it, says
  once that it holds off, and treats the service normally again when an answer no longer says
  so (the password secret changed) — from then on as a first connect;
- ``degraded``: any other HTTP answer (503: the terminal is disconnected, still starting, or
  polls are stale). The service runs and can be asked to stop;
- ``down``: no answer (refused, reset or timed out): the service process is dead or hung.

Trading switched off while connected (AutoTrading off, an investor password) is a 200 with
``trade_allowed: false``: ``ok``, nothing to restart.

Three allowances, each counted from the latest of the watchdog's start, its last restart and
the end of a hold:

- *first connect* (``WATCHDOG_FIRST_CONNECT``, FIRST_CONNECT; never less than the grace): until
  the service has been healthy (200) once since then, the terminal is starting — a Wine prefix
  and terminal on a 0.5-CPU container take minutes, and killing it before it ever connects
  repeats the start in a loop (issue 12, fault 8). A service that does not answer at all in
  this time, or keeps answering not healthy, is restarted (as below) after it;
- *grace* (``WATCHDOG_GRACE``, GRACE, 120 s): a service that was healthy since then and is not
  any more gets this long, from its last 200, to reconnect by itself -> the gentle ladder
  through ``supervisorctl restart`` (SIGTERM, then ``stopwaitsecs``): the terminal and its
  bridge in the Wine image, then also the service if a later allowance passes still degraded,
  staying on the last step. A 200 resets the ladder;
- *down grace* (``WATCHDOG_DOWN_GRACE``, 10 s; never more than the grace): a service that has
  answered since then and stops answering is hung -> its process group gets SIGKILL and
  supervisord (``autorestart``) starts it again at once; one not running at all (supervisord
  gave up) is started. A hung process cannot act on SIGTERM, so none is sent and nothing waits
  for ``stopwaitsecs``. This is hang detection: never stretched by the backoff below.

Backoff: each restart without a healthy period in between doubles the next first-connect and
grace allowance (a terminal that cannot connect is restarted after 1, 2, 4, ... times its
allowance, at most BACKOFF_MAX apart), so a start that is slow, or a broker that is down, is
not hammered. ``BACKOFF_RESET`` seconds of 200 in a row reset it.

Why these numbers. A healthy service answers /health on loopback in milliseconds; a GC pause,
a burst of requests or a busy host can delay an answer by a second or two, so one probe may
time out (2 s). Five consecutive misses over 10 s, re-asked every 2 s, are not that: the
process is gone or stopped. 2 s between re-checks keeps the decision within 2 s of the grace
and costs nothing (one loopback request). 5 s between healthy probes is unchanged. The grace
is longer than the account service's own reconnect (RECONNECT_BOUND, 105 s: the poll that
notices a loss plus one whole ``initialize``, mt5_account_service.timeouts), so a restart never
cuts that short; tests/images/test_image_watchdog.py checks the chain of timeouts.

Bound (a service that hangs at T, defaults): its last answer was at or before T; the first
miss is seen by T + interval + timeout (7 s), then one every 2 s, so the SIGKILL is sent by
T + max(down grace + recheck, interval + timeout) = T + 12 s. supervisord reaps and respawns
within 1 s (its loop wakes every second at the latest) and the service answers again after its
start (about 1.6 s measured in the simulator image from SIGKILL to 200, allowed 8 s on a loaded host):
T + 12 + 1 + 8 = T + 21 s, 9 s inside the PRD's 30 s. A restarted service is starting again
until its first 200, so its own start is never cut short by the down grace.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

OK, HELD, DEGRADED, DOWN = "ok", "held", "degraded", "down"
# Seconds between probes once one was not 200 (at most the interval), and a probe's timeout.
RECHECK = 2.0
PROBE_TIMEOUT = 2.0
# From the SIGKILL to supervisord's respawn (its main loop wakes at least once a second).
RESPAWN = 1.0
# What the service may take from its start to its first answer on a loaded host (about
# 1.6 s measured in the simulator image; the Wine image's Linux service is the same program).
SERVICE_START = 8.0

#: WATCHDOG_INTERVAL's default: seconds between probes while the answers are 200.
INTERVAL = 5.0
#: WATCHDOG_GRACE's default, seconds a service that was healthy may stay not healthy before the
#: terminal side is restarted. More than the account service's RECONNECT_BOUND (105 s:
#: mt5_account_service.timeouts, the poll that notices a lost connection plus one whole
#: ``initialize`` of 60 s + 15 s), so the service's own reconnect is never cut short.
GRACE = 120.0
#: WATCHDOG_DOWN_GRACE's default, seconds without any answer before a service that answered
#: since its start is killed as hung (five missed probes; see the module's "Why these numbers").
DOWN_GRACE = 10.0
#: WATCHDOG_FIRST_CONNECT's default, seconds from a (re)start to the first 200 before the
#: terminal side is restarted: a cold Wine prefix and terminal under the account's CPU limit
#: (0.5 CPU), its first login, the bridge's start and one whole ``initialize`` (75 s waited).
#: Measured (bench/wine_cold_start.py, 2026-12-02, the 2-core test machine): a cold container of
#: the wine image's booted prefix under --cpus 0.5 runs its first Windows program after 2.0 s
#: (median of 1.9, 2.0, 2.1 s; a new data volume each run): the prefix costs little, since it
#: is booted when the image is built. What it cannot measure here (no terminal, no broker) is
#: bounded by the timeouts the watchdog waits on: the terminal's own start allowance
#: (mt5farm.runtime.terminal.START_TIMEOUT, 120 s, which the bridge also waits) and one whole
#: initialize (75 s), 195 s; 300 s leaves 105 s for a loaded host on top of the measured boot.
#: Docker's healthcheck start_period (mt5_linux_first_connect) is the same number.
FIRST_CONNECT = 300.0
#: Longest allowance the backoff grows to, seconds (30 min: two restarts an hour at worst for
#: a terminal that cannot connect, against 60 an hour with a fixed 60 s grace).
BACKOFF_MAX = 1800.0
#: Seconds of 200 in a row after which the backoff starts again from 1x: a terminal that stays
#: connected for 10 minutes came up for real; one that drops again within minutes (a flapping
#: network, a broker shedding connections) keeps its longer allowance.
BACKOFF_RESET = 600.0


@dataclass(frozen=True)
class Policy:
    """The watchdog's allowances in seconds (see the module's doc for what each one counts)."""

    grace: float = GRACE
    interval: float = INTERVAL
    on_down: tuple[str, ...] = ("service",)
    on_degraded: tuple[tuple[str, ...], ...] = (("service",),)
    down_grace: float = DOWN_GRACE
    first_connect: float = FIRST_CONNECT
    backoff_max: float = BACKOFF_MAX
    backoff_reset: float = BACKOFF_RESET

    @property
    def timeout(self) -> float:
        return min(self.interval, PROBE_TIMEOUT)

    @property
    def recheck(self) -> float:
        """Seconds between probes once one was not 200."""
        return min(self.interval, RECHECK)

    @property
    def no_answer_grace(self) -> float:
        """The down grace, never longer than the degraded one."""
        return min(self.down_grace, self.grace)

    @property
    def first_connect_allowance(self) -> float:
        """The first-connect allowance, never shorter than the grace."""
        return max(self.first_connect, self.grace)

    def backed_off(self, allowance: float, restarts: int) -> float:
        """``allowance`` after ``restarts`` restarts without a healthy period: doubled each
        time, at most ``backoff_max`` (never less than the allowance itself)."""
        return min(allowance * 2.0 ** min(restarts, 32), max(allowance, self.backoff_max))

    @property
    def down_bound(self) -> float:
        """Worst case from a hang (the service's last answer) to the SIGKILL."""
        return max(self.no_answer_grace + max(self.recheck, self.timeout), self.interval + self.timeout)

    @property
    def recovery_bound(self) -> float:
        """Worst case from a hang to the service answering again (its start allowed SERVICE_START)."""
        return self.down_bound + RESPAWN + SERVICE_START

    @property
    def bound(self) -> float:
        """Worst case from the last 200 to the start of a restart for a service that stays degraded."""
        return max(self.grace + max(self.recheck, self.timeout), self.interval + self.timeout)

    @property
    def first_connect_bound(self) -> float:
        """Worst case from a (re)start to the restart of a terminal that never connects."""
        return self.first_connect_allowance + max(self.recheck, self.timeout)


@dataclass
class Decision:
    restart: tuple[str, ...]
    reason: str
    kill: bool = False


@dataclass
class Watchdog:
    """Pure state machine: feed it observations, it says what to restart and how."""

    policy: Policy
    started: float
    last_ok: float | None = None
    last_answer: float | None = None
    last_restart: float | None = None
    #: When the last hold (auth_failed) ended: the clocks count again from there.
    resumed: float | None = None
    #: Since when the service says auth_failed (None: it does not).
    held_since: float | None = None
    #: Since when every answer was 200 (None: the last was not).
    healthy_since: float | None = None
    #: Restarts without BACKOFF_RESET seconds of 200 in between (the backoff's exponent).
    restarts: int = 0
    level: int = 0
    history: list[Decision] = field(default_factory=list)

    def _latest(self, *times: float | None) -> float:
        return max(t for t in (self.started, self.last_restart, self.resumed, *times) if t is not None)

    @property
    def starting(self) -> bool:
        """No answer yet since the watchdog's start or its last restart."""
        return self.last_answer is None or self.last_answer < self._latest()

    @property
    def connected_once(self) -> bool:
        """A 200 since the watchdog's start, its last restart or the end of a hold."""
        return self.last_ok is not None and self.last_ok >= self._latest()

    @property
    def held(self) -> bool:
        return self.held_since is not None

    def observe(self, now: float, status: str, detail: str = "") -> Decision | None:
        if status not in (OK, HELD, DEGRADED, DOWN):
            raise ValueError(f"unknown status {status!r}")
        if status == OK:
            self.last_ok = self.last_answer = now
            self.level = 0
            self.held_since = None
            if self.healthy_since is None:
                self.healthy_since = now
            if now - self.healthy_since >= self.policy.backoff_reset:
                self.restarts = 0
            return None
        self.healthy_since = None
        if status == HELD:
            self.last_answer = now
            if self.held_since is None:
                self.held_since = now
            return None
        if status == DOWN:
            starting = self.starting
            if starting:
                grace = self.policy.backed_off(self.policy.first_connect_allowance, self.restarts)
            else:
                grace = self.policy.no_answer_grace
            waited = now - self._latest(self.last_answer)
            if waited < grace:
                return None
            targets = self.policy.on_down
            reason = (
                f"/health has not answered for {waited:.0f} s (grace {grace:g} s{', not answered since its start' if starting else ''})"
            )
            decision = Decision(tuple(targets), reason, kill=True)
        else:
            self.last_answer = now
            if self.held_since is not None:  # auth_failed cleared: a new login, counted as a first connect
                self.held_since = None
                self.resumed = now
            first = not self.connected_once
            base = self.policy.first_connect_allowance if first else self.policy.grace
            grace = self.policy.backed_off(base, self.restarts)
            waited = now - self._latest(self.last_ok)
            if waited < grace:
                return None
            ladder = self.policy.on_degraded
            targets = ladder[min(self.level, len(ladder) - 1)]
            self.level += 1
            what = "has not been healthy since its start" if first else "has reported not healthy"
            reason = (
                f"/health {what} for {waited:.0f} s ({'first-connect allowance' if first else 'grace'} {grace:g} s"
                f"{f', backed off after {self.restarts} restarts' if self.restarts else ''}){': ' + detail if detail else ''}"
            )
            decision = Decision(tuple(targets), reason)
        self.last_restart = now
        self.restarts += 1
        self.history.append(decision)
        return decision


def health_target(port: int, secrets_dir: str | None = None) -> tuple[str, ssl.SSLContext | None]:
    """Where /health is asked: ``(url, None)`` for ``http://127.0.0.1:<port>/health``, or, when
    the service serves HTTPS (TLS between hosts: ``tls_cert.pem`` in its secrets directory,
    ``secrets_dir``, default ``MT5_SECRETS_DIR`` or /run/secrets/mt5), ``https://`` with a
    context that verifies its certificate (which names 127.0.0.1) against the farm's CA,
    ``tls_ca.pem`` there. The service's own healthcheck (mt5_account_service.cli) asks the same
    way; a plain HTTP probe of an HTTPS service would never answer, and the service would be
    killed as hung again and again.
    """
    directory = Path(secrets_dir or os.environ.get("MT5_SECRETS_DIR") or "/run/secrets/mt5")
    if not (directory / "tls_cert.pem").is_file():
        return f"http://127.0.0.1:{port}/health", None
    ca = directory / "tls_ca.pem"
    return f"https://127.0.0.1:{port}/health", ssl.create_default_context(cafile=str(ca) if ca.is_file() else None)


def classify(code: int, body: bytes) -> tuple[str, str]:
    """(status, detail) of a /health answer with HTTP status ``code`` and JSON ``body``: ``ok``
    for 200; ``held`` for an answer that says the broker refused the login (``auth_failed``
    true, or a reason starting ``auth_failed:``: restarting would log in again); else
    ``degraded``, with the service's reason."""
    if code == 200:
        return OK, ""
    try:
        answer = json.loads(body.decode(errors="replace"))
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    reason = str(answer.get("reason") or "")
    if answer.get("auth_failed") is True or reason.startswith("auth_failed:"):
        return HELD, f"HTTP {code} {reason or 'auth_failed'}"
    return DEGRADED, f"HTTP {code} {reason}".strip()


def probe(port: int, timeout: float, secrets_dir: str | None = None) -> tuple[str, str]:
    """One GET /health (health_target: HTTP, or HTTPS when the service serves it): (status,
    detail), the answer sorted by :func:`classify`; ``down`` when there is none. The detail is
    the service's own reason."""
    try:
        url, context = health_target(port, secrets_dir)
    except (OSError, ssl.SSLError) as exc:  # an unreadable CA file: nothing can be asked
        return DOWN, f"cannot use the TLS files: {exc}"
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return classify(response.status, b"" if response.status == 200 else response.read())
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read()
        except OSError:
            body = b""
        return classify(exc.code, body)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return DOWN, str(getattr(exc, "reason", exc))


def supervisorctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    command = ["supervisorctl", *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, 1, "", f"supervisorctl {' '.join(args)} timed out after {timeout:g} s")


def supervisorctl_restart(programs: Sequence[str]) -> int:
    """Restart programs through supervisord (stop, then start, in the given order)."""
    done = supervisorctl("restart", *programs)
    for line in (done.stdout + done.stderr).splitlines():
        log(f"supervisorctl: {line}")
    return done.returncode


# supervisord states after which it starts nothing by itself.
_IDLE_STATES = ("STOPPED", "EXITED", "FATAL")


def _state(program: str, ctl: Callable[..., subprocess.CompletedProcess]) -> tuple[str, int]:
    """(state, pid) of a program as supervisord reports it; ("UNKNOWN", 0) if it cannot say."""
    fields = ctl("status", program, timeout=10).stdout.split()
    state = fields[1] if len(fields) > 1 and fields[0] == program else "UNKNOWN"
    pid = 0
    if "pid" in fields:
        try:
            pid = int(fields[fields.index("pid") + 1].rstrip(","))
        except (IndexError, ValueError):
            pid = 0
    return state, pid


def supervisor_kill(
    programs: Sequence[str],
    ctl: Callable[..., subprocess.CompletedProcess] = supervisorctl,
    kill: Callable[[int, int], None] = os.killpg,
    sleep: Callable[[float], None] = time.sleep,
    settle: float = 3.0,
) -> int:
    """SIGKILL each program's process group (supervisord made each program a group leader);
    supervisord's autorestart starts it again at once. A program that is not running, or that
    supervisord does not start again within ``settle`` seconds, is started. Never a SIGTERM: a
    hung process cannot act on it, and waiting ``stopwaitsecs`` for it only delays recovery."""
    failures = 0
    for program in programs:
        state, pid = _state(program, ctl)
        if pid > 0:
            try:
                kill(pid, signal.SIGKILL)
                log(f"sent SIGKILL to {program} (pid {pid} and its process group, was {state})")
            except ProcessLookupError:
                log(f"{program} (pid {pid}) was already gone")
            except PermissionError as exc:
                log(f"cannot signal {program} (pid {pid}): {exc}")
                failures += 1
                continue
            waited = 0.0
            while waited < settle:
                sleep(0.25)
                waited += 0.25
                state, now_pid = _state(program, ctl)
                if now_pid not in (0, pid) or state in _IDLE_STATES:
                    break
        if state in _IDLE_STATES or state == "UNKNOWN" or pid <= 0:
            state, _ = _state(program, ctl)
            if state in ("RUNNING", "STARTING", "BACKOFF"):
                log(f"supervisord is starting {program} again ({state})")
                continue
            done = ctl("start", program)
            for line in (done.stdout + done.stderr).splitlines():
                log(f"supervisorctl: {line}")
            failures += done.returncode != 0
        else:
            log(f"supervisord is starting {program} again ({state})")
    return failures


def log(message: str) -> None:
    print(f"mt5-watchdog: {message}", flush=True)


def describe(policy: Policy, port: int) -> str:
    """The start line: what is watched, how, and the bounds that follow."""
    return (
        f"watching http://127.0.0.1:{port}/health every {policy.interval:g} s (every {policy.recheck:g} s once "
        f"not 200, timeout {policy.timeout:g} s); no answer for {policy.no_answer_grace:g} s -> SIGKILL "
        f"{','.join(policy.on_down)} and let supervisord start it (hang -> SIGKILL <= {policy.down_bound:g} s, "
        f"answering again <= {policy.recovery_bound:g} s with {RESPAWN:g} s respawn + {SERVICE_START:g} s start); "
        f"not healthy for {policy.grace:g} s -> restart "
        + " then ".join(",".join(step) for step in policy.on_degraded)
        + f" (bound {policy.bound:g} s + stop time); not healthy since a start or restart: first-connect allowance "
        f"{policy.first_connect_allowance:g} s; each restart without {policy.backoff_reset:g} s of health doubles the next "
        f"allowance (at most {max(policy.backoff_max, policy.first_connect_allowance):g} s); auth_failed: nothing restarted"
    )


def run(
    policy: Policy,
    port: int,
    probe_fn: Callable[[int, float], tuple[str, str]] = probe,
    restart_fn: Callable[[Sequence[str]], int] = supervisorctl_restart,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
    kill_fn: Callable[[Sequence[str]], int] = supervisor_kill,
) -> None:
    dog = Watchdog(policy, started=clock())
    log(describe(policy, port))
    previous = None
    count = 0
    while rounds is None or count < rounds:
        count += 1
        began = clock()
        status, detail = probe_fn(port, policy.timeout)
        if status != previous:
            log(f"/health is {status}{': ' + detail if detail else ''}")
            previous = status
        was_held = dog.held
        decision = dog.observe(clock(), status, detail)
        if dog.held and not was_held:
            log(
                "holding off: the broker refused the login (auth_failed); a restart of the terminal would log in "
                "again, so nothing is restarted for it until /health stops reporting auth_failed (the password "
                "secret changed)"
            )
        elif was_held and not dog.held:
            log(f"auth_failed cleared: watching normally again, first-connect allowance {policy.first_connect_allowance:g} s from now")
        if decision:
            if decision.kill:
                log(f"{decision.reason}: restarting {', '.join(decision.restart)} (SIGKILL, no stop wait)")
                kill_fn(decision.restart)
            else:
                log(f"{decision.reason}: restarting {', '.join(decision.restart)}")
                restart_fn(decision.restart)
            previous = None
        pause = policy.interval if status in (OK, HELD) else policy.recheck
        sleep(max(0.0, pause - (clock() - began)))


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
    parser = argparse.ArgumentParser(prog="mt5-watchdog", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--on-down", default="service", help="programs killed (SIGKILL) and started again when /health does not answer (comma-separated)"
    )
    parser.add_argument(
        "--on-degraded", action="append", default=None, help="programs restarted when /health is not 200; repeat for the next steps"
    )
    args = parser.parse_args(argv)
    policy = Policy(
        grace=_seconds("WATCHDOG_GRACE", GRACE, 1.0),
        interval=_seconds("WATCHDOG_INTERVAL", INTERVAL, 0.2),
        on_down=tuple(p for p in args.on_down.split(",") if p),
        on_degraded=tuple(tuple(p for p in step.split(",") if p) for step in (args.on_degraded or ["service"])),
        down_grace=_seconds("WATCHDOG_DOWN_GRACE", DOWN_GRACE, 1.0),
        first_connect=_seconds("WATCHDOG_FIRST_CONNECT", FIRST_CONNECT, 1.0),
    )
    port = int(os.environ.get("SERVICE_PORT", "8000"))
    try:
        run(policy, port)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
