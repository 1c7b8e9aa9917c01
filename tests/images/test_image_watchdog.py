"""The watchdog: restart a hung service, or a disconnected terminal, within a bounded time."""

import http.server
import json
import socket
import threading

import pytest

from mt5farm_runtime.watchdog import DEGRADED, DOWN, OK, Policy, Watchdog, probe, run

WINE = Policy(grace=60, interval=5, on_down=("service",),
              on_degraded=(("terminal", "bridge"), ("terminal", "bridge", "service")))


def feed(dog, observations):
    """observations: [(time, status)] -> [(time, targets)] of the restarts."""
    restarts = []
    for now, status in observations:
        decision = dog.observe(now, status)
        if decision:
            restarts.append((now, decision.restart))
    return restarts


def test_nothing_is_restarted_within_the_grace_from_the_start():
    dog = Watchdog(WINE, started=0)
    assert feed(dog, [(t, DOWN) for t in range(0, 60, 5)]) == []


def test_a_service_that_never_answers_is_restarted_after_the_grace():
    dog = Watchdog(WINE, started=0)
    assert feed(dog, [(t, DOWN) for t in range(0, 66, 5)]) == [(60, ("service",))]


def test_grace_counts_from_the_last_good_answer():
    dog = Watchdog(WINE, started=0)
    observations = [(t, OK) for t in range(0, 100, 5)] + [(t, DOWN) for t in range(100, 200, 5)]
    assert feed(dog, observations)[0] == (155, ("service",)), "last ok at 95: restarted at the first probe at or after 95 + 60"


def test_after_a_restart_the_next_judgement_waits_a_whole_grace():
    dog = Watchdog(WINE, started=0)
    restarts = feed(dog, [(t, DOWN) for t in range(0, 200, 5)])
    assert [t for t, _ in restarts] == [60, 120, 180]


def test_a_disconnected_terminal_climbs_the_ladder_then_stays_on_its_last_step():
    dog = Watchdog(WINE, started=0)
    restarts = feed(dog, [(t, DEGRADED) for t in range(0, 250, 5)])
    assert restarts == [
        (60, ("terminal", "bridge")),
        (120, ("terminal", "bridge", "service")),
        (180, ("terminal", "bridge", "service")),
        (240, ("terminal", "bridge", "service")),
    ]


def test_a_good_answer_resets_the_ladder():
    dog = Watchdog(WINE, started=0)
    observations = [(t, DEGRADED) for t in range(0, 65, 5)] + [(65, OK)] + [(t, DEGRADED) for t in range(70, 130, 5)]
    assert feed(dog, observations) == [(60, ("terminal", "bridge")), (125, ("terminal", "bridge"))]


def test_flapping_health_that_recovers_within_the_grace_restarts_nothing():
    dog = Watchdog(WINE, started=0)
    observations = [(t, DOWN if (t // 5) % 4 else OK) for t in range(0, 600, 5)]
    assert feed(dog, observations) == []


def test_the_simulator_policy_restarts_the_service_when_not_healthy():
    dog = Watchdog(Policy(grace=10, interval=1), started=0)
    assert feed(dog, [(t, DEGRADED) for t in range(0, 12)]) == [(10, ("service",))]


def test_unknown_status_is_an_error():
    with pytest.raises(ValueError):
        Watchdog(WINE, started=0).observe(1, "sleepy")


def test_the_documented_bound():
    policy = Policy(grace=60, interval=5)
    assert policy.timeout == 3
    assert policy.bound == 68
    assert Policy(grace=6, interval=1).bound == 8


@pytest.mark.parametrize("grace, interval, hang_at", [(60, 5, 97.0), (6, 1, 13.3), (10, 2, 0.5)])
def test_run_restarts_a_hung_service_within_the_bound(grace, interval, hang_at):
    """The loop with a simulated clock: the restart starts no later than hang + bound."""
    policy = Policy(grace=grace, interval=interval)
    clock = [0.0]
    restarted = []

    def probe_fn(port, timeout):
        if clock[0] >= hang_at:
            clock[0] += timeout  # a hung service: the probe times out
            return DOWN, "timed out"
        clock[0] += 0.01
        return OK, ""

    def restart_fn(programs):
        restarted.append((clock[0], tuple(programs)))
        return 0

    def sleep(seconds):
        clock[0] += seconds

    run(policy, 8000, probe_fn=probe_fn, restart_fn=restart_fn, clock=lambda: clock[0], sleep=sleep,
        rounds=int((hang_at + 3 * policy.bound) / interval) + 5)
    assert restarted, "the hung service was never restarted"
    when, programs = restarted[0]
    assert programs == ("service",)
    assert hang_at + grace - interval <= when <= hang_at + policy.bound


class _Health(http.server.BaseHTTPRequestHandler):
    mode = "ok"

    def do_GET(self):  # noqa: N802 - http.server API
        if self.mode == "ok":
            self._send(200, {"status": "ok", "connected": True})
        else:
            self._send(503, {"status": "degraded", "connected": False, "reason": "terminal not connected"})

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
