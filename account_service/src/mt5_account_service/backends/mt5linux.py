"""Backend ``mt5linux``: the MetaTrader5 module of a Windows Python, reached over RPyC.

Inside a Wine container, Windows Python runs ``MetaTrader5`` next to the terminal and an
RPyC classic server (``python -m mt5linux`` / ``rpyc_classic``). The PyPI package
``mt5linux`` is the Linux-side client: each function evaluates ``mt5.<name>(...)`` on the
server and returns a remote reference. This class calls those very functions, then turns
each remote result into builtins with one more round trip (a helper defined on the server
serialises it to JSON), so no remote proxy ever escapes into the service.
"""

from __future__ import annotations

import json
from typing import Any

from .mt5 import BackendImportError

#: Defined once per connection on the server (runs under Windows Python too).
_SERVER_HELPER = """
def _mt5farm_plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _mt5farm_plain(v) for k, v in value.items()}
    if hasattr(value, "_asdict"):
        return {str(k): _mt5farm_plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [_mt5farm_plain(v) for v in value]
    return str(value)

def _mt5farm_json(value):
    import json as _json
    return _json.dumps(_mt5farm_plain(value))
"""

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
    "symbol_info",
    "symbol_info_tick",
    "symbols_get",
    "symbol_select",
    "order_check",
    "order_send",
)


class Mt5LinuxBackend:
    """The ``MetaTrader5`` interface over an ``mt5linux`` RPyC connection.

    The connection is made by :meth:`initialize` (and made again after a loss), so the
    service's reconnect loop needs nothing backend-specific. Results are plain dicts/lists.
    """

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self._host, self._port, self._timeout = host, port, timeout
        self._client: Any = None
        self._to_json: Any = None

    def _connect(self) -> None:
        try:
            from mt5linux import MetaTrader5
        except ImportError as exc:
            raise BackendImportError(
                "MT5_BACKEND=mt5linux needs the mt5linux package: pip install 'mt5-account-service[mt5linux]'"
            ) from exc
        client = MetaTrader5(host=self._host, port=self._port, timeout=self._timeout)
        client.execute(_SERVER_HELPER)
        self._to_json = client.eval("_mt5farm_json")
        self._client = client

    def close(self) -> None:
        """Drop the RPyC connection (the next ``initialize`` makes a new one)."""
        client, self._client, self._to_json = self._client, None, None
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
            remote = getattr(self._client, name)(*args, **kwargs)
            if remote is None or isinstance(remote, (bool, int, float, str)):
                return remote
            return json.loads(self._to_json(remote))
        except (EOFError, OSError) as exc:
            self.close()
            raise ConnectionError(f"lost the mt5linux RPyC connection to {self._host}:{self._port}: {exc}") from exc

    def initialize(self, path: str | None = None, **kwargs: Any) -> bool:
        if self._client is None:
            try:
                self._connect()
            except (EOFError, OSError) as exc:
                self.close()
                raise ConnectionError(f"cannot reach the mt5linux RPyC server at {self._host}:{self._port}: {exc}") from exc
        args = (path,) if path else ()
        return bool(self._call("initialize", *args, **kwargs))

    def last_error(self) -> tuple[int, str]:
        code, message = self._call("last_error")
        return int(code), str(message)

    def __getattr__(self, name: str) -> Any:
        if name in _FUNCTIONS:
            return lambda *args, **kwargs: self._call(name, *args, **kwargs)
        raise AttributeError(name)
