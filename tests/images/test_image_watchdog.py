"""The watchdog: kill and restart a hung service within the PRD's 30 s, restart a disconnected terminal gently."""

import http.server
import json
import shutil
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from mt5_account_service import timeouts

from mt5farm.runtime import terminal
from mt5farm.runtime.watchdog import (
    DEGRADED,
    DOWN,
    FIRST_CONNECT,
    GRACE,
    HELD,
    OK,
    RESPAWN,
    Policy,
    Watchdog,
    classify,
    describe,
    health_target,
    probe,
    run,
    supervisor_kill,
)

# A first-connect allowance (180 s) apart from the grace (60 s), so each test shows which applies.
WINE = Policy(
    grace=60, interval=5, first_connect=180, on_down=("service",), on_degraded=(("terminal", "bridge"), ("terminal", "bridge", "service"))
)


def feed(dog, observations):
    """observations: [(time, status)] -> [(time, targets)] of the restarts."""
    restarts = []
    for now, status in observations:
        decision = dog.observe(now, status)
        if decision:
            restarts.append((now, decision.restart))
    return restarts


def test_nothing_is_restarted_within_the_first_connect_allowance_from_the_start():
    """Issue 12, fault 8: a cold terminal is not judged by the grace (60 s) before its first connect."""
    for status in (DOWN, DEGRADED):
        dog = Watchdog(WINE, started=0)
        assert feed(dog, [(t, status) for t in range(0, 180, 5)]) == [], status


def test_a_terminal_that_never_connects_is_restarted_after_the_first_connect_allowance():
    dog = Watchdog(WINE, started=0)
    assert feed(dog, [(t, DEGRADED) for t in range(0, 186, 5)]) == [(180, ("terminal", "bridge"))]
    assert "since its start" in dog.history[0].reason and "first-connect allowance 180 s" in dog.history[0].reason
    assert not dog.history[0].kill


def test_a_service_that_never_answers_is_restarted_after_the_first_connect_allowance():
    dog = Watchdog(WINE, started=0)
    assert feed(dog, [(t, DOWN) for t in range(0, 186, 5)]) == [(180, ("service",))]


def test_a_service_that_never_answers_is_killed_not_stopped():
    decision = Watchdog(WINE, started=0).observe(180, DOWN)
    assert decision.kill and decision.restart == ("service",)
    assert "not answered since its start" in decision.reason, "before its first answer a service is starting"


def test_the_first_connect_allowance_is_never_shorter_than_the_grace():
    assert Policy(grace=60, interval=5, first_connect=30).first_connect_allowance == 60
    dog = Watchdog(Policy(grace=60, interval=5, first_connect=30), started=0)
    assert feed(dog, [(t, DEGRADED) for t in range(0, 66, 5)]) == [(60, ("service",))]


def test_the_defaults_give_a_cold_start_more_than_the_grace():
    policy = Policy()
    assert (policy.grace, policy.first_connect) == (GRACE, FIRST_CONNECT)
    assert policy.first_connect_allowance > policy.grace


def test_a_hung_service_is_killed_after_the_down_grace_from_its_last_answer():
    dog = Watchdog(WINE, started=0)
    observations = [(t, OK) for t in range(0, 100, 5)] + [(t, DOWN) for t in range(97, 200, 2)]
    restarts = feed(dog, observations)
    assert restarts[0] == (105, ("service",)), "last answer at 95: killed at the first probe at or after 95 + 10"
    assert dog.history[0].kill and "(grace 10 s)" in dog.history[0].reason


def test_a_degraded_service_counts_from_the_last_200_and_is_restarted_gently():
    dog = Watchdog(WINE, started=0)
    observations = [(t, OK) for t in range(0, 100, 5)] + [(t, DEGRADED) for t in range(97, 200, 2)]
    assert feed(dog, observations)[0] == (155, ("terminal", "bridge")), "last 200 at 95: restarted at 95 + 60"
    assert not dog.history[0].kill and "reported not healthy" in dog.history[0].reason


def test_the_down_clock_counts_from_any_answer_the_degraded_clock_from_the_last_200():
    """A disconnected terminal (503 for 50 s), then the service hangs: 10 s after its last 503."""
    dog = Watchdog(WINE, started=0)
    observations = [(0, OK)] + [(t, DEGRADED) for t in range(1, 51, 2)] + [(t, DOWN) for t in range(51, 80, 2)]
    assert feed(dog, observations) == [(59, ("service",))]
    assert dog.history[0].kill


