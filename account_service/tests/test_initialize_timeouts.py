"""Issue 12, fault 7: never two ``initialize`` calls at once, and the timeouts in order.

The bridge here is the real RPyC classic server of ``rpyc_server.make_server`` (the one
``mt5-account-service simulator-rpyc`` runs), in a thread of the test process so the test can
read what the terminal behind it saw. The terminal is a named stub, :class:`SlowInitializeTerminal`:
the simulator whose ``initialize`` takes as long as a cold terminal's under Wine, and which
counts how many ``initialize`` calls run at the same time.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from mt5_account_service import timeouts
from mt5_account_service.backends import base as c
from mt5_account_service.backends.bridge import INITIALIZE_BUSY, SERVER_HELPER, guard_initialize
from mt5_account_service.backends.mt5linux import Mt5LinuxBackend
from mt5_account_service.backends.rpyc_server import make_server
from mt5_account_service.backends.simulator import SimulatedTerminal
from mt5linux import MetaTrader5
from mt5svc_testlib import LOGIN, free_port, wait_until

#: last_error of an initialize that ran out of its own time (RES_E_INTERNAL_FAIL_TIMEOUT).
RES_E_INTERNAL_FAIL_TIMEOUT = -10005


class SlowInitializeTerminal(SimulatedTerminal):
    """A named stub, not the simulator's behaviour: ``initialize`` takes ``delay`` seconds (a
    terminal still starting under Wine), or its own ``timeout`` (ms) when that is shorter and
    then fails with (-10005, 'IPC timeout'), as MetaTrader5's does. It sleeps outside the
    simulator's lock, as the real module has no lock: two calls really overlap. ``running``,
    ``most`` and ``calls`` count what the terminal saw."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.running = self.most = self.calls = 0
        self._count = threading.Lock()

    def initialize(self, *args: Any, **kwargs: Any) -> bool:
        with self._count:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            limit = kwargs.get("timeout")
            if limit is not None and limit / 1000.0 < self.delay:
                time.sleep(limit / 1000.0)
                self._last_error = (RES_E_INTERNAL_FAIL_TIMEOUT, "IPC timeout")
                return False
            time.sleep(self.delay)
            return super().initialize(*args, **kwargs)
        finally:
            with self._count:
                self.running -= 1


@dataclass
class Bridge:
    terminal: SlowInitializeTerminal
    port: int


@pytest.fixture
def slow_bridge() -> Iterator[Bridge]:
    """The real RPyC bridge serving a SlowInitializeTerminal (1 s initialize) on loopback."""
    terminal = SlowInitializeTerminal(delay=1.0)
    port = free_port()
    saved = sys.modules.get("MetaTrader5")
    server = make_server(terminal, "127.0.0.1", port)
    thread = threading.Thread(target=server.start, daemon=True, name="rpyc-bridge")
    thread.start()
    wait_until(lambda: server.active, timeout=10, what="the RPyC bridge to listen")
    try:
        yield Bridge(terminal, port)
    finally:
        server.close()
        if saved is None:
            sys.modules.pop("MetaTrader5", None)
        else:
            sys.modules["MetaTrader5"] = saved


def reconnect_loop(backend: Mt5LinuxBackend, attempts: int, **kwargs: Any) -> tuple[bool, list[str]]:
    """The service's reconnect loop in short (poller.run without the pauses): initialize;
    on a connection error, again. Returns (initialized, the errors seen)."""
    errors = []
    for _ in range(attempts):
        try:
            return backend.initialize(**kwargs), errors
        except ConnectionError as exc:
            errors.append(str(exc))
    return False, errors


def test_a_slow_initialize_is_waited_for_not_given_up_and_started_again(slow_bridge: Bridge) -> None:
    """Today's fault: the RPyC request timeout (here 0.3 s for the test's sake, 30 s in
    production) is shorter than the terminal's initialize (here 1 s of its 2 s limit): the
    client gave up, reconnected and started a second initialize beside the first."""
    backend = Mt5LinuxBackend("127.0.0.1", slow_bridge.port, timeout=0.3)
    try:
        ok, errors = reconnect_loop(backend, attempts=5, login=LOGIN, timeout=2000)
    finally:
        backend.close()
    assert (slow_bridge.terminal.most, slow_bridge.terminal.calls) == (1, 1), f"initialize overlapped or repeated: {errors}"
    assert ok and errors == [], "the client waits the terminal's limit plus the margin for its answer"


