"""Gateway: the only code that calls the backend.

The ``MetaTrader5`` module (and an RPyC connection) must be called from one thread at a
time, and its calls block. All calls therefore run, one after another, on a single worker
thread; the event loop only awaits them. Failures become exceptions that say what broke,
so nothing downstream can mistake a backend error for an empty answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .backends.base import RES_E_AUTH_FAILED, RES_E_INVALID_PARAMS, RES_E_NOT_FOUND, RES_S_OK, to_plain
from .config import Settings, read_secret
from .server_time import SYMBOLS, ServerClock, to_server, to_utc
from .timeouts import INITIALIZE_TIMEOUT


class BackendError(Exception):
    """The backend answered with an error (``None`` plus ``last_error``)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class BackendUnavailable(BackendError):
    """The backend cannot be reached: not connected, connection lost, terminal down."""


class BackendAuthFailed(BackendUnavailable):
    """The trade server refused the login (last_error -6, RES_E_AUTH_FAILED): wrong password,
    login or server. Retrying with the same credentials only locks the account."""


class BackendUnknownServer(BackendUnavailable):
    """The terminal does not know the trade server MT5_SERVER names: it is not in the
    terminal's server list (``config/servers.dat``), so the ini's ``Server=`` and
    ``initialize(server=...)`` cannot reach it. No login reaches the broker, and retrying
    helps only once the list has the server (a rebuilt image, or MT5_SERVER corrected).

    MT5 has no last_error code of its own for this: the MetaTrader5 module answers with its
    "not found" code (-4, RES_E_NOT_FOUND), or a message naming the server as not found or
    unknown (:func:`unknown_server`)."""

    def __init__(self, message: str, server: str, code: int | None = None) -> None:
        super().__init__(message, code)
        self.server = server


class BackendInvalidArgument(BackendError):
    """The terminal refused an argument of the call (last_error -2, RES_E_INVALID_PARAMS),
    e.g. a comment it does not take: the caller's input, never the terminal's fault."""


@dataclass(frozen=True)
class Snapshot:
    """One consistent read of the account, taken on the worker thread."""

    taken_at: float
    terminal: dict[str, Any]
    account: dict[str, Any]
    positions: dict[int, dict[str, Any]]
    orders: dict[int, dict[str, Any]]


