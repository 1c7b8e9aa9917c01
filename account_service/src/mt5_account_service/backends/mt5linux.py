"""Backend ``mt5linux``: the MetaTrader5 module of a Windows Python, reached over RPyC.

Inside a Wine container, Windows Python runs ``MetaTrader5`` next to the terminal and an
RPyC classic server (``python -m mt5linux`` / ``rpyc_classic``). The PyPI package
``mt5linux`` is the Linux-side client, whose connection this class uses; each call is one
evaluation on the server, ``_to_json(mt5.<name>(...))``, the arguments written as literals
(:func:`call_code`) and the result turned into JSON text there by a helper the service
defines on the server (bridge.SERVER_HELPER), so no remote proxy ever escapes into the
service and every call is one round trip.

Timeouts (issue 12, fault 7; :mod:`mt5_account_service.timeouts` orders them): every request
waits ``RPYC_REQUEST_TIMEOUT`` (30 s), except ``initialize``, which waits the terminal's own
limit (its ``timeout`` argument) plus ``INITIALIZE_MARGIN``, so the terminal ends a slow
``initialize``, not the client. Never two at once: this object starts no ``initialize`` while
one of its own is outstanding, and the bridge refuses one while another runs there (the
helper guards it: :func:`.bridge.guard_initialize`), e.g. after a client gave up on a hung one.
"""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime
from typing import Any

from ..timeouts import RPYC_REQUEST_TIMEOUT, rpyc_initialize_timeout
from .bridge import INITIALIZE_BUSY, SERVER_HELPER, records
from .mt5 import BackendImportError

_FUNCTIONS = (
    "initialize",
    "login",
    "shutdown",
    "last_error",
    "terminal_info",
    "account_info",
    "positions_get",
    "orders_get",
    "history_deals_get",
    "history_orders_get",
    "copy_rates_from",
    "copy_rates_from_pos",
    "copy_rates_range",
    "copy_ticks_from",
    "copy_ticks_range",
    "symbols_total",
    "symbol_info",
    "symbol_info_tick",
    "symbols_get",
    "symbol_select",
    "order_check",
    "order_send",
)


def call_code(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The Python expression the bridge evaluates for ``mt5.<name>(*args, **kwargs)``: every
    argument written with ``repr``, so a value is always data, never code.

    Not mt5linux's own methods: its ``copy_rates_*``/``copy_ticks_*`` paste the symbol
    between double quotes into the code they send (``mt5.copy_rates_range("{symbol}", ...)``),
    so a symbol name holding a quote would run as Python in the bridge, next to the terminal
    and its password. Arguments are checked to be literals the bridge can read back (None,
    bool, int, finite float, str, timezone-aware datetime, and lists, tuples and dicts of
    them); anything else is a TypeError here, before anything is sent."""
    if name not in _FUNCTIONS:
        raise ValueError(f"not a MetaTrader5 function the service calls: {name!r}")
    for value in (*args, *kwargs.values(), *kwargs.keys()):
        _check_literal(value)
    return f"mt5.{name}(*{args!r}, **{kwargs!r})"


def _check_literal(value: Any) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"a non-finite number cannot be sent to the terminal: {value!r}")
        return
    if isinstance(value, datetime):
        if value.tzinfo is not UTC:
            raise TypeError(f"datetimes sent to the terminal must be in UTC (datetime.UTC): {value!r}")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_literal(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_literal(key)
            _check_literal(item)
        return
    raise TypeError(f"a {type(value).__name__} cannot be sent to the terminal: {value!r}")


class Mt5LinuxBackend:
    """The ``MetaTrader5`` interface over an ``mt5linux`` RPyC connection.

    The connection is made by :meth:`initialize` (and made again after a loss), so the
    service's reconnect loop needs nothing backend-specific. Results are plain dicts/lists.
    """

    #: Results are builtins already (JSON from the bridge): the gateway does not copy them.
    returns_plain = True

    def __init__(self, host: str, port: int, timeout: float = RPYC_REQUEST_TIMEOUT) -> None:
        """``timeout``: seconds any request but ``initialize`` may take (see the module's doc)."""
        self._host, self._port, self._timeout = host, port, timeout
        self._client: Any = None
        self._initializing = threading.Lock()

    def _connect(self) -> None:
        try:
            from mt5linux import MetaTrader5
        except ImportError as exc:
            raise BackendImportError(
                "MT5_BACKEND=mt5linux needs the mt5linux package: pip install 'mt5-account-service[mt5linux]'"
            ) from exc
        client = MetaTrader5(host=self._host, port=self._port, timeout=self._timeout)
        client.execute(SERVER_HELPER)
        self._client = client

    def close(self) -> None:
        """Drop the RPyC connection (the next ``initialize`` makes a new one)."""
        client, self._client = self._client, None
        conn = getattr(client, "_MetaTrader5__conn", None)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - the connection is being thrown away
                pass

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._client is None:
            raise ConnectionError(f"not connected to the mt5linux RPyC server at {self._host}:{self._port}")
        try:
            # One round trip: the bridge calls the function and turns its result into JSON
            # text in the same evaluation (two round trips cost a delayed ACK's 40 ms on
            # large answers, and no remote proxy is ever created).
            return records(json.loads(self._client.eval(f"_to_json({call_code(name, args, kwargs)})")))
        except TimeoutError as exc:  # rpyc's AsyncResultTimeout; an OSError, so before it
            waited = self._request_timeout()
            self.close()
            raise ConnectionError(
                f"the mt5linux RPyC server at {self._host}:{self._port} did not answer {name}() within {waited:g} s"
            ) from exc
        except (EOFError, OSError) as exc:
            self.close()
            raise ConnectionError(f"lost the mt5linux RPyC connection to {self._host}:{self._port}: {exc}") from exc
        except RuntimeError as exc:
            if INITIALIZE_BUSY in str(exc):
                raise ConnectionError(str(exc).split("\n", 1)[0]) from exc
            raise

    def _request_timeout(self) -> float:
        conn = getattr(self._client, "_MetaTrader5__conn", None)
        return float(conn._config["sync_request_timeout"]) if conn is not None else self._timeout

    def _set_request_timeout(self, seconds: float) -> None:
        conn = getattr(self._client, "_MetaTrader5__conn", None)
        if conn is not None:
            conn._config["sync_request_timeout"] = seconds

    def initialize(self, path: str | None = None, **kwargs: Any) -> bool:
        """``MetaTrader5.initialize`` in the bridge (connecting first when needed), waited for
        the terminal's own limit (``timeout``, ms) plus INITIALIZE_MARGIN; ConnectionError when
        the bridge cannot be reached or refuses a second initialize beside a running one."""
        if not self._initializing.acquire(blocking=False):
            raise ConnectionError("an initialize() of this client is still outstanding; not starting a second one")
        try:
            if self._client is None:
                try:
                    self._connect()
                except (EOFError, OSError) as exc:
                    self.close()
                    raise ConnectionError(f"cannot reach the mt5linux RPyC server at {self._host}:{self._port}: {exc}") from exc
            args = (path,) if path else ()
            self._set_request_timeout(max(self._timeout, rpyc_initialize_timeout(kwargs.get("timeout"))))
            try:
                return bool(self._call("initialize", *args, **kwargs))
            finally:
                self._set_request_timeout(self._timeout)
        finally:
            self._initializing.release()

    def last_error(self) -> tuple[int, str]:
        code, message = self._call("last_error")
        return int(code), str(message)

    def __getattr__(self, name: str) -> Any:
        if name in _FUNCTIONS:
            return lambda *args, **kwargs: self._call(name, *args, **kwargs)
        raise AttributeError(name)
