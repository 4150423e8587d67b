"""Schemathesis against the service's own OpenAPI schema: requests generated from it
(valid and invalid) never meet a server error. Bounded: a few examples per operation,
derandomized, so it takes seconds and repeats."""

from __future__ import annotations

import time

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from medfl.api import create_app
from tests.api.conftest import AUTH

EXAMPLES = 12
BUDGET_S = 30.0


def test_generated_requests_to_every_operation_meet_no_server_error(settings):
    app = create_app(settings)  # no lifespan: a launched run stays queued, none trains
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 22
    began, statuses = time.monotonic(), set()

    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):  # type: ignore[no-untyped-def]
            response = case.call(headers=AUTH)
            statuses.add(response.status_code)
            case.validate_response(response, checks=[not_a_server_error])

        check()
        assert time.monotonic() - began < BUDGET_S, f"over {BUDGET_S} s at {operation.label}"
    assert {200, 404, 422} <= statuses
    assert not [s for s in statuses if s >= 500]
