"""API Gateway's Lambda REQUEST authorizers and gateway responses, as the local gateway applies them.

API Gateway invokes the authorizer with the request's headers and the method's ARN, and reads back
an IAM policy: a Deny, or no Allow that covers the method, is ACCESS_DENIED; the authorizer raising
"Unauthorized" is UNAUTHORIZED; raising anything else is AUTHORIZER_FAILURE; a malformed answer is
AUTHORIZER_CONFIGURATION_ERROR. On Allow, the policy's context reaches the function as
requestContext.authorizer. Gateway responses are the template's GatewayResponses, falling back to
DEFAULT_4XX/DEFAULT_5XX and API Gateway's own status and body.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Callable

from feedback_loop.local.template import ACCOUNT_ID, REGION

API_ID = "local"

# API Gateway's defaults for the response types the local gateway produces
DEFAULT_RESPONSES: dict[str, tuple[int, str]] = {
    "UNAUTHORIZED": (401, '{"message":"Unauthorized"}'),
    "ACCESS_DENIED": (403, '{"message":"User is not authorized to access this resource"}'),
    "AUTHORIZER_FAILURE": (500, '{"message":null}'),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, '{"message":null}'),
    "MISSING_AUTHENTICATION_TOKEN": (403, '{"message":"Missing Authentication Token"}'),
    "REQUEST_TOO_LARGE": (413, '{"message":"Request Entity Too Large"}'),
    "BAD_GATEWAY": (502, '{"message":"Internal server error"}'),
}
_CONTEXT_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_.]+)")


@dataclass(frozen=True)
class GatewayResponse:
    """One entry of the Api's GatewayResponses, resolved: None where the template leaves the default."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    template: str | None = None


def gateway_responses(api_properties: dict[str, Any]) -> dict[str, GatewayResponse]:
    """The Api's GatewayResponses (intrinsics already resolved): header values are quoted literals."""
    responses = {}
    for kind, spec in (api_properties.get("GatewayResponses") or {}).items():
        headers = (spec.get("ResponseParameters") or {}).get("Headers") or {}
        responses[kind] = GatewayResponse(
            status=int(spec["StatusCode"]) if spec.get("StatusCode") else None,
            headers={name: str(value).strip("'") for name, value in headers.items()},
            template=(spec.get("ResponseTemplates") or {}).get("application/json"),
        )
    return responses


def render(kind: str, responses: dict[str, GatewayResponse],
           context: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of a gateway response; `context` holds the $context variables it may use."""
    status, body = DEFAULT_RESPONSES[kind]
    fallback = responses.get("DEFAULT_4XX" if status < 500 else "DEFAULT_5XX", GatewayResponse())
    chosen = responses.get(kind)
    headers = dict(fallback.headers)
    if chosen is not None:
        headers.update(chosen.headers)
        status = chosen.status or status
    template = chosen.template if chosen is not None and chosen.template else fallback.template
    if template:
        body = _CONTEXT_VARIABLE.sub(lambda m: str(_lookup(context, m.group(1))), template)
    return status, headers, body


def _lookup(context: dict[str, Any], dotted: str) -> Any:
    value: Any = context
    for part in dotted.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return "" if value is None else value


def method_arn(stage: str, method: str, path: str) -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/{stage}/{method}{path}"


@dataclass(frozen=True)
class Decision:
    outcome: str  # "ALLOW" or the gateway response type that refuses the request
    context: dict[str, Any] = field(default_factory=dict)  # requestContext.authorizer (or the Deny's context)


def authorize(invoke: Callable[[dict], Any], event: dict) -> Decision:
    """Runs a REQUEST authorizer on a proxy event (as built for the function) and reads its policy.
    On ALLOW the event gets the context as `requestContext.authorizer`, as API Gateway hands it on."""
    context = event["requestContext"]
    arn = method_arn(context["stage"], event["httpMethod"], event["path"])
    request = {"type": "REQUEST", "methodArn": arn,
               **{k: event.get(k) for k in ("resource", "path", "httpMethod", "headers", "multiValueHeaders",
                                             "queryStringParameters", "multiValueQueryStringParameters",
                                             "pathParameters", "stageVariables", "requestContext")}}
    started = time.monotonic()
    try:
        answer = invoke(request)
    except Exception as error:  # noqa: BLE001  what API Gateway does with any authorizer failure
        return Decision("UNAUTHORIZED" if str(error) == "Unauthorized" else "AUTHORIZER_FAILURE")
    policy = _policy(answer)
    if policy is None:
        return Decision("AUTHORIZER_CONFIGURATION_ERROR")
    principal, statements, granted = policy
    effects = {s["Effect"] for s in statements if _covers(s, arn)}
    if "Deny" in effects or "Allow" not in effects:
        return Decision("ACCESS_DENIED", granted)
    allowed = Decision("ALLOW", {**granted, "principalId": principal,
                                 "integrationLatency": int((time.monotonic() - started) * 1000)})
    context["authorizer"] = allowed.context
    return allowed


def _policy(answer: Any) -> tuple[str, list[dict], dict[str, Any]] | None:
    """(principalId, statements, context as the function will see it), or None if API Gateway would refuse it."""
    if not isinstance(answer, dict) or not isinstance(answer.get("principalId"), str):
        return None
    statements = (answer.get("policyDocument") or {}).get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not all(
            isinstance(s, dict) and s.get("Effect") in ("Allow", "Deny") for s in statements):
        return None
    context = answer.get("context") or {}
    if not isinstance(context, dict) or not all(isinstance(v, (str, int, float, bool)) for v in context.values()):
        return None  # API Gateway accepts only strings, numbers and booleans as context values
    return answer["principalId"], statements, {k: _as_text(v) for k, v in context.items()}


def _as_text(value: str | int | float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _covers(statement: dict, arn: str) -> bool:
    actions = statement.get("Action", [])
    resources = statement.get("Resource", [])
    actions = [actions] if isinstance(actions, str) else actions
    resources = [resources] if isinstance(resources, str) else resources
    return (any(a in ("execute-api:Invoke", "execute-api:*", "*") for a in actions)
            and any(fnmatchcase(arn, r) for r in resources))
