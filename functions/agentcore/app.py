"""Amazon Bedrock AgentCore in: a CloudWatch Logs subscription (template parameter AgentCoreProject)
delivers AgentCore Evaluations' results (`gen_ai.evaluation.result` records in their log group) and
the agent's spans (`aws/spans`, with Transaction Search); both are paired into eval records as
POST /v1/traces and /v1/logs pair them (logic/otlp.py). A batch that could not be kept fails the
invocation: Lambda retries it, then keeps it in FailedEventsQueue."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import CloudWatchLogsEvent
import boto3

from feedback_loop.dal.store import FeedbackTable
from feedback_loop.interop import otlp
from feedback_loop.logic import evals
from feedback_loop.logic import otlp as telemetry
from feedback_loop.logic.calibration import CurrentMaps
from feedback_loop.logic.ingest import IngestPolicy
from feedback_loop.models.errors import StorageUnavailable
from feedback_loop.settings import agentcore_settings

logger = Logger()


@functools.cache
def _setup() -> tuple[FeedbackTable, evals.EvalStream, otlp.Mapping, IngestPolicy, str]:
    settings = agentcore_settings()
    mapping = otlp.Mapping.from_headers({otlp.HEADER_OVERALL: settings.overall,
                                         otlp.HEADER_RANGE: settings.overall_range,
                                         otlp.HEADER_REQUEST_ID: settings.request_id})
    return (FeedbackTable(settings.table_name), evals.EvalStream(boto3.client("firehose"), settings.eval_log_stream),
            mapping, IngestPolicy(day_shards=settings.day_shards, retention_days=settings.retention_days,
                               eval_dedup_days=settings.eval_dedup_days),
            settings.project)


@functools.cache
def _calibrators() -> CurrentMaps:
    return CurrentMaps(_setup()[0], boto3.client("s3"), agentcore_settings().data_bucket)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    data = CloudWatchLogsEvent(event).parse_logs_data()
    if data.message_type != "DATA_MESSAGE":  # CloudWatch's test message when the subscription is made
        return {"message_type": data.message_type}
    table, stream, mapping, policy, project = _setup()
    spans, evaluations, skipped = otlp.read_log_messages(e.message for e in data.log_events)
    calibrator = _calibrators().get(project)  # the calibrator in service: its figures beside the raw score
    outcome = (telemetry.receive_spans(table, stream, project, spans, mapping, policy, calibrator=calibrator)
               + telemetry.receive_evaluations(table, stream, project, evaluations, mapping, policy,
                                               calibrator=calibrator))
    summary = {"log_group": data.log_group, "events": len(data.log_events), **outcome.counts(),
               "skipped": dict(skipped)}
    logger.info("subscription batch", extra=summary)
    if outcome.retry:
        raise StorageUnavailable("part of the batch was not kept: Lambda retries it")  # idempotent throughout
    return summary
