"""Registration: a finished training job in; a gated model package and EvaluatorGated (or a failure report) out."""

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from feedback_loop.dal.store import FeedbackTable, patient_dynamodb_client
from feedback_loop.registry.register import register_challenger
from feedback_loop.settings import register_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()  # FeedbackLoop/TrainingJobsFailed feeds the stack's TrainingJobFailedAlarm
settings = register_settings()
s3 = boto3.client("s3")
sagemaker = boto3.client("sagemaker")
events = boto3.client("events")
table = FeedbackTable(settings.table_name, client=patient_dynamodb_client())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: Any) -> dict[str, Any]:
    outcome = register_challenger(event.detail, s3=s3, sagemaker=sagemaker, events=events, table=table,
                                  bus=settings.event_bus_name, inference_image=settings.inference_image,
                                  policy=settings.gate_policy(), calibrator_policy=settings.calibrator_policy(),
                                  calibration_image=settings.calibration_image)
    if outcome.get("status") in ("Failed", "Stopped") and not outcome.get("already_handled"):
        metrics.add_metric(name="TrainingJobsFailed", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()  # only then: a flush with nothing to publish warns on every registration
    logger.info("training job handled", extra={k: outcome.get(k) for k in ("project", "training_job", "status")})
    return outcome
