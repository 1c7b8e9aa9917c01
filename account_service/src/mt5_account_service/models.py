"""Request and response bodies of the API (pydantic)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .backends import base as c


class OrderType(str, Enum):
    buy = "buy"
    sell = "sell"
    buy_limit = "buy_limit"
    sell_limit = "sell_limit"
    buy_stop = "buy_stop"
    sell_stop = "sell_stop"

    @property
    def mt5(self) -> int:
        return _MT5_TYPES[self]

    @property
    def is_buy(self) -> bool:
        return self.value.startswith("buy")

    @property
    def is_market(self) -> bool:
        return self in (OrderType.buy, OrderType.sell)


_MT5_TYPES = {
    OrderType.buy: c.ORDER_TYPE_BUY, OrderType.sell: c.ORDER_TYPE_SELL,
    OrderType.buy_limit: c.ORDER_TYPE_BUY_LIMIT, OrderType.sell_limit: c.ORDER_TYPE_SELL_LIMIT,
    OrderType.buy_stop: c.ORDER_TYPE_BUY_STOP, OrderType.sell_stop: c.ORDER_TYPE_SELL_STOP,
}

SYMBOL_PATTERN = r"^[A-Za-z0-9._#+\-]{1,32}$"


class OrderIn(BaseModel):
    """A market order (``buy``/``sell``) or a pending order (limits and stops, with price)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(pattern=SYMBOL_PATTERN, examples=["EURUSD"])
    type: OrderType
    volume: float = Field(gt=0, allow_inf_nan=False, description="lots")
    price: float | None = Field(None, gt=0, allow_inf_nan=False,
                                description="required for pending orders; for market orders "
                                            "the expected price (checked against deviation)")
    sl: float | None = Field(None, gt=0, allow_inf_nan=False)
    tp: float | None = Field(None, gt=0, allow_inf_nan=False)
    deviation: int = Field(20, ge=0, le=100_000, description="points of slippage accepted")
    comment: str = Field("", max_length=31, pattern=r"^[\x20-\x7e]*$")
    magic: int = Field(0, ge=0, le=2**63 - 1)

    @model_validator(mode="after")
    def _price_for_pending(self) -> "OrderIn":
        if not self.type.is_market and self.price is None:
            raise ValueError(f"a {self.type.value} order needs a price")
        return self


class PositionModifyIn(BaseModel):
    """New SL/TP of an open position; null or 0 removes that level, omitted keeps it."""

    model_config = ConfigDict(extra="forbid")

    sl: float | None = Field(None, ge=0, allow_inf_nan=False)
    tp: float | None = Field(None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _something(self) -> "PositionModifyIn":
        if not self.model_fields_set:
            raise ValueError("give sl and/or tp")
        return self


class OrderModifyIn(BaseModel):
    """New price and/or SL/TP of a pending order; omitted fields are kept."""

    model_config = ConfigDict(extra="forbid")

    price: float | None = Field(None, gt=0, allow_inf_nan=False)
    sl: float | None = Field(None, ge=0, allow_inf_nan=False)
    tp: float | None = Field(None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _something(self) -> "OrderModifyIn":
        if not self.model_fields_set:
            raise ValueError("give price, sl and/or tp")
        return self


class TradeOut(BaseModel):
    """What the trade server answered (MqlTradeResult, plus its text)."""

    retcode: int
    retcode_text: str
    order: int
    deal: int
    volume: float
    price: float
    bid: float
    ask: float
    comment: str
    request_id: int
    position: int | None = None


class ErrorOut(BaseModel):
    error: str
    message: str
    retcode: int | None = None


class HealthOut(BaseModel):
    status: str
    connected: bool
    last_poll_age: float | None
    reason: str | None


def trade_out(result: dict[str, Any], position: int | None = None) -> dict[str, Any]:
    retcode = int(result.get("retcode", 0))
    return TradeOut(
        retcode=retcode, retcode_text=c.retcode_text(retcode),
        order=int(result.get("order", 0)), deal=int(result.get("deal", 0)),
        volume=float(result.get("volume", 0.0)), price=float(result.get("price", 0.0)),
        bid=float(result.get("bid", 0.0)), ask=float(result.get("ask", 0.0)),
        comment=str(result.get("comment", "")), request_id=int(result.get("request_id", 0)),
        position=position).model_dump()
