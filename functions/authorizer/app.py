"""The API's Lambda authorizer: API Gateway sends each request's headers; a project key in, a policy out.

Allow carries the key's project and key_id to the API function (requestContext.authorizer); Deny
carries the reason, which the template's ACCESS_DENIED gateway response turns into a 401. A key that
could not be looked up raises, which API Gateway answers with AUTHORIZER_FAILURE (a 503 in the template).
"""

import re
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
)

from feedback_loop.dal.store import FeedbackTable
from feedback_loop.logic.keys import KeyAuthenticator, key_from_headers, scopes_text
from feedback_loop.models.errors import Unauthorized
from feedback_loop.settings import authorizer_settings

logger = Logger()
settings = authorizer_settings()
authenticator = KeyAuthenticator(FeedbackTable(settings.table_name), settings.key_cache_seconds)
_PATH_PARAMETER = re.compile(r"\{[^}]+\}")


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def lambda_handler(event: APIGatewayAuthorizerRequestEvent, context: Any) -> dict[str, Any]:
    arn = event.parsed_arn
    # the route's resource with its path parameters as wildcards: request ids may hold any character
    route = _PATH_PARAMETER.sub("*", event.resource)
    try:
        caller = authenticator.caller(key_from_headers(event.headers))
    except Unauthorized as refusal:
        logger.info("refused", extra={"reason": str(refusal), "route": event.resource})
        policy = _policy(arn, "anonymous", {"reason": str(refusal)})
        policy.deny_route(http_method=arn.http_method, resource=route)
        return policy.asdict()
    # what the key may do goes along; the function refuses a route outside it (403, naming the scope)
    policy = _policy(arn, caller.key_id, {"project": caller.project, "key_id": caller.key_id,
                                          "scopes": scopes_text(caller.scopes)})
    policy.allow_route(http_method=arn.http_method, resource=route)
    return policy.asdict()


def _policy(arn: Any, principal: str, context: dict[str, str]) -> APIGatewayAuthorizerResponse:
    return APIGatewayAuthorizerResponse(principal_id=principal, region=arn.region, aws_account_id=arn.aws_account_id,
                                        api_id=arn.api_id, stage=arn.stage, context=context)
