"""Nginx to the account services over TLS (TLS between hosts), with real processes.

The role's config is rendered for an inventory of several hosts (so ``mt5_tls: auto`` turns
TLS on), run by a real Nginx in front of real account services serving HTTPS:

- ``farm-a``: its service's certificate comes from the farm's CA and names ``farm-a``: reached;
- ``farm-b``: a certificate from the farm's CA naming another host: refused (502);
- ``farm-c``: a certificate from another CA naming ``farm-c``: refused (502);
- ``win-1`` (a Windows farm host): its service serves plain HTTP, and Nginx reaches it so.

The services' own ports refuse plaintext. Certificates are made with openssl as roles/mt5_pki
makes them (ECDSA, serverAuth, subjectAltNames).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from nginx_testlib import (
    FLEET_KEY,
    OPS_API_KEYS,
    UPSTREAM_BASE,
    Ports,
    farm_host_vars,
    free_port,
    nginx_binary,
    platform_host_vars,
    running_nginx,
    simulator_account,
    start_service,
    stop,
    wait_until,
)

from mt5farm.credentials import mt5_account_credential

LOGINS = {"farm-a": 5002001, "farm-b": 5002002, "farm-c": 5002003, "win-1": 5002004}


@dataclass
class TlsNginx:
    root: Path
    https_port: int
    ports: dict[str, int]  # host -> its account service's port
    ca: Path
    error_log: Path

    def get(self, host: str) -> httpx.Response:
        # verify=False: Nginx's own client-side pair is self-signed (not under test here).
        with httpx.Client(verify=False, timeout=15) as client:
            return client.get(f"https://127.0.0.1:{self.https_port}/accounts/{LOGINS[host]}/api/account", headers={"X-API-Key": FLEET_KEY})


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(root: Path, name: str) -> tuple[Path, Path]:
    key, cert = root / f"{name}-ca-key.pem", root / f"{name}-ca.pem"
    _openssl("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", str(key))
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _server_cert(root: Path, ca: tuple[Path, Path], name: str, sans: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (root / f"{name}{suffix}" for suffix in ("-key.pem", ".csr", ".pem", ".ext"))
    ext.write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyAgreement\n")
    _openssl("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", str(key))
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial", "-out", str(cert),
        "-days", "1", "-extfile", str(ext),
    )  # fmt: skip
    return cert, key


def _healthcheck(home: Path, port: int) -> bool:
    """The container's own healthcheck command (HTTPS with the CA when the service has a certificate)."""
    env = {"SERVICE_PORT": str(port), "MT5_SECRETS_DIR": str(home / "secrets"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "mt5_account_service", "healthcheck", "--timeout", "1"], env=env, capture_output=True, timeout=20
    )
    return done.returncode == 0


@pytest.fixture(scope="module")
def tls_nginx() -> Iterator[TlsNginx]:
    nginx_binary()  # skipped (failed under CI) before anything starts
    root = Path(tempfile.mkdtemp(prefix="mt5-nginx-tls-test-"))
    root.chmod(0o755)
    services: list[subprocess.Popen[bytes]] = []
    try:
        pki = root / "pki"
        pki.mkdir()
        farm_ca, other_ca = _ca(pki, "farm"), _ca(pki, "other")
        certs = {
            "farm-a": _server_cert(pki, farm_ca, "farm-a", "DNS:farm-a,IP:127.0.0.1"),
            "farm-b": _server_cert(pki, farm_ca, "farm-b", "DNS:farm-x,IP:127.0.0.1"),  # a name Nginx does not ask for
            "farm-c": _server_cert(pki, other_ca, "farm-c", "DNS:farm-c,IP:127.0.0.1"),  # another CA
        }
        ports = {host: free_port() for host in LOGINS}
        for host, login in LOGINS.items():
            # Each service trusts the CA of its own certificate (its healthcheck verifies it).
            tls = ((other_ca if host == "farm-c" else farm_ca)[0], *certs[host]) if host in certs else None
            key = mt5_account_credential(UPSTREAM_BASE, "api_key", login)
            services.append(start_service(root, login, ports[host], key, tls))

        def farm_host(host: str) -> dict[str, object]:
            return farm_host_vars([simulator_account(LOGINS[host], ports[host])])

        nginx_ports = Ports.free()
        inventory = {
            "all": {
                "children": {
                    "mt5_linux": {"hosts": {host: farm_host(host) for host in ("farm-a", "farm-b", "farm-c")}},
                    "mt5_windows": {"hosts": {"win-1": farm_host("win-1")}},
                    "platform": {"hosts": {"farm-a": platform_host_vars(nginx_ports, OPS_API_KEYS)}},
                }
            },
        }
        # What a converge stages from mt5_pki's facts (the render entry point leaves it to the caller).
        with running_nginx(root, inventory, nginx_ports, staged={"tls/upstream-ca.pem": farm_ca[0]}) as nginx:
            for host, login in LOGINS.items():
                wait_until(
                    lambda home=root / f"service-{login}", port=ports[host]: _healthcheck(home, port),
                    40,
                    f"the service on {host} to be healthy",
                )
            yield TlsNginx(nginx.root, nginx.https_port, ports, farm_ca[0], nginx.error_log)
    finally:
        for service in services:
            stop(service)
        shutil.rmtree(root, ignore_errors=True)


