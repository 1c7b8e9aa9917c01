"""The noVNC route (/accounts/<login>/vnc/) of the platform_nginx role, with a real Nginx.

Behind it stands a WebSocket server in place of the account's websockify: it answers each
WebSocket with the request headers Nginx sent it. Proved: the WebSocket is opened through
Nginx (Upgrade and Connection reach the account, as for /ws), and no client key or
Authorization goes on to the account (the terminal's own VNC password protects it).

The role's config is rendered by its `render` entry point (nginx_testlib.running_nginx) for one farm
host with one account that has ``vnc: true``; its login is chosen so that its VNC port (from
the login, mt5farm.accounts.account_ports) is free here.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nginx_testlib import FLEET_KEY, OPS_API_KEYS, Ports, free_port, nginx_binary, one_farm_inventory, running_nginx, simulator_account
from websockets.sync.server import Server, ServerConnection, serve

from mt5farm.accounts import PORT_SPAN, VNC_PORT_BASE, account_ports

LOGIN_BASE = 5_100_000  # a multiple of PORT_SPAN: login LOGIN_BASE + n has VNC port VNC_PORT_BASE + n


@dataclass
class VncNginx:
    https_port: int
    login: int


def _bind_vnc_port() -> tuple[socket.socket, int]:
    """A socket bound to a free port of the VNC range, and the login whose VNC port it is."""
    for offset in range(1, PORT_SPAN, 97):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", VNC_PORT_BASE + offset))
        except OSError:
            sock.close()
            continue
        login = LOGIN_BASE + offset
        assert account_ports(login)[1] == VNC_PORT_BASE + offset
        return sock, login
    raise AssertionError("no free port in the VNC range")


def _echo_headers(connection: ServerConnection) -> None:
    """websockify's stand-in: send the request headers it got, as JSON (names lower case)."""
    request = connection.request
    assert request is not None
    connection.send(json.dumps({"path": request.path, "headers": {name.lower(): value for name, value in request.headers.raw_items()}}))


@pytest.fixture(scope="module")
def vnc_nginx() -> Iterator[VncNginx]:
    nginx_binary()  # skipped (failed under CI) before anything starts
    root = Path(tempfile.mkdtemp(prefix="mt5-nginx-vnc-test-"))
    root.chmod(0o755)
    server: Server | None = None
    try:
        sock, login = _bind_vnc_port()
        sock.listen()
        server = serve(_echo_headers, sock=sock)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        ports = Ports.free()
        accounts = [simulator_account(login, free_port(), vnc=True)]
        with running_nginx(root, one_farm_inventory(accounts, ports, OPS_API_KEYS), ports):
            yield VncNginx(ports.https, login)
    finally:
        if server is not None:
            server.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def test_the_novnc_websocket_is_opened_through_nginx_and_no_key_goes_on(vnc_nginx: VncNginx) -> None:
    from websockets.sync.client import connect

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Nginx's own self-signed pair (not under test)
    url = f"wss://127.0.0.1:{vnc_nginx.https_port}/accounts/{vnc_nginx.login}/vnc/websockify"
    headers = {"X-API-Key": FLEET_KEY, "Authorization": f"Bearer {FLEET_KEY}"}
    with connect(url, additional_headers=headers, ssl=context, open_timeout=10) as ws:
        seen = json.loads(ws.recv(timeout=10))
    assert seen["path"] == "/websockify"
    sent = seen["headers"]
    assert sent.get("upgrade", "").lower() == "websocket" and "upgrade" in sent.get("connection", "").lower(), sent
    assert "x-api-key" not in sent and "authorization" not in sent, sent
    assert len(sent.get("x-request-id", "")) == 32 and sent.get("x-forwarded-proto") == "https", sent
