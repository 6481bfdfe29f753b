"""Deployment: an approved model package in; the evaluator endpoint created or updated blue/green out, or
for a calibrator its map put in service."""

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from feedback_loop.dal.store import FeedbackTable, patient_dynamodb_client
from feedback_loop.registry.deploy import RecreatedEndpoints, SageMakerEndpoints, deploy_package
from feedback_loop.settings import deploy_settings

logger = Logger()
tracer = Tracer()
settings = deploy_settings()
sagemaker = boto3.client("sagemaker")
s3 = boto3.client("s3")  # a calibrator: its map from the model data, into service in the data bucket
cloudwatch = boto3.client("cloudwatch")
events = boto3.client("events")
table = FeedbackTable(settings.table_name, client=patient_dynamodb_client())
endpoints = (RecreatedEndpoints if settings.endpoint_updates == "recreate" else SageMakerEndpoints)(sagemaker)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: Any) -> dict[str, Any]:
    outcome = deploy_package(event.detail, sagemaker=sagemaker, cloudwatch=cloudwatch, events=events,
                             endpoints=endpoints, table=table, setup=settings.setup(), s3=s3)
    logger.info("model package handled", extra={k: outcome.get(k) for k in ("project", "endpoint", "action")})
    return outcome
