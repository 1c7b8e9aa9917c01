"""How long the service waits for the terminal, in order (issue 12, fault 7).

Each wait must be longer than the wait it contains, or the outer one gives up while the inner
one still runs and the next attempt overlaps it. Before this module the RPyC request timeout
(30 s) was shorter than ``initialize``'s own timeout (60 s): on a slow start the client gave
up, reconnected and started a second ``initialize`` while the first still ran in the bridge.
The order now, innermost first (seconds)::

    INITIALIZE_TIMEOUT (60)  <  RPYC_INITIALIZE_TIMEOUT (75)  <  RECONNECT_BOUND (105)
        <  the watchdog's grace (mt5farm.runtime.watchdog.GRACE, 120)
        <  its first-connect allowance (FIRST_CONNECT) <= Docker's start_period (mt5_linux)

``tests/images/test_image_watchdog.py`` checks the whole chain, role defaults included, so a
change to one number that breaks the order fails there. A second ``initialize`` can still
only be refused, never run beside the first: the bridge's guard
(:func:`mt5_account_service.backends.bridge.guard_initialize`) turns it away while one runs.
"""

from __future__ import annotations

#: The terminal's own limit for ``initialize`` (passed as its ``timeout``, in milliseconds):
#: how long the MetaTrader5 module waits for the terminal's IPC connection. 60 s is the
#: module's documented default ("If not specified, the value of 60 000 (60 seconds) is
#: applied", MetaTrader 5 Python integration, ``initialize``).
INITIALIZE_TIMEOUT = 60.0

#: What ``initialize`` may take beyond its own limit before an answer reaches the client: the
#: module gives up its IPC wait, cleans up and answers, the bridge serialises the answer. A
#: few seconds on a loaded host; 15 s leaves room for Wine on a 0.5-CPU container.
INITIALIZE_MARGIN = 15.0

#: Seconds the RPyC client waits for ``initialize``'s answer: always the terminal's limit plus
#: INITIALIZE_MARGIN, so the terminal, not the client, ends a slow ``initialize`` and the
#: client never gives up on one that still runs. With the default limit: 75 s.
RPYC_INITIALIZE_TIMEOUT = INITIALIZE_TIMEOUT + INITIALIZE_MARGIN

#: Seconds the RPyC client waits for any other request (a poll's reads, an order): mt5linux
#: calls answer in milliseconds when the terminal is alive; 30 s is the service's long-standing
#: value, far above a slow ``order_send`` (the trade server's own timeout answers 10012 first).
RPYC_REQUEST_TIMEOUT = 30.0

#: Worst case from a lost connection to the end of the service's first full reconnect
#: attempt: the poll that notices the loss (at most RPYC_REQUEST_TIMEOUT) plus one
#: ``initialize`` (at most RPYC_INITIALIZE_TIMEOUT). Whatever restarts the terminal because
#: it is not connected (the watchdog's grace) must wait longer than this, or it cuts the
#: service's own reconnect short. With the defaults: 105 s.
RECONNECT_BOUND = RPYC_REQUEST_TIMEOUT + RPYC_INITIALIZE_TIMEOUT


def rpyc_initialize_timeout(terminal_timeout_ms: float | None) -> float:
    """Seconds to wait over RPyC for an ``initialize`` given ``timeout=terminal_timeout_ms``
    (milliseconds, as the MetaTrader5 module takes it; None: the module's default,
    INITIALIZE_TIMEOUT): the terminal's limit plus INITIALIZE_MARGIN."""
    limit = INITIALIZE_TIMEOUT if terminal_timeout_ms is None else float(terminal_timeout_ms) / 1000.0
    return limit + INITIALIZE_MARGIN