def test_the_rendered_config_verifies_the_linux_account_services_and_leaves_windows_on_http(tls_nginx: TlsNginx) -> None:
    # Each account's own internal location (a fixed proxy_pass, mt5farm/routes.conf) carries
    # the scheme and the name its service's certificate must have: its host's inventory name.
    routes = (tls_nginx.root / "mt5farm/routes.conf").read_text()
    for host in ("farm-a", "farm-b", "farm-c"):
        login = LOGINS[host]
        assert f"location /.mt5farm/api/{login}/ {{ proxy_pass https://mt5_{login}/; proxy_ssl_name {host}; }}" in routes
        assert f"location = /.mt5farm/ws/{login} {{ proxy_pass https://mt5_{login}/ws; proxy_ssl_name {host}; }}" in routes
    win = LOGINS["win-1"]
    assert f"location /.mt5farm/api/{win}/ {{ proxy_pass http://mt5_{win}/; }}" in routes
    assert f"location = /.mt5farm/ws/{win} {{ proxy_pass http://mt5_{win}/ws; }}" in routes
    assert f"https://mt5_{win}" not in routes
    conf = (tls_nginx.root / "nginx.conf").read_text()
    # (the test's copy: adapt_for_test points /etc/nginx/ into its root)
    assert "proxy_ssl_verify on;" in conf and f"proxy_ssl_trusted_certificate {tls_nginx.root}/tls/upstream-ca.pem;" in conf


def test_an_account_service_with_the_farms_certificate_is_reached_over_tls(tls_nginx: TlsNginx) -> None:
    response = tls_nginx.get("farm-a")
    assert response.status_code == 200, response.text
    assert response.json()["login"] == LOGINS["farm-a"]


def test_a_certificate_naming_another_host_is_refused(tls_nginx: TlsNginx) -> None:
    response = tls_nginx.get("farm-b")
    assert response.status_code == 502 and response.json()["error"] == "account_unreachable"
    assert "upstream SSL certificate does not match" in tls_nginx.error_log.read_text()


def test_a_certificate_from_another_ca_is_refused(tls_nginx: TlsNginx) -> None:
    response = tls_nginx.get("farm-c")
    assert response.status_code == 502 and response.json()["error"] == "account_unreachable"
    assert "upstream SSL certificate verify error" in tls_nginx.error_log.read_text()


def test_a_windows_account_is_still_reached_over_plain_http(tls_nginx: TlsNginx) -> None:
    response = tls_nginx.get("win-1")
    assert response.status_code == 200, response.text
    assert response.json()["login"] == LOGINS["win-1"]


def test_websocket_over_tls_to_the_account(tls_nginx: TlsNginx) -> None:
    from websockets.sync.client import connect

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Nginx's own self-signed pair (not under test)
    url = f"wss://127.0.0.1:{tls_nginx.https_port}/accounts/{LOGINS['farm-a']}/ws"
    with connect(url, additional_headers={"X-API-Key": FLEET_KEY}, ssl=context, open_timeout=10) as ws:
        snapshot = json.loads(ws.recv(timeout=10))
    assert snapshot["type"] == "snapshot" and snapshot["account"]["login"] == LOGINS["farm-a"]


def test_the_account_services_port_refuses_plaintext(tls_nginx: TlsNginx) -> None:
    with socket.create_connection(("127.0.0.1", tls_nginx.ports["farm-a"]), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = sock.recv(64)
    assert not answer.startswith(b"HTTP/1.1 200")