def test_a_restarted_service_gets_its_start_before_it_is_judged_again():
    """After the SIGKILL the service is starting: no second kill until it has answered, or the long allowance."""
    dog = Watchdog(WINE, started=0)
    observations = [
        (0, OK),
        *[(t, DOWN) for t in range(2, 11, 2)],  # hung after 0: killed at 10
        *[(t, DOWN) for t in range(12, 40, 2)],  # a slow start: 30 s without an answer
        (40, OK),
        *[(t, DOWN) for t in range(42, 53, 2)],
    ]  # answers, then hangs again
    assert feed(dog, observations) == [(10, ("service",)), (50, ("service",))], "hang detection is never backed off"


def test_restarts_back_off_exponentially_up_to_the_cap():
    """A service that never comes back: killed after 10 s (hung), then after 360, 720, 1440 s
    (the first-connect allowance doubled per restart), then every 1800 s (BACKOFF_MAX)."""
    dog = Watchdog(WINE, started=0)
    restarts = feed(dog, [(0, OK)] + [(t, DOWN) for t in range(2, 7000, 2)])
    assert [t for t, _ in restarts] == [10, 370, 1090, 2530, 4330, 6130]
    assert "backed off" not in dog.history[0].reason


def test_a_terminal_that_never_connects_is_restarted_less_and_less_often():
    dog = Watchdog(WINE, started=0)
    restarts = feed(dog, [(t, DEGRADED) for t in range(0, 2000, 5)])
    assert [t for t, _ in restarts] == [180, 540, 1260]
    assert "backed off after 2 restarts" in dog.history[2].reason


def test_a_healthy_period_resets_the_backoff():
    dog = Watchdog(WINE, started=0)
    restarts = feed(dog, [(t, DEGRADED) for t in range(0, 181, 5)])  # never connected: restarted at 180
    restarts += feed(dog, [(t, OK) for t in range(200, 801, 5)])  # 600 s of 200: the backoff is reset
    restarts += feed(dog, [(t, DEGRADED) for t in range(805, 900, 5)])
    assert restarts == [(180, ("terminal", "bridge")), (860, ("terminal", "bridge"))], "the grace from the last 200, 1x again"


def test_a_short_healthy_spell_keeps_the_backoff():
    dog = Watchdog(WINE, started=0)
    observations = [(0, OK)] + [(t, DEGRADED) for t in range(5, 61, 5)] + [(65, OK)] + [(t, DEGRADED) for t in range(70, 200, 5)]
    assert feed(dog, observations) == [(60, ("terminal", "bridge")), (185, ("terminal", "bridge"))], (
        "a 200 resets the ladder; 5 s of health do not reset the backoff: 2 x 60 s from the last 200"
    )


def test_after_a_restart_a_terminal_gets_the_first_connect_allowance_again():
    """Connected, lost for the grace -> restarted; the restarted terminal is cold again."""
    dog = Watchdog(WINE, started=0)
    observations = [(0, OK)] + [(t, DEGRADED) for t in range(5, 500, 5)]
    assert [t for t, _ in feed(dog, observations)] == [60, 60 + 2 * 180]


def test_a_disconnected_terminal_climbs_the_ladder_then_stays_on_its_last_step():
    dog = Watchdog(WINE, started=0)
    restarts = feed(dog, [(t, DEGRADED) for t in range(0, 2600, 5)])
    assert restarts == [
        (180, ("terminal", "bridge")),
        (540, ("terminal", "bridge", "service")),
        (1260, ("terminal", "bridge", "service")),
    ]
    assert not any(decision.kill for decision in dog.history), "a service that answers is stopped gently"


