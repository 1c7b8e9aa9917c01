"""Which programs supervisord runs in this container, decided from the image and the env.

The image says what it holds (``/usr/share/mt5farm/image.json``, written at build time:
variant, whether the MT5 terminal and Windows Python were supplied, paths); the container's
environment says how this account runs (``MT5_BACKEND``, ``MT5_VNC``). The result is a list
of :class:`Program` rendered as supervisord ``[program:x]`` sections, plus the watchdog's
restart policy. Pure functions: tested on the controller.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

SERVICE_STOP_WAIT = 10
BACKENDS = ("simulator", "mt5linux", "mt5")


class ConfigurationError(ValueError):
    """This container cannot run as configured; the message says what to change."""


@dataclass(frozen=True)
class Program:
    name: str
    command: list[str]
    priority: int
    stopwaitsecs: int = 10
    startsecs: int = 2
    environment: Mapping[str, str] = field(default_factory=dict)

    def render(self) -> str:
        lines = [
            f"[program:{self.name}]",
            "command=" + " ".join(_supervisor_quote(arg) for arg in self.command),
            f"priority={self.priority}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={self.startsecs}",
            # Enough for a slow Wine start to fail a few times; the watchdog restarts a
            # program that supervisord gave up on (FATAL) after its grace.
            "startretries=10",
            "stopsignal=TERM",
            f"stopwaitsecs={self.stopwaitsecs}",
            "stopasgroup=true",
            "killasgroup=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "redirect_stderr=true",
        ]
        if self.environment:
            lines.append(
                "environment=" + ",".join(f'{key}="{_supervisor_escape(value)}"' for key, value in sorted(self.environment.items()))
            )
        return "\n".join(lines) + "\n"


def _supervisor_escape(value: str) -> str:
    # supervisord expands %(name)s in values: a literal % is %%; quotes and backslashes
    # are taken by its shlex-like parser.
    return value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')


def _supervisor_quote(arg: str) -> str:
    return shlex.quote(arg).replace("%", "%%")


@dataclass(frozen=True)
class Plan:
    backend: str
    programs: list[Program]
    watchdog_on_down: tuple[str, ...]
    watchdog_on_degraded: tuple[tuple[str, ...], ...]
    notes: list[str]


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}={raw!r}: use 0 or 1")


def default_backend(image: Mapping) -> str:
    return "mt5linux" if image["variant"] == "wine" else "simulator"


def plan(image: Mapping, env: Mapping[str, str], vnc_password_present: bool) -> Plan:
    """Programs and watchdog policy for this image and environment."""
    variant = image["variant"]
    backend = (env.get("MT5_BACKEND") or "").strip() or default_backend(image)
    if backend not in BACKENDS:
        raise ConfigurationError(f"MT5_BACKEND={backend!r} is unknown: use one of {', '.join(BACKENDS)}")
    terminal = image.get("terminal", {}).get("included", False)
    winpython = image.get("windows_python", {}).get("included", False)
    notes: list[str] = []
    programs: list[Program] = []
    service_cmd = ["/opt/mt5farm/venv/bin/mt5-account-service", "serve"]
    port = str(image.get("bridge_port", 18812))

    if variant == "simulator":
        if backend == "mt5":
            raise ConfigurationError(
                "MT5_BACKEND=mt5 needs the wine image with Windows Python; this is the simulator image "
                "(use simulator, or mt5linux for the simulated terminal behind RPyC)"
            )
        if backend == "mt5linux":
            programs.append(
                Program(
                    "bridge", ["/opt/mt5farm/venv/bin/mt5-account-service", "simulator-rpyc", "--host", "127.0.0.1", "--port", port], 30
                )
            )
            degraded: tuple[tuple[str, ...], ...] = (("bridge",), ("bridge", "service"))
            notes.append("the simulated terminal (not MetaTrader 5) serves RPyC on 127.0.0.1:" + port)
        else:
            degraded = (("service",),)
        programs.append(Program("service", service_cmd, 40, stopwaitsecs=SERVICE_STOP_WAIT))
        if _flag(env, "MT5_VNC", False):
            notes.append("MT5_VNC=1 ignored: the simulator image has no screen")
    elif variant == "wine":
        display = image.get("display", ":99")
        programs.append(Program("xvfb", ["/usr/local/bin/mt5-xvfb"], 10, startsecs=1))
        if backend in ("mt5linux", "mt5"):
            if not terminal:
                raise ConfigurationError(
                    f"MT5_BACKEND={backend} needs the MT5 terminal, and this image was built without it "
                    f"({'; '.join(image.get('skipped', [])) or 'no terminal'}): rebuild with "
                    "mt5_image_terminal_installer or mt5_image_terminal_archive, or use MT5_BACKEND=simulator"
                )
            programs.append(Program("terminal", ["/usr/local/bin/mt5-terminal"], 20, stopwaitsecs=15, startsecs=5))
        if backend == "mt5linux":
            if not winpython:
                raise ConfigurationError(
                    "MT5_BACKEND=mt5linux needs Windows Python with MetaTrader5 and mt5linux (the bridge), and this "
                    "image was built without it: rebuild with mt5_image_windows_python_installer"
                )
            programs.append(
                Program(
                    "bridge",
                    [
                        "/usr/local/bin/mt5-wait-terminal",
                        "--",
                        "wine",
                        image["windows_python"]["unix_path"],
                        "-m",
                        "mt5linux",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        port,
                    ],
                    30,
                    startsecs=5,
                )
            )
            programs.append(Program("service", service_cmd, 40, stopwaitsecs=SERVICE_STOP_WAIT))
            degraded = (("terminal", "bridge"), ("terminal", "bridge", "service"))
        elif backend == "mt5":
            if not image.get("windows_service", False):
                raise ConfigurationError(
                    "MT5_BACKEND=mt5 runs the service in Windows Python, and this image was built without it: "
                    "rebuild with mt5_image_windows_service: true (or use MT5_BACKEND=mt5linux)"
                )
            programs.append(
                Program(
                    "service",
                    [
                        "/usr/local/bin/mt5-wait-terminal",
                        "--",
                        "wine",
                        image["windows_python"]["unix_path"],
                        "-m",
                        "mt5_account_service",
                        "serve",
                    ],
                    40,
                    stopwaitsecs=SERVICE_STOP_WAIT,
                    startsecs=5,
                    environment=windows_paths(env),
                )
            )
            degraded = (("terminal",), ("terminal", "service"))
        else:
            programs.append(Program("service", service_cmd, 40, stopwaitsecs=SERVICE_STOP_WAIT))
            degraded = (("service",),)
        if _flag(env, "MT5_VNC", False):
            if vnc_password_present:
                programs.append(
                    Program(
                        "x11vnc",
                        [
                            "/usr/local/bin/mt5-xvfb",
                            "wait",
                            "--",
                            "x11vnc",
                            "-display",
                            display,
                            "-forever",
                            "-shared",
                            "-localhost",
                            "-rfbport",
                            "5900",
                            "-passwdfile",
                            secrets_dir(env) + "/vnc_password",
                            "-noxdamage",
                            "-quiet",
                        ],
                        50,
                    )
                )
                programs.append(
                    Program("novnc", ["websockify", "--web", "/usr/share/novnc", str(image.get("vnc_port", 6080)), "127.0.0.1:5900"], 51)
                )
            else:
                notes.append("MT5_VNC=1 but no vnc_password secret file: VNC not started")
    else:
        raise ConfigurationError(f"image.json names an unknown variant {variant!r}")

    programs.append(
        Program(
            "watchdog",
            [
                "/usr/local/bin/mt5-watchdog",
                "--on-down",
                "service",
                *[arg for step in degraded for arg in ("--on-degraded", ",".join(step))],
            ],
            90,
            startsecs=1,
        )
    )
    return Plan(backend, programs, ("service",), degraded, notes)


def secrets_dir(env: Mapping[str, str]) -> str:
    return (env.get("MT5_SECRETS_DIR") or "/run/secrets/mt5").rstrip("/") or "/"


def windows_paths(env: Mapping[str, str]) -> dict[str, str]:
    """Unix paths the service reads, as Windows Python under Wine sees them (drive Z: is /)."""

    def z(path: str) -> str:
        return "Z:" + path.replace("/", "\\")

    return {
        "MT5_SECRETS_DIR": z(secrets_dir(env)),
        "STATE_DIR": z((env.get("STATE_DIR") or "/data/service").rstrip("/")),
    }
