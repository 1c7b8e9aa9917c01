"""The mt5linux path for real: the stock mt5linux client and our mt5linux backend talking
RPyC to `mt5-account-service simulator-rpyc` (a separate process, as the Wine bridge is)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mt5_account_service.backends import base as c
from mt5_account_service.backends.mt5linux import Mt5LinuxBackend
from mt5linux import MetaTrader5
from mt5svc_testlib import LOGIN, RpycSimulator, free_port, wait_until


def test_stock_mt5linux_client_talks_to_the_simulator_server(rpyc_simulator: RpycSimulator) -> None:
    mt5 = MetaTrader5(host="127.0.0.1", port=rpyc_simulator.port)
    assert mt5.initialize(login=4242, server="Bridge-1")
    info = mt5.account_info()
    assert (info.login, info.server, info.currency) == (4242, "Bridge-1", "USD")
    tick = mt5.symbol_info_tick("BTCUSD")
    assert tick.ask > tick.bid > 0
    result = mt5.order_send(
        {"action": c.TRADE_ACTION_DEAL, "symbol": "BTCUSD", "volume": 0.01, "type": c.ORDER_TYPE_BUY, "type_filling": c.ORDER_FILLING_FOK}
    )
    assert result.retcode == c.TRADE_RETCODE_DONE
    assert [p.ticket for p in mt5.positions_get()] == [result.order]
    assert tuple(mt5.last_error()) == (1, "Success")


def test_backend_returns_plain_data_over_rpyc(rpyc_simulator: RpycSimulator) -> None:
    backend = Mt5LinuxBackend("127.0.0.1", rpyc_simulator.port)
    assert backend.initialize(login=LOGIN)
    account = backend.account_info()
    assert type(account) is dict and account["login"] == LOGIN
    assert backend.symbol_info("NOPE") is None
    assert backend.last_error()[0] == c.RES_E_NOT_FOUND
    assert backend.positions_get() == []
    backend.close()


def test_service_trades_through_the_mt5linux_backend(start_service: Any, rpyc_simulator: RpycSimulator) -> None:
    live = start_service(None, backend="mt5linux", mt5linux_port=rpyc_simulator.port)
    live.wait_healthy()
    with live.client() as http:
        assert http.get("/api/account").json()["login"] == LOGIN
        opened = http.post("/api/orders", json={"symbol": "BTCUSD", "type": "buy", "volume": 0.05, "comment": "via rpyc"})
        assert opened.status_code == 201, opened.text
        ticket = opened.json()["position"]
        assert [p["ticket"] for p in http.get("/api/positions").json()] == [ticket]
        # datetime arguments cross the bridge too (mt5linux sends their repr)
        deals = http.get("/api/history", params={"days": 1}).json()
        assert opened.json()["deal"] in [d["ticket"] for d in deals]
        bad = http.post("/api/orders", json={"symbol": "BTCUSD", "type": "buy", "volume": 0.015})
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_volume"
        assert http.get("/api/symbols/NOPE").status_code == 404
    # an independent client of the same server sees the position: it is really there
    other = MetaTrader5(host="127.0.0.1", port=rpyc_simulator.port)
    assert [(p.ticket, p.comment) for p in other.positions_get()] == [(ticket, "via rpyc")]


def test_service_reconnects_after_the_bridge_dies(start_service: Any, rpyc_simulator: RpycSimulator) -> None:
    live = start_service(None, backend="mt5linux", mt5linux_port=rpyc_simulator.port)
    live.wait_healthy()
    with live.client() as http:
        rpyc_simulator.kill()
        wait_until(lambda: http.get("/health").status_code == 503, timeout=5, what="health to turn 503 after the bridge died")
        reason = http.get("/health").json()["reason"]
        assert "mt5linux" in reason or "RPyC" in reason or "connection" in reason.lower()
        rpyc_simulator.start()
        wait_until(lambda: http.get("/health").status_code == 200, timeout=15, what="reconnect to the restarted bridge")
        assert http.get("/api/account").json()["login"] == LOGIN


def test_simulator_rpyc_options_give_the_harder_terminal_across_the_bridge(start_service: Any, tmp_path: Path) -> None:
    # simulator-rpyc as a demo or test runs it for a netting, UTC+2 broker with a real password
    # (issue 12): the service meets it through the mt5linux backend as it would meet MT5.
    (tmp_path / "broker_password").write_text("s3cret-pw\n")
    args = ("--margin-mode", "netting", "--server-time-offset", "7200", "--password-file", str(tmp_path / "broker_password"))
    sim = RpycSimulator(free_port(), args=args)
    sim.start()
    try:
        (tmp_path / "secrets").mkdir()
        (tmp_path / "secrets" / "password").write_text("s3cret-pw\n")
        live = start_service(None, backend="mt5linux", mt5linux_port=sim.port)
        live.wait_healthy()
        with live.client() as http:
            assert http.get("/api/account").json()["margin_mode"] == c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING
            wait_until(lambda: http.get("/health").json()["server_time_offset"] == 7200, what="the offset learned over RPyC")
            for _ in range(2):
                opened = http.post("/api/orders", json={"symbol": "BTCUSD", "type": "buy", "volume": 0.01})
                assert opened.status_code == 201, opened.text
            (position,) = http.get("/api/positions").json()  # netting: one position per symbol
            assert position["volume"] == 0.02 and position["ticket"] == opened.json()["position"]
            deals = http.get("/api/history", params={"days": 1}).json()
            assert all(abs(d["time"] - time.time()) < 60 for d in deals if d["symbol"] == "BTCUSD")  # UTC, not UTC+2
    finally:
        sim.kill()