def test_missed_probes_shorter_than_the_down_grace_restart_nothing():
    """A GC pause or a burst: up to four consecutive misses (8 s) between answers."""
    dog = Watchdog(WINE, started=0)
    observations = [(t, DOWN if (t // 2) % 5 else OK) for t in range(0, 600, 2)]
    assert feed(dog, observations) == []


def test_flapping_health_that_recovers_within_the_grace_restarts_nothing():
    dog = Watchdog(WINE, started=0)
    observations = [(t, DEGRADED if (t // 5) % 4 else OK) for t in range(0, 600, 5)]
    assert feed(dog, observations) == []


def test_the_simulator_policy_restarts_the_service_when_not_healthy():
    dog = Watchdog(Policy(grace=10, interval=1, first_connect=20), started=0)
    assert feed(dog, [(0, OK)] + [(t, DEGRADED) for t in range(1, 12)]) == [(10, ("service",))]


def test_unknown_status_is_an_error():
    with pytest.raises(ValueError):
        Watchdog(WINE, started=0).observe(1, "sleepy")


# --- issue 12, fault 6: a refused login is not a reason to restart ---------------------------
def test_auth_failed_restarts_nothing_however_long_it_lasts():
    """Every terminal start is a login at the broker: 10 hours of auth_failed, no restart."""
    dog = Watchdog(WINE, started=0)
    assert feed(dog, [(0, OK)] + [(t, HELD) for t in range(5, 36000, 5)]) == []
    assert dog.held


def test_auth_failed_from_the_start_restarts_nothing():
    dog = Watchdog(WINE, started=0)
    assert feed(dog, [(t, DEGRADED) for t in range(0, 20, 5)] + [(t, HELD) for t in range(20, 4000, 5)]) == []


def test_when_auth_failed_clears_the_terminal_gets_a_first_connect_allowance_from_then():
    dog = Watchdog(WINE, started=0)
    restarts = feed(dog, [(0, OK)] + [(t, HELD) for t in range(5, 1000, 5)] + [(t, DEGRADED) for t in range(1000, 1300, 5)])
    assert restarts == [(1180, ("terminal", "bridge"))], "not at once (the clock would say 1000 s), 180 s after the hold ended"
    assert not dog.held


def test_a_service_that_hangs_while_auth_failed_is_still_killed():
    """Killing the service is no login (login_guard keeps its count across restarts)."""
    dog = Watchdog(WINE, started=0)
    restarts = feed(dog, [(0, OK)] + [(t, HELD) for t in range(5, 100, 5)] + [(t, DOWN) for t in range(97, 120, 2)])
    assert restarts == [(105, ("service",))]


def test_trading_switched_off_while_connected_is_healthy():
    """trade_allowed false with connected true is a 200 (routers/health.py): nothing to restart."""
    body = json.dumps({"status": "ok", "connected": True, "trade_allowed": False, "trade_reason": "AutoTrading is off"}).encode()
    assert classify(200, body) == (OK, "")
    dog = Watchdog(WINE, started=0)
    assert feed(dog, [(t, classify(200, body)[0]) for t in range(0, 3600, 5)]) == []


def test_classify_sorts_auth_failed_apart_from_other_503s():
    held = {"status": "degraded", "connected": False, "reason": "auth_failed: refused 3 times", "auth_failed": True}
    assert classify(503, json.dumps(held).encode()) == (HELD, "HTTP 503 auth_failed: refused 3 times")
    # The first refusals, before login_guard stops: auth_failed is still false, the reason says it.
    early = {"status": "degraded", "connected": False, "reason": "auth_failed: initialize() failed", "auth_failed": False}
    assert classify(503, json.dumps(early).encode())[0] == HELD
    flag_only = {"status": "degraded", "connected": False, "reason": "not connected", "auth_failed": True}
    assert classify(503, json.dumps(flag_only).encode())[0] == HELD
    other = {"status": "degraded", "connected": False, "reason": "not connected yet", "auth_failed": False}
    assert classify(503, json.dumps(other).encode()) == (DEGRADED, "HTTP 503 not connected yet")
    assert classify(503, b"<html>bad gateway</html>") == (DEGRADED, "HTTP 503")
    assert classify(503, b"[1, 2]") == (DEGRADED, "HTTP 503")


def test_run_logs_the_hold_once_and_its_end(capsys):
    answers = iter([(OK, "")] + [(HELD, "HTTP 503 auth_failed: refused")] * 50 + [(OK, "")] * 3)
    clock = [0.0]
    restarts = []
    run(
        WINE,
        8000,
        probe_fn=lambda port, timeout: next(answers),
        restart_fn=lambda programs: restarts.append(tuple(programs)) or 0,
        kill_fn=lambda programs: restarts.append(tuple(programs)) or 0,
        clock=lambda: clock[0],
        sleep=lambda seconds: clock.__setitem__(0, clock[0] + max(seconds, 1.0)),
        rounds=54,
    )
    out = capsys.readouterr().out
    assert restarts == []
    assert out.count("holding off: the broker refused the login (auth_failed)") == 1
    assert out.count("auth_failed cleared: watching normally again") == 1


ROLES = Path(__file__).resolve().parents[2] / "roles"


def test_the_chain_of_timeouts_from_initialize_to_the_converge_is_in_order():
    """Issue 12, faults 7 and 8: each wait longer than the wait it contains, from the terminal's
    initialize to the converge that waits for a new container, role defaults included."""
    linux = yaml.safe_load((ROLES / "mt5_linux" / "defaults" / "main.yml").read_text())
    image = yaml.safe_load((ROLES / "mt5_image" / "defaults" / "main.yml").read_text())
    dockerfile = (ROLES / "mt5_image" / "templates" / "Dockerfile.j2").read_text()
    assert timeouts.INITIALIZE_TIMEOUT < timeouts.RPYC_INITIALIZE_TIMEOUT < timeouts.RECONNECT_BOUND < GRACE
    assert GRACE < FIRST_CONNECT, "a cold start gets more than a reconnect"
    assert terminal.START_TIMEOUT + timeouts.RPYC_INITIALIZE_TIMEOUT < FIRST_CONNECT, "the terminal's start, then one initialize"
    assert image["mt5_image_watchdog_grace"] == GRACE and image["mt5_image_watchdog_interval"] == Policy().interval
    assert image["mt5_image_watchdog_first_connect"] == FIRST_CONNECT == linux["mt5_linux_first_connect"]
    assert "--start-period={{ mt5_image_watchdog_first_connect }}s" in dockerfile, "the image's start period is the allowance"
    assert "start_period" not in linux["mt5_linux_healthcheck"], "the containers' start period is mt5_linux_first_connect"
    assert linux["mt5_linux_health_timeout"] > linux["mt5_linux_first_connect"] + linux["mt5_linux_healthcheck"]["interval"]


def test_the_documented_bounds():
    policy = Policy(grace=60, interval=5)
    assert (policy.timeout, policy.recheck, policy.no_answer_grace) == (2, 2, 10)
    assert policy.down_bound == 12, "down grace 10 + one re-check 2"
    assert policy.recovery_bound == 21 and policy.recovery_bound <= 30 - 5, "the PRD's 30 s with a margin"
    assert policy.bound == 62
    assert Policy(grace=6, interval=1).down_bound == 7
    assert Policy(grace=60, interval=30).down_bound == 32, "a slow interval: the first miss comes late"
    line = describe(policy, 8000)
    assert "hang -> SIGKILL <= 12 s" in line and "answering again <= 21 s" in line


class FakeService:
    """A service on a simulated clock: answers 200 until it hangs; after a SIGKILL it answers
    again once respawned and started; a hung probe costs the probe's timeout."""

    def __init__(self, hang_at, start=2.0):
        self.clock = 0.0
        self.hang_at = hang_at
        self.start = start
        self.back_at = None
        self.kills = []
        self.stops = []

    def probe(self, port, timeout):
        hung = self.clock >= self.hang_at and (self.back_at is None or self.clock < self.back_at)
        if hung:
            self.clock += timeout
            return DOWN, "timed out"
        self.clock += 0.01
        return OK, ""

    def kill(self, programs):
        self.kills.append((self.clock, tuple(programs)))
        self.back_at = self.clock + RESPAWN + self.start
        return 0

    def restart(self, programs):
        self.stops.append((self.clock, tuple(programs)))
        return 0

    def sleep(self, seconds):
        self.clock += seconds

    def run(self, policy, seconds):
        rounds = int(seconds / policy.recheck) + 5
        run(
            policy,
            8000,
            probe_fn=self.probe,
            restart_fn=self.restart,
            kill_fn=self.kill,
            clock=lambda: self.clock,
            sleep=self.sleep,
            rounds=rounds,
        )


@pytest.mark.parametrize("grace, interval, hang_at", [(60, 5, 97.0), (60, 5, 99.99), (6, 1, 13.3), (10, 2, 0.5)])
def test_run_kills_a_hung_service_within_the_down_bound(grace, interval, hang_at):
    """The loop with a simulated clock: the SIGKILL comes no later than hang + down bound."""
    policy = Policy(grace=grace, interval=interval)
    service = FakeService(hang_at, start=10**6)  # never comes back: only the first kill matters
    service.run(policy, hang_at + 3 * policy.bound)
    assert service.kills, "the hung service was never killed"
    when, programs = service.kills[0]
    assert programs == ("service",)
    assert hang_at + policy.no_answer_grace - interval <= when <= hang_at + policy.down_bound
    assert service.stops == [], "a hung service is never asked to stop (SIGTERM)"


@pytest.mark.parametrize("hang_at", [100.0, 101.3, 102.6, 104.99])
@pytest.mark.parametrize("start", [1.6, 8.0])
def test_a_hung_service_answers_again_within_30_s_with_the_image_defaults(hang_at, start):
    """WATCHDOG_GRACE=60, WATCHDOG_INTERVAL=5 (the image's), down grace 10: hang -> 200 again."""
    policy = Policy(grace=60, interval=5)
    service = FakeService(hang_at, start=start)
    service.run(policy, hang_at + 60)
    assert len(service.kills) == 1, f"killed more than once: {service.kills}"
    recovered = service.back_at - hang_at
    assert recovered <= policy.recovery_bound <= 30, recovered
    print(f"hang at {hang_at}: SIGKILL after {service.kills[0][0] - hang_at:.1f} s, answering after {recovered:.1f} s")


class FakeSupervisor:
    """supervisorctl as the watchdog sees it: a scripted sequence of status answers."""

    def __init__(self, statuses, start_rc=0):
        self.statuses = list(statuses)
        self.calls = []
        self.signals = []
        self.start_rc = start_rc

    def ctl(self, *args, timeout=120):
        self.calls.append(args)
        if args[0] == "status":
            line = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return subprocess.CompletedProcess(args, 0 if " RUNNING " in line else 3, line + "\n", "")
        if args[0] == "start":
            return subprocess.CompletedProcess(args, self.start_rc, f"{args[1]}: started\n", "")
        raise AssertionError(f"unexpected supervisorctl {args}")

    def kill(self, pid, sig):
        self.signals.append((pid, sig))


def test_supervisor_kill_sends_sigkill_to_the_group_and_lets_supervisord_restart():
    fake = FakeSupervisor(
        [
            "service  RUNNING   pid 41, uptime 0:10:00",
            "service  RUNNING   pid 41, uptime 0:10:00",
            "service  STARTING",
            "service  RUNNING   pid 57, uptime 0:00:01",
        ]
    )
    assert supervisor_kill(["service"], ctl=fake.ctl, kill=fake.kill, sleep=lambda s: None) == 0
    assert fake.signals == [(41, signal.SIGKILL)]
    assert all(call[0] == "status" for call in fake.calls), "no stop, no restart, no start: supervisord restarts it"


def test_supervisor_kill_starts_a_program_supervisord_gave_up_on():
    fake = FakeSupervisor(["service  FATAL     Exited too quickly (process log may have details)"])
    assert supervisor_kill(["service"], ctl=fake.ctl, kill=fake.kill, sleep=lambda s: None) == 0
    assert fake.signals == [] and ("start", "service") in fake.calls


def test_supervisor_kill_starts_it_when_supervisord_does_not():
    fake = FakeSupervisor(["service  RUNNING   pid 41, uptime 0:10:00", "service  EXITED    Nov 30 03:42 PM"])
    assert supervisor_kill(["service"], ctl=fake.ctl, kill=fake.kill, sleep=lambda s: None) == 0
    assert fake.signals == [(41, signal.SIGKILL)] and ("start", "service") in fake.calls


def test_supervisor_kill_reports_a_failed_start():
    fake = FakeSupervisor(["service  FATAL     Exited too quickly"], start_rc=7)
    assert supervisor_kill(["service"], ctl=fake.ctl, kill=fake.kill, sleep=lambda s: None) == 1


class _Health(http.server.BaseHTTPRequestHandler):
    mode = "ok"

    def do_GET(self):
        if self.mode == "ok":
            self._send(200, {"status": "ok", "connected": True, "trade_allowed": True, "auth_failed": False})
        elif self.mode == "auth_failed":
            reason = "auth_failed: the trade server refused the login 3 times"
            self._send(503, {"status": "degraded", "connected": False, "reason": reason, "auth_failed": True})
        else:
            self._send(503, {"status": "degraded", "connected": False, "reason": "terminal not connected", "auth_failed": False})

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_probe_reads_200_as_ok_and_503_as_degraded_with_the_reason(health_server):
    port = health_server.server_address[1]
    _Health.mode = "ok"
    assert probe(port, 2) == (OK, "")
    _Health.mode = "degraded"
    status, detail = probe(port, 2)
    assert status == DEGRADED and "503" in detail and "terminal not connected" in detail
    _Health.mode = "ok"


def test_probe_reads_a_refused_login_as_held(health_server):
    _Health.mode = "auth_failed"
    try:
        status, detail = probe(health_server.server_address[1], 2)
    finally:
        _Health.mode = "ok"
    assert status == HELD and "auth_failed: the trade server refused" in detail


def test_probe_reads_refused_and_silent_as_down():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert probe(port, 1)[0] == DOWN
    # A listener that accepts but never answers: a hung (e.g. SIGSTOPped) service.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        assert probe(silent.getsockname()[1], 0.5)[0] == DOWN
    finally:
        silent.close()


# --- TLS between hosts: the service serves HTTPS only ----------------------------------------
def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(root: Path, name: str) -> tuple[Path, Path]:
    key, cert = root / f"{name}-ca-key.pem", root / f"{name}-ca.pem"
    _openssl("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", str(key))
    _openssl("req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return cert, key


def _server_cert(root: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A host certificate as roles/mt5_pki makes it: it names loopback, which the probe dials."""
    key, csr, cert, ext = (root / name for name in ("key.pem", "cert.csr", "cert.pem", "cert.ext"))
    ext.write_text("subjectAltName=DNS:farm-1,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyAgreement\n")
    _openssl("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", str(key))
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", "/CN=farm-1")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial", "-out", str(cert),
             "-days", "1", "-extfile", str(ext))  # fmt: skip
    return cert, key


def _secrets(root: Path, name: str, ca: Path | None, cert: Path, key: Path) -> Path:
    """A service's secrets directory with its TLS files (tls_ca.pem unless ``ca`` is None)."""
    directory = root / name
    directory.mkdir()
    for file, source in (("tls_ca.pem", ca), ("tls_cert.pem", cert), ("tls_key.pem", key)):
        if source is not None:
            shutil.copyfile(source, directory / file)
    return directory


@pytest.fixture
def https_health_server(tmp_path: Path):
    """A /health server serving HTTPS with a certificate from the farm's CA; yields (port, the
    service's secrets directory, one whose CA is another)."""
    farm, other = _ca(tmp_path, "farm"), _ca(tmp_path, "other")
    cert, key = _server_cert(tmp_path, farm)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _secrets(tmp_path, "secrets", farm[0], cert, key), _secrets(tmp_path, "wrong", other[0], cert, key)
    server.shutdown()
    server.server_close()


def test_the_probe_asks_over_verified_https_when_the_service_has_a_certificate(https_health_server):
    port, secrets, _ = https_health_server
    assert health_target(port, str(secrets))[0] == f"https://127.0.0.1:{port}/health"
    _Health.mode = "ok"
    assert probe(port, 2, str(secrets)) == (OK, "")
    _Health.mode = "degraded"
    status, detail = probe(port, 2, str(secrets))
    assert status == DEGRADED and "503" in detail and "terminal not connected" in detail
    _Health.mode = "ok"


def test_a_plain_probe_of_an_https_service_gets_no_answer(https_health_server, tmp_path: Path):
    # What the probe did before: every HTTPS service looked hung and was killed again and again.
    port, _, _ = https_health_server
    (tmp_path / "no-tls").mkdir()
    assert health_target(port, str(tmp_path / "no-tls")) == (f"http://127.0.0.1:{port}/health", None)
    assert probe(port, 1, str(tmp_path / "no-tls"))[0] == DOWN


def test_a_certificate_from_another_ca_is_not_trusted(https_health_server):
    port, _, wrong = https_health_server
    status, detail = probe(port, 2, str(wrong))
    assert status == DOWN and "CERTIFICATE_VERIFY_FAILED" in detail
