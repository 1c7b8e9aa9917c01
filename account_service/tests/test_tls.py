"""TLS between the farm's hosts, against real servers: Redis with no plaintext port, Postgres
taking TLS only, and the service's own HTTPS. Each proves the verified connection works with
the farm's CA and that plaintext, another CA and a name the certificate does not carry are
refused."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from mt5_account_service.backends.simulator import SimulatedTerminal
from mt5_account_service.cli import health_url_and_context
from mt5_account_service.config import ConfigError, load_settings, tls_files
from mt5_account_service.registry import tls_options
from mt5_account_service.store import connect_postgres
from mt5svc_testlib import API_KEY, LOGIN, PostgresServer, RedisServer, TlsMaterial, run_async, wait_until

KEY = f"mt5:account:{LOGIN}"


def _redis(url: str, server: RedisServer, ca: Path | None) -> Any:
    return redis.Redis.from_url(url, password=server.password, socket_timeout=3, socket_connect_timeout=3, **tls_options(url, ca))


# --- settings ------------------------------------------------------------------------------------------
def test_tls_files_are_read_from_the_secrets_dir(tmp_path: Path, tls_material: TlsMaterial) -> None:
    (tmp_path / "api_key").write_text(API_KEY)
    assert load_settings({"MT5_SECRETS_DIR": str(tmp_path), "MT5_LOGIN": "1"}).tls_ca_file is None
    (tmp_path / "tls_ca.pem").write_bytes(tls_material.ca.read_bytes())
    (tmp_path / "tls_cert.pem").write_bytes(tls_material.cert.read_bytes())
    (tmp_path / "tls_key.pem").write_bytes(tls_material.key.read_bytes())
    settings = load_settings({"MT5_SECRETS_DIR": str(tmp_path), "MT5_LOGIN": "1"})
    assert (settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file) == tls_files(tmp_path)
    assert settings.tls_cert_file == tmp_path / "tls_cert.pem"


def test_a_certificate_without_its_key_is_refused(tmp_path: Path, tls_material: TlsMaterial) -> None:
    (tmp_path / "tls_cert.pem").write_bytes(tls_material.cert.read_bytes())
    with pytest.raises(ConfigError, match="go together"):
        tls_files(tmp_path)


def test_redis_tls_options_verify_the_server() -> None:
    assert tls_options("redis://h:6379/0", Path("/ca.pem")) == {}
    assert tls_options("rediss://h:6379/0", Path("/ca.pem")) == {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": "/ca.pem",
    }


# --- Redis ---------------------------------------------------------------------------------------------
def test_redis_over_tls_with_the_farms_ca_works(redis_tls_server: RedisServer, tls_material: TlsMaterial) -> None:
    assert _redis(f"rediss://127.0.0.1:{redis_tls_server.port}/0", redis_tls_server, tls_material.ca).ping()


def test_redis_refuses_plaintext(redis_tls_server: RedisServer) -> None:
    with pytest.raises(redis.exceptions.ConnectionError):
        _redis(f"redis://127.0.0.1:{redis_tls_server.port}/0", redis_tls_server, None).ping()


def test_redis_with_another_ca_is_refused(redis_tls_server: RedisServer, tls_material: TlsMaterial) -> None:
    with pytest.raises(redis.exceptions.ConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        _redis(f"rediss://127.0.0.1:{redis_tls_server.port}/0", redis_tls_server, tls_material.other_ca).ping()


def test_redis_at_a_name_the_certificate_lacks_is_refused(redis_tls_server: RedisServer, tls_material: TlsMaterial) -> None:
    with pytest.raises(redis.exceptions.ConnectionError, match=r"[Hh]ostname mismatch|doesn.t match"):
        _redis(f"rediss://localhost:{redis_tls_server.port}/0", redis_tls_server, tls_material.ca).ping()


def test_service_registers_over_tls(start_service: Any, redis_tls_server: RedisServer, tls_material: TlsMaterial) -> None:
    live = start_service(
        SimulatedTerminal(),
        redis_url=f"rediss://127.0.0.1:{redis_tls_server.port}/0",
        redis_password=redis_tls_server.password,
        redis_ttl=3,
        tls_ca_file=tls_material.ca,
    )
    r = _redis(f"rediss://127.0.0.1:{redis_tls_server.port}/0", redis_tls_server, tls_material.ca)
    wait_until(lambda: r.get(KEY), timeout=5, what="the registration key over TLS")
    live.stop()
    assert r.get(KEY) is None


# --- Postgres ------------------------------------------------------------------------------------------
def _pg_ssl(server: PostgresServer, query: str, ca: Path | None) -> Any:
    async def run() -> Any:
        conn = await connect_postgres(server.dsn + query, server.password, ca)
        try:
            cur = await conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            return (await cur.fetchone())[0]
        finally:
            await conn.close()

    return run_async(run())


def test_postgres_over_tls_with_the_farms_ca_works(postgres_tls_server: PostgresServer, tls_material: TlsMaterial) -> None:
    assert _pg_ssl(postgres_tls_server, "?sslmode=verify-full", tls_material.ca) is True


def test_postgres_refuses_plaintext(postgres_tls_server: PostgresServer) -> None:
    with pytest.raises(Exception, match=r"no encryption|pg_hba.conf rejects"):
        _pg_ssl(postgres_tls_server, "?sslmode=disable", None)


def test_postgres_with_another_ca_is_refused(postgres_tls_server: PostgresServer, tls_material: TlsMaterial) -> None:
    with pytest.raises(Exception, match="certificate verify failed"):
        _pg_ssl(postgres_tls_server, "?sslmode=verify-full", tls_material.other_ca)


def test_postgres_at_a_name_the_certificate_lacks_is_refused(postgres_tls_server: PostgresServer, tls_material: TlsMaterial) -> None:
    async def run() -> None:
        dsn = postgres_tls_server.dsn.replace("127.0.0.1", "localhost") + "?sslmode=verify-full"
        await connect_postgres(dsn, postgres_tls_server.password, tls_material.ca)

    with pytest.raises(Exception, match="does not match host name"):
        run_async(run())


def test_service_records_orders_over_tls(start_service: Any, postgres_tls_server: PostgresServer, tls_material: TlsMaterial) -> None:
    postgres_tls_server_dsn = postgres_tls_server.dsn + "?sslmode=verify-full"
    live = start_service(
        SimulatedTerminal(),
        database_url=postgres_tls_server_dsn,
        postgres_password=postgres_tls_server.password,
        tls_ca_file=tls_material.ca,
    )
    wait_until(
        lambda: live.svc.store is not None and live.svc.store.spool.pending() == 0 and live.svc.store.last_error is None,
        timeout=10,
        what="the store to connect",
    )

    def migrated() -> bool:
        import psycopg

        try:
            with psycopg.connect(
                postgres_tls_server_dsn, password=postgres_tls_server.password, sslrootcert=str(tls_material.ca), autocommit=True
            ) as conn:
                row = conn.execute("SELECT count(*) FROM mt5_schema_migrations").fetchone()
                return row is not None and row[0] > 0
        except psycopg.Error:  # not migrated yet
            return False

    wait_until(migrated, timeout=15, what="the service to migrate over TLS")


# --- the service's HTTPS ---------------------------------------------------------------------------------
def _https_service(start_service: Any, tls_material: TlsMaterial) -> Any:
    live = start_service(SimulatedTerminal(), tls_cert_file=tls_material.cert, tls_key_file=tls_material.key, tls_ca_file=tls_material.ca)
    return live


def test_service_serves_https_verified_by_the_farms_ca(start_service: Any, tls_material: TlsMaterial) -> None:
    live = _https_service(start_service, tls_material)
    with httpx.Client(
        base_url=f"https://127.0.0.1:{live.port}", verify=ssl.create_default_context(cafile=str(tls_material.ca)), timeout=10
    ) as http:
        wait_until(lambda: http.get("/health").status_code == 200, timeout=10, what="/health over HTTPS")
        assert http.get("/api/account", headers={"X-API-Key": API_KEY}).status_code == 200


def test_service_refuses_plain_http_on_its_https_port(start_service: Any, tls_material: TlsMaterial) -> None:
    live = _https_service(start_service, tls_material)
    with httpx.Client(base_url=f"http://127.0.0.1:{live.port}", timeout=5) as http:
        with pytest.raises(httpx.HTTPError):
            http.get("/health")


@pytest.mark.parametrize(
    ("host", "ca_name", "message"),
    [("127.0.0.1", "other_ca", "CERTIFICATE_VERIFY_FAILED"), ("localhost", "ca", "CERTIFICATE_VERIFY_FAILED")],
)
def test_https_with_another_ca_or_name_is_refused(
    start_service: Any, tls_material: TlsMaterial, host: str, ca_name: str, message: str
) -> None:
    live = _https_service(start_service, tls_material)
    context = ssl.create_default_context(cafile=str(getattr(tls_material, ca_name)))
    with httpx.Client(base_url=f"https://{host}:{live.port}", verify=context, timeout=5) as http:
        with pytest.raises(httpx.ConnectError, match=message):
            http.get("/health")


def test_healthcheck_command_uses_https_with_the_ca(start_service: Any, tls_material: TlsMaterial, tmp_path: Path) -> None:
    live = _https_service(start_service, tls_material)
    secrets = tmp_path / "hc-secrets"
    secrets.mkdir()
    for name, source in (("tls_ca.pem", tls_material.ca), ("tls_cert.pem", tls_material.cert), ("tls_key.pem", tls_material.key)):
        (secrets / name).write_bytes(source.read_bytes())
    url, context = health_url_and_context(str(live.port), secrets)
    assert url == f"https://127.0.0.1:{live.port}/health" and context is not None
    with httpx.Client(verify=context, timeout=10) as http:
        wait_until(lambda: http.get(url).status_code == 200, timeout=10, what="/health over HTTPS")
    env = {"SERVICE_PORT": str(live.port), "MT5_SECRETS_DIR": str(secrets), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "mt5_account_service", "healthcheck"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "healthy"
    # Without the certificate in the secrets the command asks over plain HTTP, which the HTTPS port refuses.
    (secrets / "tls_cert.pem").unlink()
    (secrets / "tls_key.pem").unlink()
    done = subprocess.run([sys.executable, "-m", "mt5_account_service", "healthcheck"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "unhealthy" in done.stdout
