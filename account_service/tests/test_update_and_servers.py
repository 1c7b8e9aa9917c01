"""Issue 12, faults 9 and 10 in the account service: the terminal's build and its server list.

- fault 9: the running terminal's build (terminal_info().build) and the build the image was
  made with (MT5_IMAGE_BUILD) are both in /metrics, so a LiveUpdate that changed the
  terminal under the image shows (the monitoring role alerts on the difference);
- fault 10: a server the terminal does not know is named as such in /health
  (``unknown_server: ...`` with the fix), not "not connected" for ever.

The simulated terminal takes the harder case as TerminalOptions (known_servers, build); each
test failed on the service as it was before the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from mt5_account_service.backends import base as c
from mt5_account_service.backends.simulator import ManualClock, SimulatedTerminal, TerminalOptions
from mt5_account_service.config import load_settings
from mt5svc_testlib import API_KEY, LOGIN, LiveService, wait_until


def metric(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


# --- fault 10: a server the terminal does not know -------------------------------------------------
def test_the_simulated_terminal_refuses_a_server_outside_its_server_list(clock: ManualClock) -> None:
    terminal = SimulatedTerminal(clock=clock, options=TerminalOptions(known_servers=frozenset({"Broker-Demo"})))
    assert not terminal.initialize(login=LOGIN, password="pw", server="Broker-Live2")
    code, message = terminal.last_error()
    assert code == c.RES_E_NOT_FOUND and "Broker-Live2" in message
    assert terminal.initialize(login=LOGIN, password="pw", server="Broker-Demo")


def test_an_unknown_server_shows_in_health_as_such_with_the_fix(start_service: Callable[..., LiveService], clock: ManualClock) -> None:
    terminal = SimulatedTerminal(clock=clock, options=TerminalOptions(known_servers=frozenset({"Broker-Demo"})))
    live = start_service(terminal, server="Broker-Live2")
    http = live.client()
    health = wait_until(
        lambda: (h := http.get("/health")).json()["reason"] and h.json()["reason"].startswith("unknown_server:") and h,
        what="an unknown_server reason",
    )
    assert health.status_code == 503
    reason = health.json()["reason"]
    assert reason.startswith("unknown_server: Broker-Live2 is not in the terminal's server list")
    assert "servers.dat" in reason and "MT5_SERVER" in reason  # the two fixes
    assert health.json()["auth_failed"] is False  # no broker refused anything


def test_a_known_server_still_connects(start_service: Callable[..., LiveService], clock: ManualClock) -> None:
    terminal = SimulatedTerminal(clock=clock, options=TerminalOptions(known_servers=frozenset({"Broker-Demo"})))
    live = start_service(terminal, server="Broker-Demo")
    live.wait_healthy()


# --- fault 9: the running build next to the image's ---------------------------------------------
def test_the_running_terminal_build_and_the_images_are_in_the_metrics(
    start_service: Callable[..., LiveService], clock: ManualClock
) -> None:
    live = start_service(SimulatedTerminal(clock=clock, options=TerminalOptions(build=5200)), image_build=5200)
    live.wait_healthy()
    http = live.client()
    assert metric(http, "mt5_terminal_build") == 5200
    assert metric(http, "mt5_image_terminal_build") == 5200


def test_a_terminal_updated_under_its_image_shows_two_builds(start_service: Callable[..., LiveService], clock: ManualClock) -> None:
    # The image was built with 5200; LiveUpdate moved the running terminal to 5260.
    live = start_service(SimulatedTerminal(clock=clock, options=TerminalOptions(build=5260)), image_build=5200)
    live.wait_healthy()
    http = live.client()
    assert (metric(http, "mt5_terminal_build"), metric(http, "mt5_image_terminal_build")) == (5260, 5200)


def test_the_images_build_comes_from_MT5_IMAGE_BUILD(tmp_path: Path) -> None:
    (tmp_path / "api_key").write_text(API_KEY)
    base = {"MT5_LOGIN": str(LOGIN), "MT5_SECRETS_DIR": str(tmp_path)}
    assert load_settings({**base, "MT5_IMAGE_BUILD": "5200"}).image_build == 5200
    assert load_settings(base).image_build is None
    assert load_settings({**base, "MT5_IMAGE_BUILD": ""}).image_build is None
