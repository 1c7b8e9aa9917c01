"""Safety faults, each as a kind: no coercion of trading input, auth and body cap before the
body, read deadlines, /metrics behind a credential, Allow/Retry-After, no key in the URL,
bounded stores, an honest schema. Real uvicorn, real sockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mt5_account_service import service as app_service
from mt5_account_service.backends import base as c
from mt5_account_service.backends.simulator import ManualClock, OrderSendResult, SimulatedTerminal
from mt5_account_service.config import ConfigError, load_settings
from mt5_account_service.server import BODY_TIMEOUT, HEADER_TIMEOUT, protocol
from mt5_account_service.store import Store
from mt5svc_testlib import API_KEY, LOGIN, WEDNESDAY, LiveService, PostgresServer, make_settings, wait_until, ws_connect

ORDER = {"symbol": "EURUSD", "type": "buy", "volume": 0.1}


def opened(http: httpx.Client, **fields: Any) -> int:
    response = http.post("/api/orders", json={**ORDER, **fields})
    assert response.status_code == 201, response.text
    return int(response.json()["position"])


def pending(http: httpx.Client) -> int:
    response = http.post("/api/orders", json={"symbol": "EURUSD", "type": "buy_limit", "volume": 0.1, "price": 1.07})
    assert response.status_code == 201, response.text
    return int(response.json()["order"])


def refused(response: httpx.Response, status: int, error: str, *fragments: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and body["retcode"] is None, body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])


# --- 1. no coercion of trading input ----------------------------------------------------------
COERCIONS = [
    ({"volume": True}, "volume"),
    ({"volume": "0.01"}, "volume"),
    ({"volume": False}, "volume"),
    ({"deviation": True}, "deviation"),
    ({"deviation": "5"}, "deviation"),
    ({"deviation": 5.0}, "deviation"),
    ({"magic": True}, "magic"),
    ({"magic": "7"}, "magic"),
    ({"sl": "1.07"}, "sl"),
    ({"tp": True}, "tp"),
    ({"price": "1.09"}, "price"),
]


@pytest.mark.parametrize("fields,name", COERCIONS)
def test_order_bodies_never_coerce_booleans_or_strings_to_numbers(
    http: httpx.Client, terminal: SimulatedTerminal, fields: dict[str, Any], name: str
) -> None:
    refused(http.post("/api/orders", json={**ORDER, **fields}), 422, "invalid_input", f"{name}: ", "not a string, not true/false")
    assert terminal.positions_get() == ()


def test_modify_bodies_never_coerce_booleans_or_strings_to_numbers(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    position, order = opened(http), pending(http)
    for fields in ({"sl": True}, {"tp": "1.2"}, {"sl": False}):
        refused(http.patch(f"/api/positions/{position}", json=fields), 422, "invalid_input", f"{next(iter(fields))}: ")
        refused(http.patch(f"/api/orders/{order}", json=fields), 422, "invalid_input")
    refused(http.patch(f"/api/orders/{order}", json={"price": True}), 422, "invalid_input", "price: ")
    assert (terminal.positions_get()[0].sl, terminal.orders_get()[0].price_open) == (0.0, 1.07)


def test_an_integer_volume_is_still_one_lot(http: httpx.Client, terminal: SimulatedTerminal) -> None:
    response = http.post("/api/orders", json={**ORDER, "volume": 1})
    assert response.status_code == 201
    assert terminal.positions_get()[0].volume == 1.0


@pytest.mark.parametrize(
    "params,name",
    [
        ({"volume": "true"}, "volume"),
        ({"volume": "1e308"}, "volume"),
        ({"volume": "nan"}, "volume"),
        ({"volume": "inf"}, "volume"),
        ({"volume": "-inf"}, "volume"),
        ({"volume": "1_0"}, "volume"),
        ({"volume": "0x1"}, "volume"),
        ({"deviation": "true"}, "deviation"),
        ({"deviation": "1.5"}, "deviation"),
        ({"deviation": "1e3"}, "deviation"),
        ({"deviation": "+5"}, "deviation"),
        ({"deviation": "99999999999999999999999"}, "deviation"),
    ],
)
def test_query_numbers_are_parsed_but_never_coerced(
    http: httpx.Client, terminal: SimulatedTerminal, params: dict[str, str], name: str
) -> None:
    position = opened(http)
    refused(http.delete(f"/api/positions/{position}", params=params), 422, "invalid_input", f"{name}: ")
    assert terminal.positions_get()[0].volume == 0.1


@pytest.mark.parametrize(
    "fields,name",
    [
        ({"volume": 1e308}, "volume"),
        ({"volume": 2e6}, "volume"),
        ({"price": 1e308}, "price"),
        ({"sl": 1e308}, "sl"),
        ({"tp": 1e308}, "tp"),
        ({"volume": 0.00005}, "volume"),
        ({"volume": 0.00015}, "volume"),
    ],
)
def test_absurd_numbers_are_422_naming_the_field(http: httpx.Client, fields: dict[str, Any], name: str) -> None:
    refused(http.post("/api/orders", json={**ORDER, **fields}), 422, "invalid_input", f"{name}: ")


def test_absurd_levels_in_modifications_are_422_naming_the_field(http: httpx.Client) -> None:
    position, order = opened(http), pending(http)
    for name in ("sl", "tp"):
        refused(http.patch(f"/api/positions/{position}", json={name: 1e308}), 422, "invalid_input", f"{name}: ")
    for name in ("price", "sl", "tp"):
        refused(http.patch(f"/api/orders/{order}", json={name: 1e308}), 422, "invalid_input", f"{name}: ")


@pytest.mark.parametrize("ticket", [str(2**63), str(2**64 + 1), "1e3", "1.0", "+1", "true"])
def test_tickets_beyond_int64_or_not_digits_are_422(http: httpx.Client, ticket: str) -> None:
    for response in (
        http.patch(f"/api/positions/{ticket}", json={"sl": 0}),
        http.patch(f"/api/orders/{ticket}", json={"sl": 0}),
        http.delete(f"/api/positions/{ticket}"),
        http.delete(f"/api/orders/{ticket}"),
    ):
        refused(response, 422, "invalid_input", "ticket: ")


# --- 2. authenticate before the body, cap the body, read deadlines ---------------------------
def raw_request(port: int, data: bytes, read_timeout: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` on a fresh connection; return what came back until EOF and how long."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - start


def test_no_key_is_401_before_the_body_is_read(service: LiveService) -> None:
    with service.client(key=None) as anon:
        refused(anon.post("/api/orders", content=b"[[[[", headers={"content-type": "application/json"}), 401, "unauthorized", "X-API-Key")
    # 21 MB announced, none of it sent: the answer comes at once and the connection closes
    head = b"POST /api/orders HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 21000000\r\n\r\n"
    answer, seconds = raw_request(service.port, head)
    assert answer.startswith(b"HTTP/1.1 401") and b'"unauthorized"' in answer
    assert b"connection: close" in answer.lower() and seconds < 2


def test_bodies_are_capped_by_content_length_and_while_chunked(start_service: Any, terminal: SimulatedTerminal) -> None:
    live = start_service(terminal, max_body_bytes=4096)
    live.wait_healthy()
    with live.client() as http:
        big = {**ORDER, "comment": "x", "pad": "y" * 5000}
        refused(http.post("/api/orders", json=big), 413, "body_too_large", "4096 bytes")

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
            yield b'{"symbol": "EURUSD", "type": "buy", "volume": 0.1, "pad": "'
            for _ in range(64):
                yield b"z" * 1024
            yield b'"}'

        refused(
            http.post("/api/orders", content=chunks(), headers={"content-type": "application/json"}),
            413,
            "body_too_large",
            "MAX_BODY_BYTES",
        )
        # a body under the cap still works, chunked or not
        small = http.post(
            "/api/orders",
            content=iter([b'{"symbol": "EURUSD", ', b'"type": "buy", "volume": 0.1}']),
            headers={"content-type": "application/json"},
        )
        assert small.status_code == 201
    assert len(terminal.positions_get()) == 1


def test_default_body_cap_is_64_kib(service: LiveService) -> None:
    assert service.settings.max_body_bytes == 64 * 1024
    with service.client() as http:
        response = http.post("/api/orders", content=b"x" * (64 * 1024 + 1))
        refused(response, 413, "body_too_large")


@pytest.fixture
def quick_deadlines(tmp_path: Path, terminal: SimulatedTerminal) -> Iterator[LiveService]:
    live = LiveService(make_settings(tmp_path), terminal, http_protocol=protocol(header_timeout=0.5, body_timeout=0.8)).start()
    try:
        yield live
    finally:
        live.stop()


def test_half_a_request_is_dropped_after_the_header_timeout(quick_deadlines: LiveService) -> None:
    assert (HEADER_TIMEOUT, BODY_TIMEOUT) == (10.0, 30.0)  # the production deadlines
    port = quick_deadlines.port
    answer, seconds = raw_request(port, b"GET /hea")  # half a request line
    assert answer.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in answer
    assert 0.4 < seconds < 3
    answer, seconds = raw_request(port, b"")  # connects, sends nothing
    assert answer.startswith(b"HTTP/1.1 408") and seconds < 3
    # headers complete but the body never comes: closed at the body deadline
    head = (
        b"POST /api/orders HTTP/1.1\r\nhost: x\r\nx-api-key: "
        + API_KEY.encode()
        + b'\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{"sym'
    )
    _, seconds = raw_request(port, head)
    assert 0.7 < seconds < 3
    # a whole request on the same kind of connection is unaffected
    answer, _ = raw_request(port, b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")


# --- 3. /metrics needs a credential -------------------------------------------------------------
METRICS_TOKEN = "prometheus-scrape-token-0123456789"


def test_metrics_need_the_api_key_or_the_metrics_token(start_service: Any, terminal: SimulatedTerminal) -> None:
    digest = hashlib.sha256(METRICS_TOKEN.encode()).hexdigest()
    live = start_service(terminal, metrics_token_sha256=(digest,))
    live.wait_healthy()
    with httpx.Client(base_url=live.url, timeout=10) as anon:
        refused(anon.get("/metrics"), 401, "unauthorized", "metrics token")
        for header in (f"Bearer {METRICS_TOKEN}x", f"Bearer {digest}", METRICS_TOKEN):
            assert anon.get("/metrics", headers={"Authorization": header}).status_code == 401
        scraped = anon.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scraped.status_code == 200 and "mt5_account_balance" in scraped.text
        assert anon.get("/metrics", headers={"X-API-Key": API_KEY}).status_code == 200
        # the metrics token opens nothing else
        assert anon.get("/api/account", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 401
        assert anon.get("/health").status_code == 200  # the Docker healthcheck stays open


READ_KEY = "dashboard-read-key-0123456789"


def test_a_read_only_key_reads_and_streams_but_never_trades(start_service: Any, terminal: SimulatedTerminal) -> None:
    live = start_service(terminal, read_api_keys=(READ_KEY,))
    live.wait_healthy()
    with live.client(key=READ_KEY) as reader, live.client() as trader:
        for path in (
            "/api/account",
            "/api/positions",
            "/api/history/deals?position=1",
            "/api/rates/EURUSD?timeframe=M1&count=2",
            "/metrics",
        ):
            assert reader.get(path).status_code == 200, path
        order = {"symbol": "EURUSD", "type": "buy", "volume": 0.01}
        for method, path, body in (
            ("POST", "/api/orders", order),
            ("POST", "/api/orders/check", order),
            ("PATCH", "/api/positions/1", {"sl": 1.0}),
            ("DELETE", "/api/positions/1", None),
            ("DELETE", "/api/orders/1", None),
            ("POST", "/api/symbols/EURUSD/select", None),
        ):
            refused(reader.request(method, path, json=body), 403, "read_only_key", method, "trading key")
        assert terminal.positions_get() == () and len(terminal.history_orders_get(position=1) or ()) == 0
        # the same order with a trading key goes through; the read key sees it
        ticket = trader.post("/api/orders", json=order).json()["position"]
        assert reader.get(f"/api/positions/{ticket}").json()["ticket"] == ticket
        refused(reader.delete(f"/api/positions/{ticket}"), 403, "read_only_key")
        assert [p.ticket for p in terminal.positions_get()] == [ticket]
    with ws_connect(live, key=READ_KEY) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"


def test_metrics_without_a_token_file_need_the_api_key(service: LiveService) -> None:
    with service.client(key=None) as anon, service.client() as http:
        assert anon.get("/metrics").status_code == 401
        assert http.get("/metrics").status_code == 200


def test_metrics_token_file_holds_digests_only(tmp_path: Path) -> None:
    (tmp_path / "api_key").write_text(API_KEY + "\n")
    digest = hashlib.sha256(b"t").hexdigest()
    (tmp_path / "metrics_token_sha256").write_text(f"{digest.upper()}\n\n{'0' * 64}\n")
    env = {"MT5_LOGIN": "1", "MT5_SECRETS_DIR": str(tmp_path)}
    assert load_settings(env).metrics_token_sha256 == (digest, "0" * 64)
    (tmp_path / "metrics_token_sha256").write_text("the-token-itself\n")
    with pytest.raises(ConfigError, match="not a SHA-256 hex digest"):
        load_settings(env)


# --- 4. Allow on 405, Retry-After on 429, Bearer in any case ---------------------------------
def test_405_names_the_allowed_methods(http: httpx.Client) -> None:
    response = http.put("/api/account")
    refused(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"
    assert set(http.put("/api/orders").headers["allow"].split(", ")) == {"GET", "POST"}


class BusyTradeServer(SimulatedTerminal):
    """The simulator, except that the trade server answers every send 'too many requests'."""

    def order_send(self, request: dict[str, Any]) -> OrderSendResult | None:
        return OrderSendResult(c.TRADE_RETCODE_TOO_MANY_REQUESTS, 0, 0, 0.0, 0.0, 1.0, 1.0, "Too many requests", 1, 0, None)


def test_every_429_carries_retry_after(start_service: Any) -> None:
    live = start_service(BusyTradeServer(clock=ManualClock(WEDNESDAY)))
    live.wait_healthy()
    with live.client() as http:
        first = http.post("/api/orders", json=ORDER, headers={"Idempotency-Key": "busy-1"})
        assert first.status_code == 429 and first.json()["error"] == "too_many_requests"
        assert first.headers["retry-after"] == "1"
        # A refusal of the moment frees the key: the retry is sent again, not replayed.
        retry = http.post("/api/orders", json=ORDER, headers={"Idempotency-Key": "busy-1"})
        assert retry.status_code == 429 and "idempotent-replayed" not in retry.headers
        assert retry.headers["retry-after"] == "1"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive_on_every_path(service: LiveService, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {API_KEY}"}
    with httpx.Client(base_url=service.url, headers=headers, timeout=10) as http:
        assert http.get("/api/account").status_code == 200  # the fast path
        assert http.get("/api/history").status_code == 200  # FastAPI
        assert http.get("/metrics").status_code == 200
        # an empty X-API-Key does not hide a valid bearer token, on either path
        assert http.get("/api/account", headers={"X-API-Key": ""}).status_code == 200
        assert http.get("/api/history", headers={"X-API-Key": ""}).status_code == 200
    from websockets.sync.client import connect

    with connect(service.ws_url, additional_headers=headers, open_timeout=5) as ws:
        assert '"snapshot"' in ws.recv(timeout=5)


# --- 5. no key in the URL -------------------------------------------------------------------------
KEY_PARAMS = ["api_key", "APIKEY", "Api-Key", "key", "token", "access_token", "X-API-KEY", "authorization"]


@pytest.mark.parametrize("name", KEY_PARAMS)
def test_keys_in_the_url_are_refused_on_every_route(service: LiveService, terminal: SimulatedTerminal, name: str) -> None:
    with service.client() as http:  # a valid header key changes nothing
        for method, path in (
            ("GET", "/health"),
            ("GET", "/metrics"),
            ("GET", "/api/account"),
            ("GET", "/api/history"),
            ("POST", "/api/orders"),
            ("DELETE", "/api/positions/1"),
            ("GET", "/docs"),
        ):
            response = http.request(method, path, params={name: API_KEY}, json=ORDER if method == "POST" else None)
            refused(response, 400, "key_in_url", "X-API-Key header", "logs")
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as ws_refused:
        connect(f"{service.ws_url}?{name}={API_KEY}", additional_headers={"X-API-Key": API_KEY}, open_timeout=5)
    assert ws_refused.value.response.status_code == 400
    assert terminal.positions_get() == ()


# --- 6. bounded stores ------------------------------------------------------------------------------
def test_idempotency_store_is_pruned_periodically_by_the_app(
    monkeypatch: pytest.MonkeyPatch, start_service: Any, terminal: SimulatedTerminal
) -> None:
    monkeypatch.setattr(app_service, "MAINTENANCE_INTERVAL", 0.2)
    live = start_service(terminal)
    live.wait_healthy()
    with live.client() as http:
        assert http.post("/api/orders", json=ORDER, headers={"Idempotency-Key": "fresh"}).status_code == 201
    db = sqlite3.connect(live.settings.state_dir / "idempotency.sqlite3")
    db.execute(
        "INSERT INTO idempotency (key, fingerprint, state, created, boot) VALUES ('old', 'x', 'done', ?, 'b')", (time.time() - 8 * 86400,)
    )
    db.commit()

    def keys() -> set[str]:
        return {row[0] for row in db.execute("SELECT key FROM idempotency")}

    wait_until(lambda: keys() == {"fresh"}, timeout=5, what="the expired key to be pruned")
    db.close()


@pytest.fixture
def pg(postgres_server: PostgresServer) -> PostgresServer:
    postgres_server.reset()
    postgres_server.migrate()
    return postgres_server


def add_snapshot(pg: PostgresServer, login: int, days_ago: int) -> None:
    pg.query(
        "INSERT INTO mt5_account_snapshots (record_id, login, taken_at, balance, equity,"
        " margin, margin_free, margin_level, profit, positions, orders, raw) VALUES"
        f" (gen_random_uuid(), {login}, now() - interval '{days_ago} days',"
        " 1, 1, 0, 1, 0, 0, 0, 0, '{}')"
    )


def test_old_snapshots_of_this_account_are_deleted_periodically(
    monkeypatch: pytest.MonkeyPatch, start_service: Any, pg: PostgresServer
) -> None:
    other = LOGIN + 1
    for login, days in ((LOGIN, 100), (LOGIN, 91), (LOGIN, 10), (other, 100)):
        add_snapshot(pg, login, days)
    monkeypatch.setattr(app_service, "MAINTENANCE_INTERVAL", 0.2)
    live = start_service(SimulatedTerminal(), database_url=pg.dsn, postgres_password=pg.password, snapshot_interval=3600)
    live.wait_healthy()

    def ages() -> list[tuple[int, int]]:
        return pg.query(
            "SELECT login, extract(day FROM now() - taken_at)::int FROM"
            " mt5_account_snapshots WHERE taken_at < now() - interval '1 day'"
            " ORDER BY 1, 2"
        )

    # this account's snapshots older than 90 days go; its newer ones and another
    # account's stay (the trading record, orders and deals, is never pruned)
    wait_until(lambda: ages() == [(LOGIN, 10), (other, 100)], timeout=10, what="snapshots older than 90 days to be deleted")


def test_snapshot_retention_skips_when_postgres_is_down(tmp_path: Path) -> None:
    store = Store(tmp_path / "spool.sqlite3", LOGIN, "S", "postgresql://nobody@127.0.0.1:1/none", None, lambda n: None)
    try:
        assert asyncio.run(store.prune_snapshots(90)) is None
    finally:
        store.spool.close()


# --- 7. the schema says what the service enforces --------------------------------------------
def test_schema_states_volume_bounds_and_patch_min_properties(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    parts = schema["components"]["schemas"]
    volume = parts["OrderIn"]["properties"]["volume"]
    assert (volume["minimum"], volume["multipleOf"], volume["maximum"]) == (0.0001, 0.0001, 1e6)
    for name in ("PositionModifyIn", "OrderModifyIn"):
        assert parts[name]["minProperties"] == 1
    assert parts["OrderIn"]["properties"]["price"]["anyOf"][0]["maximum"] == 1e10
    delete = schema["paths"]["/api/positions/{ticket}"]["delete"]
    params = {p["name"]: p["schema"] for p in delete["parameters"]}
    assert params["ticket"]["maximum"] == 2**63 - 1
    assert params["volume"]["anyOf"][0]["multipleOf"] == 0.0001
    for code in ("400", "401", "404", "409", "413", "422", "429", "502", "503"):
        assert code in delete["responses"], code
    assert "Retry-After" in delete["responses"]["429"]["headers"]
    # and the service refuses what the schema excludes
    for body in ({}, {**ORDER, "volume": 0.00009}):
        path = "/api/positions/1" if not body else "/api/orders"
        response = http.request("PATCH" if not body else "POST", path, json=body)
        assert response.status_code == 422


# --- found by trying the demo as an attacker --------------------------------------------------
def test_a_huge_header_is_431_before_it_is_buffered_and_the_service_keeps_answering(service: LiveService) -> None:
    """A 64 MB header froze the service past the watchdog's grace: the request line and headers
    are capped (MAX_HEAD_BYTES) and counted before httptools buffers them."""
    start = time.monotonic()
    chunks = []
    with socket.create_connection(("127.0.0.1", service.port), timeout=5) as sock:
        try:
            sock.sendall(b"GET /api/account HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 4_000_000)
        except OSError:  # the service closed the connection once the cap was passed
            pass
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
    answer = b"".join(chunks)
    assert answer.startswith(b"HTTP/1.1 431") and b'"header_too_large"' in answer, answer[:300]
    assert time.monotonic() - start < 3
    with service.client() as http:
        assert http.get("/health").status_code == 200


def test_a_body_sent_with_its_headers_is_not_counted_as_headers(service: LiveService) -> None:
    body = b'{"symbol":"EURUSD","type":"buy","volume":0.01,"comment":"' + b"x" * 40_000 + b'"}'
    head = (
        b"POST /api/orders HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-api-key: "
        + API_KEY.encode()
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
    )
    answer, _ = raw_request(service.port, head + body)
    assert answer.startswith(b"HTTP/1.1 422") and b"comment" in answer, answer[:300]


def test_what_httptools_cannot_parse_is_a_json_400(service: LiveService) -> None:
    for request in (b"FOO /api/account HTTP/1.1\r\nhost: x\r\n\r\n", b"GET /api/account HTTP/3.0\r\nhost: x\r\n\r\n"):
        answer, _ = raw_request(service.port, request)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
        assert b"application/json" in answer and b'"bad_request"' in answer, answer[:300]


def test_a_query_parameter_given_twice_is_refused_not_guessed(http: httpx.Client) -> None:
    answer = http.delete("/api/positions/1?volume=0.01&volume=0.02")
    refused(answer, 422, "invalid_input", "volume: given more than once")
