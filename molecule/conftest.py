"""Shared by every scenario's testinfra tests (the repo's pytest.ini makes this dir reachable)."""

import pytest


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each test's outcome to fixtures, so they can print logs on failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
