"""MT5 Farm account service: REST + WebSocket API for one MetaTrader 5 account."""

__version__ = "0.1.0"
