"""Fixtures live in mt5svc_testlib (importable by the tests too); pytest finds them here."""

from mt5svc_testlib import (clock, http, postgres_server, redis_server,  # noqa: F401
                            rpyc_simulator, service, start_service, terminal)
