"""Fixtures live in mt5svc_testlib (importable by the tests too); pytest finds them here."""

pytest_plugins = ("mt5svc_testlib",)
