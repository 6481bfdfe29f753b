"""The weekly analysis. Invoked by the weekly state machine (statemachine/weekly-analysis.asl.json)
for each of its steps, `{"phase": ...}`: plan, embedded, start (Athena), finish (Athena). Invoked
with a schedule's event (or by hand), it analyses every project on the embedded engine at once.
Reports go to S3, AnalysisCompleted to the bus."""

from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from feedback_loop.analysis.weekly import (ENGINES, AthenaPlace, WeeklyResult, finish_athena, plan,
                                           projects_with_eval_logs, run_weekly, start_athena)
from feedback_loop.dal.store import FeedbackTable, patient_dynamodb_client
from feedback_loop.settings import analysis_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = analysis_settings()
s3 = boto3.client("s3")
events = boto3.client("events")
athena = boto3.client("athena")
table = FeedbackTable(settings.table_name, client=patient_dynamodb_client())
place = AthenaPlace(settings.athena_database, f"s3://{settings.data_bucket}/athena-results/",
                    settings.athena_workgroup or None)


def _window_end(event: dict[str, Any]) -> datetime:
    # The schedule's own time, so a late or repeated invocation analyses the same window; a
    # schedule's run (EventBridge's event) the window that ended AnalysisLagMinutes before it, a
    # run by hand ({"time": ...}) the window that ends at its time.
    moment = datetime.fromisoformat(event["time"].replace("Z", "+00:00")) if event.get("time") else datetime.now(timezone.utc)
    if event.get("source") == "aws.events":
        moment -= timedelta(minutes=settings.lag_minutes)
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


def _embedded(project: str, until: datetime) -> WeeklyResult:
    return run_weekly(project, until, s3=s3, events=events, table=table, bucket=settings.data_bucket,
                      bus_name=settings.event_bus_name, day_shards=settings.day_shards, window=settings.window,
                      settings=settings.analysis(), progress=lambda message: logger.info(message))


def _done(result: WeeklyResult, engine: str) -> dict[str, Any]:
    _emit(result.project, result.event)
    logger.info("analysis completed", extra={"project": result.project, "engine": engine,
                                             "report": result.written["report.json"]})
    return {"project": result.project, "engine": engine, "report": result.written["report.json"]}


def _projects() -> list[str]:
    """The projects to analyse: AnalysisProjects, else every project with eval logs."""
    return settings.projects or projects_with_eval_logs(s3, settings.data_bucket)


def _plan(request: dict[str, Any]) -> dict[str, Any]:
    """The state machine's input: a schedule's event, or {time, engine, projects} by hand."""
    until = _window_end(request)
    engine = request.get("engine", settings.engine)
    if engine not in ENGINES:
        raise ValueError(f"engine: {engine!r} is not one of {', '.join(ENGINES)}")
    named = request.get("projects") or settings.projects
    projects = named or _projects()
    planned = plan(projects, until, s3=s3, table=table, bucket=settings.data_bucket, engine=engine,
                   threshold=settings.athena_threshold_bytes, window=settings.window, settings=settings.analysis())
    # found by their folders, projects without an eval log in the pass's range are not analysed (no
    # empty report, no event); a project named (AnalysisProjects, or by hand) always is
    idle = [] if named else [p["project"] for p in planned if not p["bytes"]]
    planned = [p for p in planned if p["project"] not in idle]
    logger.info("planned", extra={"projects": planned, "idle": idle})
    return {"window_end": until.isoformat(), "projects": planned, "idle": idle,
            "poll_seconds": settings.athena_poll_seconds,
            "max_polls": max(1, settings.athena_max_wait_seconds // settings.athena_poll_seconds)}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    phase = event.get("phase")
    if phase == "plan":
        return _plan(event["request"])
    if phase == "embedded":
        return _done(_embedded(event["project"], datetime.fromisoformat(event["window_end"])), "embedded")
    if phase == "start":
        return start_athena(event["project"], datetime.fromisoformat(event["window_end"]), s3=s3, client=athena,
                            table=table, bucket=settings.data_bucket, place=place, day_shards=settings.day_shards,
                            window=settings.window, settings=settings.analysis())
    if phase == "finish":
        return _done(finish_athena(event["state"], s3=s3, client=athena, events=events, bucket=settings.data_bucket,
                                   bus_name=settings.event_bus_name, place=place, settings=settings.analysis(),
                                   table=table),
                     "athena")
    if phase is not None:
        raise ValueError(f"unknown phase {phase!r}: plan, embedded, start or finish")
    until = _window_end(event)  # a schedule's event, or a call by hand: every project here, embedded
    projects = _projects()
    return {"window_end": until.isoformat(),
            "reports": {project: _done(_embedded(project, until), "embedded")["report"] for project in projects}}
