"""The API's OpenAPI document, with its refusals described as they are sent.

The resolver describes every response with the route's return type and adds its own 422 schema;
the API answers every refusal with ErrorResponse instead. This rewrites the document so each 4xx and
5xx response, and the ones every authenticated route can give, carry that schema.
"""

from __future__ import annotations

from typing import Any

from feedback_loop.models.feedback import ErrorResponse
from feedback_loop.models.strict_json import MAX_INTEGER_DIGITS

REF = "#/components/schemas/{model}"
COMMON = {
    400: ("The body is not valid JSON (or nests too deeply, or carries NaN, Infinity, a number beyond a double "
          f"or an integer of more than {MAX_INTEGER_DIGITS} digits)"),
    401: "Missing, malformed, unknown or revoked API key",
    413: "The body is larger than the limit",
    415: "The body is not sent as application/json",
    429: "This key made more requests this minute than its limit; see Retry-After",
    503: "Storage was unavailable within the request's time budget; nothing was stored; see Retry-After",
}
PUBLIC = {"/v1/health", "/v1/openapi.json", "/v1/docs"}


def with_error_responses(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template=REF)
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    content = {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if path not in PUBLIC:
                for status, description in COMMON.items():
                    responses.setdefault(str(status), {"description": description})
            for status, response in responses.items():
                if int(status) >= 400:
                    response["content"] = content
                    if status == "422" and response.get("description") == "Validation Error":
                        response["description"] = "A field was refused: each one is named in error.fields"
    used = str(document.get("paths"))
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas and REF.format(model=name) not in used:
            del schemas[name]
    return document
