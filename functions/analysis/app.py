"""The weekly analysis: an EventBridge schedule in; reports in S3 and AnalysisCompleted on the bus out."""

from datetime import datetime, timezone
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from feedback_loop.analysis.weekly import projects_with_eval_logs, run_weekly
from feedback_loop.dal.store import FeedbackTable, patient_dynamodb_client
from feedback_loop.settings import analysis_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = analysis_settings()
s3 = boto3.client("s3")
events = boto3.client("events")
table = FeedbackTable(settings.table_name, client=patient_dynamodb_client())


def _window_end(event: EventBridgeEvent) -> datetime:
    # The schedule's own time, so a late or repeated invocation analyses the same window.
    moment = datetime.fromisoformat(event.time.replace("Z", "+00:00")) if event.get("time") else datetime.now(timezone.utc)
    return moment.replace(second=0, microsecond=0)


def _emit(project: str, figures: dict[str, Any]) -> None:
    metrics.add_dimension(name="project", value=project)
    for name, metric in (("spearman", "HumanEvaluatorSpearman"), ("disagreement_rate", "DisagreementRate"),
                         ("feedback_rate", "FeedbackRate"), ("auroc", "EvaluatorAuroc")):
        if figures.get(name) is not None:
            metrics.add_metric(name=metric, unit=MetricUnit.NoUnit, value=figures[name])
    metrics.add_metric(name="LabelledRequests", unit=MetricUnit.Count, value=figures["requests_with_human_score"])
    metrics.flush_metrics()
    metrics.clear_metrics()  # the next project's dimension anew (flush clears only when metrics are on)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: Any) -> dict[str, Any]:
    until = _window_end(event)
    projects = settings.projects or projects_with_eval_logs(s3, settings.data_bucket)
    results = {}
    for project in projects:
        result = run_weekly(project, until, s3=s3, events=events, table=table, bucket=settings.data_bucket,
                            bus_name=settings.event_bus_name, day_shards=settings.day_shards,
                            window=settings.window, settings=settings.analysis(),
                            progress=lambda message: logger.info(message))
        _emit(project, result.event)
        logger.info("analysis completed", extra={"project": project, "report": result.written["report.json"]})
        results[project] = result.written["report.json"]
    return {"window_end": until.isoformat(), "reports": results}
