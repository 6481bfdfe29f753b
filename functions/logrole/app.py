"""The API Gateway logging role setting, as a CloudFormation custom resource (logic/log_role.py):
a Create, Update or Delete request in; the outcome PUT to CloudFormation's URL out."""

from typing import Any

import boto3
from aws_lambda_powertools import Logger

from feedback_loop.logic import log_role

logger = Logger()
apigateway = boto3.client("apigateway")
iam = boto3.client("iam")


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> None:
    kind = event["RequestType"]
    try:
        physical_id, data = log_role.handle(event, apigateway, iam)
    except Exception as error:
        logger.exception("the API Gateway logging role setting failed", extra={"request": kind})
        reason = f"{type(error).__name__}: {error} (log stream {context.log_stream_name})"
        physical_id = event.get("PhysicalResourceId", "apigateway-log-role:")
        # a failed Delete would leave the stack in DELETE_FAILED for a setting: said in the log, not fatal
        log_role.respond(event, "SUCCESS" if kind == "Delete" else "FAILED", physical_id, {}, reason)
        return
    logger.info("API Gateway logging role", extra={"request": kind, **data})
    log_role.respond(event, "SUCCESS", physical_id, data)
