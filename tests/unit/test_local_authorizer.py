"""The local gateway's reading of a Lambda authorizer's answer and of the template's gateway responses,
against what API Gateway documents: Deny wins, an Allow must cover the method's ARN, context values
must be scalars, and a response type not configured falls back to DEFAULT_4XX/DEFAULT_5XX."""

from __future__ import annotations

import copy
import json

import pytest

from feedback_loop.local.authorizer import GatewayResponse, authorize, method_arn, render

EVENT = {"resource": "/v1/requests/{request_id}/feedback", "path": "/v1/requests/r:1/feedback", "httpMethod": "GET",
         "headers": {"x-api-key": "k"}, "requestContext": {"stage": "prod"}}
ARN = method_arn("prod", "GET", "/v1/requests/r:1/feedback")


def answer(*statements: tuple[str, str], context: dict | None = None) -> dict:
    return {"principalId": "p", "context": context or {"project": "demo"},
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": [resource]}
                for effect, resource in statements]}}


@pytest.mark.parametrize("statements, outcome", [
    ([("Allow", ARN)], "ALLOW"),
    ([("Allow", ARN.replace("r:1", "*"))], "ALLOW"),
    ([("Allow", ARN.replace("GET", "POST"))], "ACCESS_DENIED"),  # an Allow for another method
    ([("Allow", ARN), ("Deny", ARN.rsplit("/", 3)[0] + "/*")], "ACCESS_DENIED"),  # Deny wins
    ([], "ACCESS_DENIED"),
])
def test_a_policy_allows_only_what_covers_the_method_arn(statements, outcome) -> None:
    seen, event = [], copy.deepcopy(EVENT)
    decision = authorize(lambda request: seen.append(request) or answer(*statements), event)
    assert decision.outcome == outcome
    assert event["requestContext"].get("authorizer") == (decision.context if outcome == "ALLOW" else None)
    assert seen[0]["type"] == "REQUEST" and seen[0]["methodArn"] == ARN and seen[0]["headers"] == EVENT["headers"]
    if outcome == "ALLOW":
        assert decision.context["project"] == "demo" and decision.context["principalId"] == "p"


def test_context_values_reach_the_function_as_text() -> None:
    decision = authorize(lambda _: answer(("Allow", ARN), context={"n": 3, "ok": True}), copy.deepcopy(EVENT))
    assert (decision.context["n"], decision.context["ok"]) == ("3", "true")


def raises(message: str):
    def invoke(_: dict) -> dict:
        raise RuntimeError(message)
    return invoke


@pytest.mark.parametrize("invoke, outcome", [
    (raises("Unauthorized"), "UNAUTHORIZED"),
    (raises("table unavailable"), "AUTHORIZER_FAILURE"),
    (lambda _: {"policyDocument": {}}, "AUTHORIZER_CONFIGURATION_ERROR"),  # no principalId
    (lambda _: answer(("Allow", ARN), context={"nested": {"a": 1}}), "AUTHORIZER_CONFIGURATION_ERROR"),
    (lambda _: "Allow", "AUTHORIZER_CONFIGURATION_ERROR"),
])
def test_failures_of_the_authorizer_map_to_api_gateways_response_types(invoke, outcome) -> None:
    assert authorize(invoke, copy.deepcopy(EVENT)).outcome == outcome


def test_gateway_responses_override_status_headers_and_body_and_fall_back_to_the_defaults() -> None:
    responses = {
        "DEFAULT_4XX": GatewayResponse(headers={"Access-Control-Allow-Origin": "*"}),
        "ACCESS_DENIED": GatewayResponse(401, {"WWW-Authenticate": "Bearer"},
                                         '{"why": "$context.authorizer.reason", "none": "$context.authorizer.x"}'),
    }
    status, headers, body = render("ACCESS_DENIED", responses, {"authorizer": {"reason": "revoked API key"}})
    assert (status, headers) == (401, {"Access-Control-Allow-Origin": "*", "WWW-Authenticate": "Bearer"})
    assert json.loads(body) == {"why": "revoked API key", "none": ""}
    status, headers, body = render("MISSING_AUTHENTICATION_TOKEN", responses, {})
    assert (status, headers, json.loads(body)) == (403, {"Access-Control-Allow-Origin": "*"},
                                                   {"message": "Missing Authentication Token"})
    status, headers, _ = render("AUTHORIZER_FAILURE", responses, {})
    assert (status, headers) == (500, {})  # no DEFAULT_5XX configured here
