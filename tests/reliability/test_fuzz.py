"""The API fuzzed from its own OpenAPI document with schemathesis (bounded for CI): no 5xx, and
every response matches the schema it declares."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from ..conftest import ROOT

pytestmark = pytest.mark.integration
schema = schemathesis.openapi.from_dict(json.loads((ROOT / "docs" / "openapi.json").read_text()))


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_no_server_errors_and_responses_match_the_schema(case, stack, api_key) -> None:
    case.call_and_validate(base_url=stack.api_url, headers={"x-api-key": api_key}, timeout=30,
                           checks=[not_a_server_error, response_schema_conformance, content_type_conformance])
