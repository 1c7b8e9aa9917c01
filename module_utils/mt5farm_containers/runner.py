"""The parallel runner and the failure summaries (no Docker: jobs are plain callables)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any

# One job: the name it is reported under (a container or volume) and the call that does it.
Job = tuple[str, Callable[[], object]]
# Listed in a failure message; the `errors` / `unhealthy` returns have all of them.
SHOWN = 5


def describe(error: BaseException) -> str:
    """An error in one line: Docker's explanation when it has one, never the request body."""
    explanation = getattr(error, "explanation", None)
    if explanation:
        text = explanation.decode("utf-8", "replace") if isinstance(explanation, bytes) else str(explanation)
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def run_all(parallelism: int, jobs: Sequence[Job]) -> tuple[list[str], dict[str, str]]:
    """Run the jobs on at most ``parallelism`` threads; every job runs, whatever the others do.

    Returns the sorted names of the jobs that succeeded and, by name, the one-line
    :func:`describe` of each that raised.
    """
    done: list[str] = []
    errors: dict[str, str] = {}
    if not jobs:
        return done, errors
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(jobs)))) as pool:
        futures = {pool.submit(call): name for name, call in jobs}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                future.result()
            except Exception as error:  # noqa: BLE001 - any failure of one job is reported by name; the others go on
                errors[name] = describe(error)
            else:
                done.append(name)
    return sorted(done), errors


def summarize(errors: dict[str, str], shown: int = SHOWN) -> str:
    """The first ``shown`` errors by name, ``name: message; ...``, and how many more there are."""
    items = sorted(errors.items())
    text = "; ".join(f"{name}: {message}" for name, message in items[:shown])
    if len(items) > shown:
        text += f"; and {len(items) - shown} more (see errors)"
    return text


def unhealthy_message(unhealthy: dict[str, dict[str, Any]], timeout: int) -> str:
    """Containers that did not come healthy in ``timeout`` seconds, with state and last checks.

    ``unhealthy`` maps a name to :meth:`.engine.Engine.health_details` (``state``,
    ``health``, ``last_checks`` and, when not running, ``exit_code``).
    """
    parts = []
    for name, details in list(unhealthy.items())[:SHOWN]:
        text = f"{name} (state {details['state']}, health {details['health'] or 'none'}"
        if "exit_code" in details:
            text += f", exit code {details['exit_code']}"
        text += ")"
        if details["last_checks"]:
            text += ": last checks: " + " | ".join(details["last_checks"])
        parts.append(text)
    more = f"; and {len(unhealthy) - SHOWN} more (see unhealthy)" if len(unhealthy) > SHOWN else ""
    return f"{len(unhealthy)} container(s) did not come healthy within {timeout} s: " + "; ".join(parts) + more
