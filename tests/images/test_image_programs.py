"""What supervisord runs, per image and environment, and the watchdog's restart ladder."""

import configparser

import pytest

from mt5farm.runtime.programs import ConfigurationError, Program, plan, windows_paths

SIMULATOR = {"variant": "simulator", "uid": 10001, "bridge_port": 18812, "skipped": []}
WINE_FULL = {
    "variant": "wine",
    "uid": 10001,
    "display": ":99",
    "bridge_port": 18812,
    "vnc_port": 6080,
    "terminal": {"included": True, "windows_path": "C:\\MT5\\terminal64.exe"},
    "windows_python": {"included": True, "unix_path": "/home/mt5/.wine/drive_c/Python/python.exe"},
    "windows_service": True,
    "skipped": [],
}
WINE_BARE = {
    "variant": "wine",
    "uid": 10001,
    "display": ":99",
    "bridge_port": 18812,
    "terminal": {"included": False},
    "windows_python": {"included": False},
    "windows_service": False,
    "skipped": ["MT5 terminal (no installer or archive supplied)"],
}


def names(decided):
    return [p.name for p in decided.programs]


def test_simulator_image_runs_the_service_and_the_watchdog():
    decided = plan(SIMULATOR, {}, False)
    assert decided.backend == "simulator"
    assert names(decided) == ["service", "watchdog"]
    assert decided.watchdog_on_degraded == (("service",),)


def test_simulator_image_with_mt5linux_puts_the_simulated_terminal_behind_rpyc():
    decided = plan(SIMULATOR, {"MT5_BACKEND": "mt5linux"}, False)
    assert names(decided) == ["bridge", "service", "watchdog"]
    bridge = decided.programs[0]
    assert bridge.command[-4:] == ["--host", "127.0.0.1", "--port", "18812"], "the bridge runs code it is sent: loopback only"
    assert decided.watchdog_on_degraded == (("bridge",), ("bridge", "service"))


def test_simulator_image_refuses_the_mt5_backend():
    with pytest.raises(ConfigurationError, match="wine image"):
        plan(SIMULATOR, {"MT5_BACKEND": "mt5"}, False)


def test_unknown_backend_is_refused():
    with pytest.raises(ConfigurationError, match="unknown"):
        plan(SIMULATOR, {"MT5_BACKEND": "metatrader"}, False)


def test_wine_image_defaults_to_mt5linux_with_terminal_bridge_and_service():
    decided = plan(WINE_FULL, {}, False)
    assert decided.backend == "mt5linux"
    assert names(decided) == ["xvfb", "terminal", "bridge", "service", "watchdog"]
    assert decided.watchdog_on_degraded == (("terminal", "bridge"), ("terminal", "bridge", "service"))
    bridge = decided.programs[2]
    assert bridge.command[:3] == ["/usr/local/bin/mt5-wait-terminal", "--", "wine"], "the bridge starts after the terminal"
    assert "mt5linux" in bridge.command


def test_wine_image_can_run_the_service_in_windows_python():
    decided = plan(WINE_FULL, {"MT5_BACKEND": "mt5", "STATE_DIR": "/data/service"}, False)
    assert names(decided) == ["xvfb", "terminal", "service", "watchdog"]
    service = decided.programs[2]
    assert "mt5_account_service" in service.command
    assert service.environment == {"MT5_SECRETS_DIR": "Z:\\run\\secrets\\mt5", "STATE_DIR": "Z:\\data\\service"}


def test_wine_image_without_a_terminal_says_which_step_was_skipped():
    with pytest.raises(ConfigurationError, match="no installer or archive supplied"):
        plan(WINE_BARE, {"MT5_BACKEND": "mt5linux"}, False)


def test_wine_image_without_a_terminal_still_runs_the_simulator_backend():
    assert names(plan(WINE_BARE, {"MT5_BACKEND": "simulator"}, False)) == ["xvfb", "service", "watchdog"]


def test_vnc_runs_only_when_asked_and_a_password_file_exists():
    assert "x11vnc" not in names(plan(WINE_FULL, {"MT5_VNC": "0"}, True))
    without = plan(WINE_FULL, {"MT5_VNC": "1"}, False)
    assert "x11vnc" not in names(without) and any("vnc_password" in note for note in without.notes)
    decided = plan(WINE_FULL, {"MT5_VNC": "1"}, True)
    assert names(decided)[-3:] == ["x11vnc", "novnc", "watchdog"]
    x11vnc = decided.programs[names(decided).index("x11vnc")]
    assert x11vnc.command[:3] == ["/usr/local/bin/mt5-xvfb", "wait", "--"], "x11vnc waits for the display"
    assert "-localhost" in x11vnc.command, "x11vnc only for noVNC inside the container"
    assert x11vnc.command[x11vnc.command.index("-passwdfile") + 1] == "/run/secrets/mt5/vnc_password", (
        "the password is read from its file, never passed on the command line"
    )
    novnc = decided.programs[names(decided).index("novnc")]
    assert novnc.command[-2:] == ["6080", "127.0.0.1:5900"]


def test_bad_vnc_flag_is_refused():
    with pytest.raises(ConfigurationError, match="MT5_VNC"):
        plan(WINE_FULL, {"MT5_VNC": "maybe"}, True)


def test_rendered_programs_parse_as_supervisord_sections():
    decided = plan(WINE_FULL, {"MT5_BACKEND": "mt5", "MT5_SECRETS_DIR": "/run/secrets/100% mt5"}, True)
    parser = configparser.RawConfigParser()
    parser.read_string("".join(p.render() for p in decided.programs))
    assert parser.sections() == [f"program:{p.name}" for p in decided.programs]
    service = parser["program:service"]
    assert service["autorestart"] == "true" and service["stopwaitsecs"] == "10"
    assert service["stdout_logfile"] == "/dev/stdout"
    assert "100%%" in service["environment"], "a literal % is escaped for supervisord's expansion"


def test_command_arguments_are_quoted():
    rendered = Program("p", ["wine", "C:\\Program Files\\x.exe", "a b"], 1).render()
    assert "command=wine 'C:\\Program Files\\x.exe' 'a b'" in rendered


def test_watchdog_program_carries_the_ladder():
    watchdog = plan(WINE_FULL, {}, False).programs[-1]
    assert watchdog.command == [
        "/usr/local/bin/mt5-watchdog",
        "--on-down",
        "service",
        "--on-degraded",
        "terminal,bridge",
        "--on-degraded",
        "terminal,bridge,service",
    ]


def test_windows_paths_map_onto_drive_z():
    assert windows_paths({}) == {"MT5_SECRETS_DIR": "Z:\\run\\secrets\\mt5", "STATE_DIR": "Z:\\data\\service"}