class Gateway:
    """Serialised, asynchronous access to a backend object shaped like ``MetaTrader5``."""

    def __init__(self, backend: Any, settings: Settings) -> None:
        self.backend = backend
        self._settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mt5-backend")
        #: The trade server's clock: results are served in UTC, history windows sent in its time.
        self.server_clock = ServerClock(settings.state_dir, settings.server_time_offset)
        self._clock_symbols: list[str] = []

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the backend thread; connection failures become BackendUnavailable."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except (ConnectionError, EOFError, TimeoutError) as exc:
            raise BackendUnavailable(str(exc) or type(exc).__name__) from exc

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call one backend function; ``None`` results raise with the backend's last_error."""
        return await self.run(lambda: self._checked(name, *args, **kwargs))

    async def call_optional(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Like :meth:`call`, but ``None`` is returned (not raised) when last_error is
        'not found' or OK (e.g. ``symbol_info`` of an unknown symbol)."""
        return await self.run(lambda: self._optional(name, *args, **kwargs))

    def _invoke(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The backend call with datetimes on the server's clock (history windows)."""
        offset = self.server_clock.seconds
        args = tuple(to_server(a, offset) for a in args)
        kwargs = {k: to_server(v, offset) for k, v in kwargs.items()}
        return getattr(self.backend, name)(*args, **kwargs)

    def _plain(self, result: Any) -> Any:
        """``result`` as builtins, in UTC (a backend that returns builtins is not copied)."""
        plain = result if getattr(self.backend, "returns_plain", False) else to_plain(result)
        return to_utc(plain, self.server_clock.seconds)

    def _checked(self, name: str, *args: Any, **kwargs: Any) -> Any:
        result = self._invoke(name, args, kwargs)
        if result is None:
            raise self._error(name)
        return self._plain(result)

    def _optional(self, name: str, *args: Any, **kwargs: Any) -> Any:
        result = self._invoke(name, args, kwargs)
        if result is not None:
            return self._plain(result)
        code, message = self.backend.last_error()
        if code in (RES_S_OK, -4):
            return None
        raise _classify(name, code, message)

    def _error(self, name: str) -> BackendError:
        code, message = self.backend.last_error()
        return _classify(name, code, message)

    async def connect(self) -> None:
        """initialize + login, then check the terminal holds the configured account."""
        await self.run(self._connect_sync)

    def _connect_sync(self) -> None:
        s = self._settings
        # The terminal's own limit (ms); the mt5linux backend waits for the answer longer than
        # this (timeouts.RPYC_INITIALIZE_TIMEOUT), so the terminal ends a slow initialize.
        kwargs: dict[str, Any] = {"login": s.login, "server": s.server or None, "timeout": int(INITIALIZE_TIMEOUT * 1000)}
        # The file as it is now: a password rotated since the start is used at once (after the
        # broker refused the old one, login_guard waits for exactly this change).
        password = read_secret(s.secrets_dir, "password") if (s.secrets_dir / "password").exists() else s.password
        if password is not None:
            kwargs["password"] = password
        args: tuple[str, ...] = ()
        if s.terminal_path:
            # The image's terminal is a portable install: without portable=True the
            # MetaTrader5 module would start a second, non-portable terminal.
            args = (s.terminal_path,)
            kwargs["portable"] = True
        if not self.backend.initialize(*args, **kwargs):
            code, message = self.backend.last_error()
            if code == RES_E_AUTH_FAILED:
                raise BackendAuthFailed(
                    f"initialize() failed: {message} ({code}) for login {s.login} on {s.server or 'the default server'}", code
                )
            if s.server and unknown_server(code, message):
                raise BackendUnknownServer(
                    f"{s.server} is not in the terminal's server list (initialize() failed: {message} ({code})); the terminal "
                    "finds a server only in its config/servers.dat: rebuild the image from a terminal directory that has "
                    f"logged in to {s.server} once (the next start brings the image's servers.dat to the account's volume), "
                    "or correct the account's server in the inventory (MT5_SERVER)",
                    s.server,
                    code,
                )
            raise BackendUnavailable(f"initialize() failed: {message} ({code})", code)
        account = self._checked("account_info")
        if int(account.get("login", 0)) != s.login:
            raise BackendUnavailable(
                f"the terminal is logged in to account {account.get('login')}, not MT5_LOGIN={s.login}: check the terminal's saved account"
            )
        lister = getattr(self.backend, "symbols_get", None)
        symbols = (to_plain(lister()) if callable(lister) else None) or []
        self._clock_symbols = [str(x["name"]) for x in symbols if x.get("visible")][:SYMBOLS]
        self._learn_offset_sync()

    async def learn_offset(self) -> None:
        """Look at the newest quote for the trade server's offset (see server_time.py)."""
        await self.run(self._learn_offset_sync)

    def _learn_offset_sync(self) -> None:
        # Raw quote times (server clock, ms): the newest of the Market Watch symbols.
        newest = 0
        for name in self._clock_symbols:
            tick = self.backend.symbol_info_tick(name)
            if tick is not None:
                newest = max(newest, int(to_plain(tick).get("time_msc", 0)))
        self.server_clock.learn(newest, time.time())

    async def ticks(self, symbols: list[str]) -> dict[str, dict[str, Any]]:
        """``symbol_info_tick`` of each symbol in one turn of the backend thread (times in
        UTC); a symbol the terminal has no tick for is left out."""
        return await self.run(lambda: self._ticks_sync(symbols))

    def _ticks_sync(self, symbols: list[str]) -> dict[str, dict[str, Any]]:
        found = {s: self.backend.symbol_info_tick(s) for s in symbols}
        return {s: self._plain(t) for s, t in found.items() if t is not None}

    async def snapshot(self) -> Snapshot:
        return await self.run(self._snapshot_sync)

    def _snapshot_sync(self) -> Snapshot:
        terminal = self._checked("terminal_info")
        if not terminal.get("connected", False):
            raise BackendUnavailable("the terminal is not connected to the trade server")
        account = self._checked("account_info")
        positions = self._checked("positions_get")
        orders = self._checked("orders_get")
        return Snapshot(time.time(), terminal, account, {int(p["ticket"]): p for p in positions}, {int(o["ticket"]): o for o in orders})

    async def close(self) -> None:
        def _shutdown() -> None:
            try:
                self.backend.shutdown()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
            closer = getattr(self.backend, "close", None)
            if callable(closer):
                closer()

        try:
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(self._executor, _shutdown), timeout=5)
        except (TimeoutError, RuntimeError):
            pass
        self._executor.shutdown(wait=False, cancel_futures=True)


def unknown_server(code: int, message: str) -> bool:
    """Whether a failed initialize/login says the terminal does not know the server: the
    module's "not found" code, or a message naming the server as not found or unknown."""
    text = message.lower()
    return code == RES_E_NOT_FOUND or ("server" in text and ("not found" in text or "unknown" in text))


def _classify(name: str, code: int, message: str) -> BackendError:
    text = f"{name}() failed: {message} (last_error {code})"
    if code <= -10000:  # RES_E_INTERNAL_FAIL_*: IPC/terminal connection problems
        return BackendUnavailable(text, code)
    if code == RES_E_INVALID_PARAMS:
        return BackendInvalidArgument(text, code)
    return BackendError(text, code)