def test_the_terminal_not_the_client_ends_an_initialize_that_runs_out_of_time(slow_bridge: Bridge) -> None:
    """An initialize longer than its own limit (1 s against 0.5 s) gets the terminal's answer
    (False, -10005) over RPyC; the client's wait never ends it first."""
    backend = Mt5LinuxBackend("127.0.0.1", slow_bridge.port, timeout=0.3)
    try:
        assert backend.initialize(login=LOGIN, timeout=500) is False
        assert backend.last_error()[0] == RES_E_INTERNAL_FAIL_TIMEOUT, "and the connection still serves requests"
    finally:
        backend.close()


def test_the_bridge_refuses_a_second_initialize_beside_a_running_one(slow_bridge: Bridge) -> None:
    """A second client (a restarted service, or one that gave up on a hung initialize) asks
    while the first initialize still runs: refused at once with a reason, never run beside it."""
    first = MetaTrader5(host="127.0.0.1", port=slow_bridge.port)
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("first", first.initialize(login=LOGIN)))
    thread.start()
    wait_until(lambda: slow_bridge.terminal.running == 1, timeout=5, what="the first initialize to start")
    second = Mt5LinuxBackend("127.0.0.1", slow_bridge.port)
    began = time.monotonic()
    try:
        with pytest.raises(ConnectionError, match="still running in the bridge"):
            second.initialize(login=LOGIN)
        assert time.monotonic() - began < 0.9, "refused at once, not queued behind the first"
        thread.join(timeout=10)
        assert outcome == {"first": True}
        assert (slow_bridge.terminal.most, slow_bridge.terminal.calls) == (1, 1)
        assert second.initialize(login=LOGIN), "once the first has answered, the next one runs"
        assert slow_bridge.terminal.most == 1
    finally:
        second.close()


def test_the_bridge_guard_refuses_the_stock_client_too_and_names_itself() -> None:
    class Module:
        def __init__(self) -> None:
            self.entered = threading.Event()
            self.leave = threading.Event()

        def initialize(self, **kwargs: Any) -> bool:
            self.entered.set()
            self.leave.wait(5)
            return True

    module = Module()
    guard_initialize(module)
    guarded = module.initialize
    guard_initialize(module)
    assert module.initialize is guarded, "guarding twice (a second connection's helper) changes nothing"
    thread = threading.Thread(target=module.initialize)
    thread.start()
    assert module.entered.wait(5)
    with pytest.raises(RuntimeError) as refused:
        module.initialize()
    assert str(refused.value).startswith(INITIALIZE_BUSY)
    module.leave.set()
    thread.join(5)
    assert module.initialize() is True


def test_the_helper_runs_in_a_plain_namespace_as_in_the_bridge() -> None:
    """The helper's source runs on its own (Windows Python gets only the text)."""
    module = type("MetaTrader5", (), {"initialize": staticmethod(lambda **kwargs: True)})
    namespace: dict[str, Any] = {"mt5": module}
    exec(SERVER_HELPER, namespace)  # exactly what the RPyC classic bridge does with it
    assert getattr(module.initialize, "_mt5farm_guarded", False)
    assert namespace["_to_json"]({"a": (1, 2.5, None)}) == '{"a": [1, 2.5, null]}'


def test_the_timeouts_are_in_order() -> None:
    """Each wait longer than the wait it contains (the chain goes on in the watchdog's tests)."""
    assert timeouts.INITIALIZE_TIMEOUT < timeouts.RPYC_INITIALIZE_TIMEOUT
    assert timeouts.rpyc_initialize_timeout(None) == timeouts.RPYC_INITIALIZE_TIMEOUT
    assert timeouts.rpyc_initialize_timeout(2000) == 2 + timeouts.INITIALIZE_MARGIN
    assert timeouts.RECONNECT_BOUND == timeouts.RPYC_REQUEST_TIMEOUT + timeouts.RPYC_INITIALIZE_TIMEOUT
    assert timeouts.RPYC_INITIALIZE_TIMEOUT < timeouts.RECONNECT_BOUND


def test_the_service_passes_the_named_initialize_timeout(terminal: SimulatedTerminal, tmp_path: Any) -> None:
    """gateway.connect gives initialize INITIALIZE_TIMEOUT (ms), the limit the client waits beyond."""
    from mt5_account_service.gateway import Gateway
    from mt5svc_testlib import make_settings, run_async

    seen: dict[str, Any] = {}
    original = terminal.initialize

    def recording(*args: Any, **kwargs: Any) -> bool:
        seen.update(kwargs)
        return original(*args, **kwargs)

    terminal.initialize = recording  # type: ignore[method-assign]
    gateway = Gateway(terminal, make_settings(tmp_path, login=LOGIN))
    run_async(gateway.connect())
    run_async(gateway.close())
    assert seen["timeout"] == int(timeouts.INITIALIZE_TIMEOUT * 1000)
    assert terminal.last_error()[0] == c.RES_S_OK
