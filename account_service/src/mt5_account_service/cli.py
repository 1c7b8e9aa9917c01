"""The ``mt5-account-service`` command.

mt5-account-service                      serve (same as ``serve``)
mt5-account-service healthcheck          GET localhost /health (HTTPS when serving it); exit 0 when healthy
mt5-account-service simulator-rpyc       serve a simulated terminal over RPyC (mt5linux)
mt5-account-service migrate              apply the Postgres migrations and exit
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .backends import base as c
from .backends.simulator import SimulatedTerminal, TerminalOptions
from .config import ConfigError, load_settings, read_secret, tls_files

#: simulator-rpyc --margin-mode: MT5's account margin modes (ACCOUNT_MARGIN_MODE_RETAIL_*).
MARGIN_MODES = {"hedging": c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING, "netting": c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING}


def _configure_logging() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve() -> int:
    import uvicorn

    from .api import create_app
    from .server import protocol

    _configure_logging()
    try:
        settings = load_settings()
        app = create_app(settings)
    except (ConfigError, RuntimeError) as exc:
        print(f"mt5-account-service: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop  # noqa: F401 - only whether it is installed: uvicorn loads it by name

        loop = "uvloop"
    except ImportError:  # Windows
        loop = "asyncio"
    # http: httptools with header/body read deadlines (uvicorn has none of its own).
    uvicorn.run(
        app,
        host="0.0.0.0",
        port=settings.service_port,
        loop=loop,
        http=protocol(),
        ws="websockets-sansio",
        lifespan="on",
        access_log=False,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        # HTTPS only, when the host's certificate and key are in the secrets (a farm of more
        # than one host): Nginx and Prometheus verify it against the farm's CA.
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
    )
    return 0


def health_url_and_context(port: str, secrets_dir: Path) -> tuple[str, ssl.SSLContext | None]:
    """Where the healthcheck asks: ``http://127.0.0.1:<port>/health``, or ``https://`` with a
    context that verifies the service's certificate (its name 127.0.0.1) against the CA in the
    secrets, when the service serves HTTPS."""
    ca, cert, _key = tls_files(secrets_dir)
    if cert is None:
        return f"http://127.0.0.1:{port}/health", None
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    return f"https://127.0.0.1:{port}/health", context


def healthcheck(timeout: float) -> int:
    port = os.environ.get("SERVICE_PORT", "8000")
    try:
        url, context = health_url_and_context(port, Path(os.environ.get("MT5_SECRETS_DIR") or "/run/secrets/mt5"))
    except ConfigError as exc:
        print(f"unhealthy: {exc}")
        return 1
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            body, status = response.read().decode(), response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read().decode(errors="replace"), exc.code
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: cannot reach {url}: {exc}")
        return 1
    try:
        reason = json.loads(body).get("reason")
    except ValueError:
        reason = body[:200]
    print("healthy" if status == 200 else f"unhealthy ({status}): {reason}")
    return 0 if status == 200 else 1


def terminal_options(args: argparse.Namespace) -> TerminalOptions:
    """The simulator-rpyc options as :class:`TerminalOptions` (the harder cases of issue 12).

    Passwords come from files, never the command line (a process list shows it to everyone).
    Raises ConfigError for an unreadable password file.
    """

    def password(path: Path | None) -> str | None:
        return None if path is None else read_secret(path.parent, path.name)

    return TerminalOptions(
        margin_mode=MARGIN_MODES[args.margin_mode],
        password=password(args.password_file),
        investor_password=password(args.investor_password_file),
        server_time_offset=args.server_time_offset,
        hidden_symbols=frozenset(args.hidden_symbol),
        select_tick_delay=args.select_tick_delay,
    )


def simulator_rpyc(host: str, port: int, balance: float, leverage: int, options: TerminalOptions) -> int:
    from .backends.rpyc_server import make_server

    _configure_logging()
    terminal = SimulatedTerminal(balance=balance, leverage=leverage, options=options)
    server = make_server(terminal, host, port)
    logging.getLogger(__name__).info("simulated MT5 terminal (not MetaTrader 5) serving RPyC classic on %s:%d", host, port)
    server.start()
    return 0


def migrate() -> int:
    from .store import apply_migrations, connect_postgres

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"mt5-account-service: {exc}", file=sys.stderr)
        return 2
    if not settings.database_url:
        print("mt5-account-service: DATABASE_URL is not set", file=sys.stderr)
        return 2

    async def run() -> list[int]:
        conn = await connect_postgres(settings.database_url or "", settings.postgres_password, settings.tls_ca_file)
        try:
            return await apply_migrations(conn)
        finally:
            await conn.close()

    applied = asyncio.run(run())
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mt5-account-service", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (default)")
    hc = sub.add_parser("healthcheck", help="exit 0 when GET /health on SERVICE_PORT is 200")
    hc.add_argument("--timeout", type=float, default=3.0)
    sim = sub.add_parser("simulator-rpyc", help="serve a simulated terminal over RPyC")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=18812)
    sim.add_argument("--balance", type=float, default=10_000.0)
    sim.add_argument("--leverage", type=int, default=100)
    sim.add_argument("--margin-mode", choices=sorted(MARGIN_MODES), default="hedging", help="the account's position accounting")
    sim.add_argument("--password-file", type=Path, help="a file holding the only master password accepted (default: any)")
    sim.add_argument("--investor-password-file", type=Path, help="a file holding the investor (read-only) password")
    sim.add_argument("--server-time-offset", type=int, default=0, help="seconds the trade server's clock is ahead of UTC")
    sim.add_argument("--hidden-symbol", action="append", default=[], help="a symbol outside Market Watch at start (repeatable)")
    sim.add_argument("--select-tick-delay", type=float, default=0.0, help="seconds from symbol_select to a hidden symbol's first tick")
    sub.add_parser("migrate", help="apply the Postgres migrations and exit")
    args = parser.parse_args(argv)
    if args.command == "healthcheck":
        return healthcheck(args.timeout)
    if args.command == "simulator-rpyc":
        try:
            options = terminal_options(args)
        except ConfigError as exc:
            print(f"mt5-account-service: {exc}", file=sys.stderr)
            return 2
        return simulator_rpyc(args.host, args.port, args.balance, args.leverage, options)
    if args.command == "migrate":
        return migrate()
    return serve()
