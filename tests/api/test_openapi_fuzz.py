"""Schemathesis over ``/openapi.json`` of a real server: generated requests (valid and not)
never get a 5xx, and every answer matches the schema the API publishes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from schemathesis.core.result import Ok
from schemathesis.openapi import from_url

from tasktrail import Trail
from tasktrail.api import create_app
from tasktrail.feed import Feed
from tests.support.server import serve


@pytest.fixture
def api_url(app_trail: Trail) -> Iterator[str]:
    app = create_app(app_trail, token="", feed=Feed(app_trail.store, keepalive=0.3))
    with serve(app) as url:
        yield url


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_answers_match_the_schema(api_url: str, mode: GenerationMode) -> None:
    # The event stream never ends, so it cannot be called like the others; it has its own
    # tests.
    schema = from_url(f"{api_url}/openapi.json").exclude(path="/api/v1/events")
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) >= 9

    unsatisfiable: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=10,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance]
            )

        try:
            call()
        except Unsatisfiable:
            # Nothing of this operation can be made invalid (say, a lone string path
            # parameter); only negative generation can run out of cases.
            assert mode is GenerationMode.NEGATIVE, operation.label
            unsatisfiable.append(operation.label)
    assert len(unsatisfiable) <= len(operations) // 2, unsatisfiable
