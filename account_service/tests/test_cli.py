"""The console command as the container runs it: serve, healthcheck, clean stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from mt5svc_testlib import API_KEY, LOGIN, RedisServer, free_port, wait_until


def command() -> str:
    return shutil.which("mt5-account-service") or str(Path(sys.executable).parent / "mt5-account-service")


def service_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "api_key").write_text(API_KEY + "\n")
    return {
        **os.environ,
        "MT5_LOGIN": str(LOGIN),
        "MT5_BACKEND": "simulator",
        "MT5_SECRETS_DIR": str(secrets),
        "STATE_DIR": str(tmp_path / "state"),
        "SERVICE_PORT": str(port),
        "POLL_INTERVAL": "0.1",
        **extra,
    }


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command(), "healthcheck", "--timeout", "2"],
        capture_output=True,
        text=True,
        env={**os.environ, "SERVICE_PORT": str(port)},
        timeout=30,
    )


def test_healthcheck_fails_when_nothing_listens() -> None:
    result = healthcheck(free_port())
    assert result.returncode == 1 and "cannot reach" in result.stdout


def test_serve_healthcheck_and_clean_stop(tmp_path: Path, redis_server: RedisServer) -> None:
    port = free_port()
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "redis_password").write_text(redis_server.password)
    env = service_env(tmp_path, port, REDIS_URL=redis_server.url, ADVERTISE_URL=f"h1:{port}")
    proc = subprocess.Popen([command()], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: healthcheck(port).returncode == 0, timeout=20, interval=0.2, what="the served command to be healthy")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": API_KEY}) as http:
            assert http.get("/api/account").json()["login"] == LOGIN
        r = redis_server.client()
        assert wait_until(lambda: r.get(f"mt5:account:{LOGIN}"), timeout=5, what="redis key")
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal (exit by SIGTERM)
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read() if proc.stdout else ""
    assert "account service stopped" in output  # the lifespan shutdown ran to its end
    assert r.get(f"mt5:account:{LOGIN}") is None
    assert API_KEY not in output and redis_server.password not in output


def test_bad_configuration_exits_2_with_the_reason(tmp_path: Path) -> None:
    env = service_env(tmp_path, free_port(), MT5_BACKEND="nonsense")
    result = subprocess.run([command()], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "MT5_BACKEND='nonsense' is unknown" in result.stderr
