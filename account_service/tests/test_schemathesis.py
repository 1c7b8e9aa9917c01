"""Property-based run of the service against its own OpenAPI schema (schemathesis).

Every operation gets a bounded number of generated requests (MAX_EXAMPLES) over real HTTP to
a real uvicorn on loopback, with the simulator and a valid API key; every answer must be no
5xx, a status the route documents, the documented content type, and a body and headers that
match the documented schema. Bounded to stay well under a minute on a 2-core machine.

The operations are driven with hypothesis directly (``operation.as_strategy()``) rather than
through schemathesis' pytest plugin, whose collection hook does not work with pytest 9.
"""

from __future__ import annotations

import time
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from mt5svc_testlib import API_KEY, LiveService
from schemathesis import GenerationMode, checks

#: Per operation and generation mode: valid requests (positive) and requests that break the
#: schema (negative: wrong types, out of range, missing fields), which must be refused
#: with a documented 4xx, never a 5xx.
MAX_EXAMPLES = 25
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def test_every_answer_conforms_to_the_schema(service: LiveService) -> None:
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10  # every route of the API, not a schema that failed to load
    calls: list[int] = []
    start = time.monotonic()
    runs = [(op, mode) for op in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    for operation, mode in runs:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Any) -> None:
            calls.append(1)
            case.call_and_validate(base_url=service.url, headers={"X-API-Key": API_KEY}, checks=CHECKS)

        try:
            conforms()
        except Unsatisfiable:
            # a route without parameters or body has nothing to break (GET /health)
            assert mode is GenerationMode.NEGATIVE, operation.label
    print(f"schemathesis: {len(operations)} operations x 2 modes, {len(calls)} requests, {time.monotonic() - start:.1f} s")
