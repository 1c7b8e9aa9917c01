"""The simulator's trading rules, called directly through the MetaTrader5-shaped interface."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mt5_account_service.backends import base as c
from mt5_account_service.backends.simulator import (
    DEFAULT_SYMBOLS,
    ManualClock,
    SimulatedTerminal,
    SymbolSpec,
    deterministic_mid,
    forex_market_open,
    volume_fits,
)
from mt5svc_testlib import SATURDAY, WEDNESDAY


class SetPrices:
    """A price path the test moves by hand: mid price per symbol, default the base price."""

    def __init__(self) -> None:
        self.mid: dict[str, float] = {}

    def __call__(self, spec: SymbolSpec, t: float) -> float:
        return self.mid.get(spec.name, spec.base)


@pytest.fixture
def prices() -> SetPrices:
    return SetPrices()


@pytest.fixture
def sim(prices: SetPrices) -> SimulatedTerminal:
    terminal = SimulatedTerminal(clock=ManualClock(WEDNESDAY), price_path=prices)
    assert terminal.initialize(login=777, server="Sim-1")
    return terminal


def market(sim: SimulatedTerminal, symbol: str, type_: int, volume: float, **extra: Any) -> Any:
    request = {
        "action": c.TRADE_ACTION_DEAL,
        "symbol": symbol,
        "type": type_,
        "volume": volume,
        "deviation": 20,
        "type_filling": c.ORDER_FILLING_FOK,
        **extra,
    }
    return sim.order_send(request)


def pending(sim: SimulatedTerminal, symbol: str, type_: int, volume: float, price: float, **extra: Any) -> Any:
    return sim.order_send({"action": c.TRADE_ACTION_PENDING, "symbol": symbol, "type": type_, "volume": volume, "price": price, **extra})


def test_prices_are_deterministic_per_symbol_and_time() -> None:
    eur, gbp = DEFAULT_SYMBOLS[0], DEFAULT_SYMBOLS[1]
    assert deterministic_mid(eur, WEDNESDAY) == deterministic_mid(eur, WEDNESDAY)
    assert deterministic_mid(eur, WEDNESDAY) != deterministic_mid(eur, WEDNESDAY + 30)
    assert deterministic_mid(eur, WEDNESDAY) / eur.base != deterministic_mid(gbp, WEDNESDAY) / gbp.base
    a = SimulatedTerminal(clock=ManualClock(WEDNESDAY))
    b = SimulatedTerminal(clock=ManualClock(WEDNESDAY))
    a.initialize(), b.initialize()
    assert a.symbol_info_tick("EURUSD") == b.symbol_info_tick("EURUSD")


def test_spread_is_the_symbols_spread(sim: SimulatedTerminal) -> None:
    for spec in DEFAULT_SYMBOLS:
        tick = sim.symbol_info_tick(spec.name)
        assert round((tick.ask - tick.bid) / spec.point) == spec.spread_points


def test_calls_before_initialize_fail_with_ipc_error() -> None:
    terminal = SimulatedTerminal(clock=ManualClock(WEDNESDAY))
    assert terminal.account_info() is None
    assert terminal.last_error()[0] == c.RES_E_INTERNAL_FAIL_CONNECT


def test_result_shapes_match_metatrader5(sim: SimulatedTerminal) -> None:
    info = sim.account_info()
    assert type(info).__name__ == "AccountInfo"
    assert {"login", "balance", "equity", "margin", "margin_free", "margin_level", "currency", "leverage"} <= set(info._asdict())
    result = market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.1)
    assert type(result).__name__ == "OrderSendResult"
    assert type(result.request).__name__ == "TradeRequest"
    assert list(result._asdict())[:10] == [
        "retcode",
        "deal",
        "order",
        "volume",
        "price",
        "bid",
        "ask",
        "comment",
        "request_id",
        "retcode_external",
    ]
    assert type(sim.positions_get()[0]).__name__ == "TradePosition"
    assert sim.last_error() == (c.RES_S_OK, "Success")


def test_market_buy_opens_position_at_ask_and_books_a_deal(sim: SimulatedTerminal) -> None:
    tick = sim.symbol_info_tick("EURUSD")
    result = market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.5, magic=42, comment="hello")
    assert result.retcode == c.TRADE_RETCODE_DONE
    assert result.price == tick.ask
    (pos,) = sim.positions_get()
    assert (pos.ticket, pos.type, pos.volume, pos.price_open, pos.magic, pos.comment) == (
        result.order,
        c.POSITION_TYPE_BUY,
        0.5,
        tick.ask,
        42,
        "hello",
    )
    deals = sim.history_deals_get(WEDNESDAY - 10, WEDNESDAY + 10)
    assert [d.type for d in deals] == [c.DEAL_TYPE_BALANCE, c.DEAL_TYPE_BUY]
    assert deals[1].entry == c.DEAL_ENTRY_IN and deals[1].position_id == pos.ticket


def test_profit_margin_and_equity_follow_the_price(sim: SimulatedTerminal, prices: SetPrices) -> None:
    market(sim, "EURUSD", c.ORDER_TYPE_BUY, 1.0)
    opened = sim.positions_get()[0]
    prices.mid["EURUSD"] = 1.09500  # +0.01 on the mid
    pos = sim.positions_get()[0]
    expected = round((pos.price_current - opened.price_open) * 100_000, 2)
    assert pos.profit == pytest.approx(expected)
    assert pos.profit > 900
    info = sim.account_info()
    assert info.equity == pytest.approx(10_000 + pos.profit)
    assert info.margin == pytest.approx(100_000 * 1.095 / 100, rel=1e-6)  # EUR margin in USD
    assert info.margin_free == pytest.approx(info.equity - info.margin)
    assert info.margin_level == pytest.approx(info.equity / info.margin * 100, rel=1e-4)


def test_jpy_profit_is_converted_to_account_currency(sim: SimulatedTerminal, prices: SetPrices) -> None:
    market(sim, "USDJPY", c.ORDER_TYPE_SELL, 1.0)
    opened = sim.positions_get()[0]
    prices.mid["USDJPY"] = 150.5
    pos = sim.positions_get()[0]
    expected = (opened.price_open - pos.price_current) * 100_000 / 150.5
    assert pos.profit == pytest.approx(expected, abs=0.01)


def test_closing_realises_profit_into_balance(sim: SimulatedTerminal, prices: SetPrices) -> None:
    market(sim, "XAUUSD", c.ORDER_TYPE_BUY, 0.1)
    pos = sim.positions_get()[0]
    prices.mid["XAUUSD"] = 2360.0
    close = market(sim, "XAUUSD", c.ORDER_TYPE_SELL, 0.1, position=pos.ticket)
    assert close.retcode == c.TRADE_RETCODE_DONE
    assert sim.positions_get() == ()
    realised = round((close.price - pos.price_open) * 0.1 * 100, 2)
    assert sim.account_info().balance == pytest.approx(10_000 + realised)
    out = sim.history_deals_get(position=pos.ticket)
    assert [d.entry for d in out] == [c.DEAL_ENTRY_IN, c.DEAL_ENTRY_OUT]
    assert out[1].profit == pytest.approx(realised)


def test_partial_close_keeps_the_rest(sim: SimulatedTerminal) -> None:
    market(sim, "EURUSD", c.ORDER_TYPE_SELL, 0.3)
    pos = sim.positions_get()[0]
    assert market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.1, position=pos.ticket).retcode == 10009
    assert sim.positions_get()[0].volume == pytest.approx(0.2)
    too_much = market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.5, position=pos.ticket)
    assert too_much.retcode == c.TRADE_RETCODE_INVALID_CLOSE_VOLUME


@pytest.mark.parametrize("volume", [0.0, 0.005, 0.015, 100.01, 1e9])
def test_volume_off_step_or_limits_is_retcode_10014(sim: SimulatedTerminal, volume: float) -> None:
    assert market(sim, "EURUSD", c.ORDER_TYPE_BUY, volume).retcode == c.TRADE_RETCODE_INVALID_VOLUME


@given(steps=st.integers(min_value=0, max_value=9999))
@settings(max_examples=200, deadline=None)
def test_every_volume_on_the_grid_fits(steps: int) -> None:
    volume = round(0.01 + steps * 0.01, 2)
    assert volume_fits(volume, 0.01, 100.0, 0.01)
    assert not volume_fits(volume + 0.005, 0.01, 100.0, 0.01)


def test_stops_on_the_wrong_side_are_retcode_10016(sim: SimulatedTerminal) -> None:
    tick = sim.symbol_info_tick("EURUSD")
    assert market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.1, sl=tick.bid + 0.001).retcode == 10016
    assert market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.1, tp=tick.bid - 0.001).retcode == 10016
    assert market(sim, "EURUSD", c.ORDER_TYPE_SELL, 0.1, sl=tick.ask - 0.001).retcode == 10016
    # closer than the stops level (10 points) is refused too
    assert market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.1, sl=tick.bid - 0.00005).retcode == 10016
    assert market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.1, sl=tick.bid - 0.001, tp=tick.bid + 0.001).retcode == 10009


def test_market_closed_on_weekend_except_crypto(prices: SetPrices) -> None:
    sim = SimulatedTerminal(clock=ManualClock(SATURDAY), price_path=prices)
    sim.initialize()
    assert not forex_market_open(SATURDAY) and forex_market_open(WEDNESDAY)
    assert market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.1).retcode == c.TRADE_RETCODE_MARKET_CLOSED
    assert market(sim, "BTCUSD", c.ORDER_TYPE_BUY, 0.1).retcode == c.TRADE_RETCODE_DONE


def test_insufficient_margin_is_retcode_10019(sim: SimulatedTerminal) -> None:
    check = sim.order_check(
        {"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "type": c.ORDER_TYPE_BUY, "volume": 50.0, "type_filling": c.ORDER_FILLING_FOK}
    )
    assert check.retcode == c.TRADE_RETCODE_NO_MONEY
    assert check.margin == pytest.approx(50 * 100_000 * 1.085 / 100, rel=1e-3)
    assert market(sim, "EURUSD", c.ORDER_TYPE_BUY, 50.0).retcode == c.TRADE_RETCODE_NO_MONEY
    assert sim.positions_get() == ()


def test_order_check_passes_with_retcode_0_and_changes_nothing(sim: SimulatedTerminal) -> None:
    check = sim.order_check(
        {"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "type": c.ORDER_TYPE_BUY, "volume": 1.0, "type_filling": c.ORDER_FILLING_FOK}
    )
    assert check.retcode == 0 and check.margin > 0
    assert check.margin_free == pytest.approx(10_000 - check.margin)
    assert sim.positions_get() == ()


def test_requote_when_price_moved_beyond_deviation(sim: SimulatedTerminal) -> None:
    tick = sim.symbol_info_tick("EURUSD")
    moved = market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.1, price=tick.ask - 0.0005, deviation=10)
    assert moved.retcode == c.TRADE_RETCODE_REQUOTE
    ok = market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.1, price=tick.ask - 0.00005, deviation=10)
    assert ok.retcode == c.TRADE_RETCODE_DONE


def test_unsupported_filling_mode_is_retcode_10030(sim: SimulatedTerminal) -> None:
    result = market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.1, type_filling=99)
    assert result.retcode == c.TRADE_RETCODE_INVALID_FILL


@pytest.mark.parametrize(
    "type_,offset,trigger_mid",
    [
        (c.ORDER_TYPE_BUY_LIMIT, -0.005, 1.0790),
        (c.ORDER_TYPE_SELL_LIMIT, +0.005, 1.0910),
        (c.ORDER_TYPE_BUY_STOP, +0.005, 1.0910),
        (c.ORDER_TYPE_SELL_STOP, -0.005, 1.0790),
    ],
)
def test_pending_orders_trigger_when_price_reaches_them(
    sim: SimulatedTerminal, prices: SetPrices, type_: int, offset: float, trigger_mid: float
) -> None:
    placed = pending(sim, "EURUSD", type_, 0.2, round(1.085 + offset, 5))
    assert placed.retcode == c.TRADE_RETCODE_DONE
    assert [o.ticket for o in sim.orders_get()] == [placed.order]
    assert sim.positions_get() == ()
    prices.mid["EURUSD"] = trigger_mid
    assert sim.orders_get() == ()
    (pos,) = sim.positions_get()
    assert pos.ticket == placed.order and pos.volume == 0.2
    is_buy = type_ in (c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_BUY_STOP)
    assert pos.type == (c.POSITION_TYPE_BUY if is_buy else c.POSITION_TYPE_SELL)


@pytest.mark.parametrize(
    "type_,price",
    [
        (c.ORDER_TYPE_BUY_LIMIT, 1.0900),
        (c.ORDER_TYPE_SELL_LIMIT, 1.0800),
        (c.ORDER_TYPE_BUY_STOP, 1.0800),
        (c.ORDER_TYPE_SELL_STOP, 1.0900),
    ],
)
def test_pending_price_on_the_wrong_side_is_retcode_10015(sim: SimulatedTerminal, type_: int, price: float) -> None:
    assert pending(sim, "EURUSD", type_, 0.1, price).retcode == c.TRADE_RETCODE_INVALID_PRICE


def test_pending_order_modify_and_remove(sim: SimulatedTerminal) -> None:
    placed = pending(sim, "EURUSD", c.ORDER_TYPE_BUY_LIMIT, 0.1, 1.08)
    modified = sim.order_send({"action": c.TRADE_ACTION_MODIFY, "order": placed.order, "price": 1.07, "sl": 1.06, "tp": 1.09})
    assert modified.retcode == c.TRADE_RETCODE_DONE
    order = sim.orders_get()[0]
    assert (order.price_open, order.sl, order.tp) == (1.07, 1.06, 1.09)
    removed = sim.order_send({"action": c.TRADE_ACTION_REMOVE, "order": placed.order})
    assert removed.retcode == c.TRADE_RETCODE_DONE and sim.orders_get() == ()
    again = sim.order_send({"action": c.TRADE_ACTION_REMOVE, "order": placed.order})
    assert again.retcode == c.TRADE_RETCODE_INVALID


@pytest.mark.parametrize("level,new_mid,reason", [("sl", 1.0700, c.REASON_SL), ("tp", 1.1000, c.REASON_TP)])
def test_sl_and_tp_close_positions(sim: SimulatedTerminal, prices: SetPrices, level: str, new_mid: float, reason: int) -> None:
    market(sim, "EURUSD", c.ORDER_TYPE_BUY, 0.1, sl=1.0750, tp=1.0950)
    ticket = sim.positions_get()[0].ticket
    prices.mid["EURUSD"] = new_mid
    assert sim.positions_get() == ()
    closing = sim.history_deals_get(position=ticket)[-1]
    assert closing.entry == c.DEAL_ENTRY_OUT and closing.reason == reason
    assert (closing.profit < 0) == (level == "sl")


def test_sltp_modification_and_its_refusals(sim: SimulatedTerminal) -> None:
    market(sim, "EURUSD", c.ORDER_TYPE_SELL, 0.1)
    ticket = sim.positions_get()[0].ticket
    ok = sim.order_send({"action": c.TRADE_ACTION_SLTP, "position": ticket, "symbol": "EURUSD", "sl": 1.0950, "tp": 1.0700})
    assert ok.retcode == c.TRADE_RETCODE_DONE
    assert (sim.positions_get()[0].sl, sim.positions_get()[0].tp) == (1.0950, 1.0700)
    same = sim.order_send({"action": c.TRADE_ACTION_SLTP, "position": ticket, "symbol": "EURUSD", "sl": 1.0950, "tp": 1.0700})
    assert same.retcode == c.TRADE_RETCODE_NO_CHANGES
    wrong = sim.order_send({"action": c.TRADE_ACTION_SLTP, "position": ticket, "symbol": "EURUSD", "sl": 1.0700})
    assert wrong.retcode == c.TRADE_RETCODE_INVALID_STOPS
    gone = sim.order_send({"action": c.TRADE_ACTION_SLTP, "position": 999, "sl": 1.1})
    assert gone.retcode == c.TRADE_RETCODE_POSITION_CLOSED


def test_stop_out_closes_the_worst_position(sim: SimulatedTerminal, prices: SetPrices) -> None:
    market(sim, "EURUSD", c.ORDER_TYPE_BUY, 9.0)  # ~9,765 USD margin of 10,000
    prices.mid["EURUSD"] = 1.0800  # -0.005 x 900,000 = -4,500: margin level ~57 %
    assert len(sim.positions_get()) == 1
    prices.mid["EURUSD"] = 1.0790  # -5,400: margin level ~47 % < 50 %
    assert sim.positions_get() == ()
    last = sim.history_deals_get(WEDNESDAY - 1, WEDNESDAY + 1)[-1]
    assert last.reason == c.REASON_SO
    assert sim.account_info().balance < 5_000


def test_terminal_loss_makes_every_call_fail_until_initialized(sim: SimulatedTerminal) -> None:
    sim.set_terminal_up(False)
    assert sim.account_info() is None and sim.initialize() is False
    assert sim.last_error()[0] == c.RES_E_INTERNAL_FAIL_CONNECT
    sim.set_terminal_up(True)
    assert sim.account_info() is None  # still needs initialize(), as MT5 does
    assert sim.initialize() and sim.account_info().login == 777
