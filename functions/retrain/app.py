"""Retraining: AnalysisCompleted (or RetrainRequested) in; a SageMaker training job, at most one per window, out."""

from dataclasses import asdict
from datetime import datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from feedback_loop.dal.store import FeedbackTable, patient_dynamodb_client
from feedback_loop.retraining.launch import latest_window_end, launch_training
from feedback_loop.settings import retrain_settings

logger = Logger()
tracer = Tracer()
settings = retrain_settings()
s3 = boto3.client("s3")
sagemaker = boto3.client("sagemaker")
table = FeedbackTable(settings.table_name, client=patient_dynamodb_client())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: Any) -> dict[str, Any]:
    detail = event.detail
    if "window" in detail:
        window_end = datetime.fromisoformat(detail["window"]["until"].replace("Z", "+00:00"))
    else:  # a request: the latest analysed window
        window_end = latest_window_end(s3, settings.data_bucket, detail["project"])
        if window_end is None:
            logger.warning("no analysis yet: nothing to train on", extra={"project": detail["project"]})
            return {"project": detail["project"], "decision": {"launch": False, "reasons": ["no analysis report yet"]}}
    result = launch_training(detail["project"], window_end, detail, s3=s3, sagemaker=sagemaker, table=table,
                             setup=settings.setup(), policy=settings.policy(),
                             force=event.detail_type == "RetrainRequested", kind=detail.get("kind"))
    logger.info("retraining decided", extra=asdict(result))
    return asdict(result)
