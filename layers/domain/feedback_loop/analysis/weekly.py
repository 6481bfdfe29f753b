"""The scheduled weekly analysis of one project, AWS side: S3 and DynamoDB in, S3 and an event out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from feedback_loop.analysis.model import AnalysisSettings
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.run import LABELLED, REPORT_JSON, run_analysis, write_s3
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.events import put_event
from feedback_loop.logic.changes import list_changes

ANALYSIS_COMPLETED = "AnalysisCompleted"


def eval_logs_prefix(project: str) -> str:
    return f"eval-logs/{project}/"


def reports_prefix(project: str, until: datetime) -> str:
    return f"reports/{project}/{until.astimezone(timezone.utc).strftime('%Y-%m-%dT%H-%M-%SZ')}/"


def projects_with_eval_logs(s3: Any, bucket: str) -> list[str]:
    """Projects are the folders under eval-logs/ (one ListObjectsV2 with a delimiter, no listing of logs)."""
    paginator = s3.get_paginator("list_objects_v2")
    return sorted(prefix["Prefix"].removeprefix("eval-logs/").rstrip("/")
                  for page in paginator.paginate(Bucket=bucket, Prefix="eval-logs/", Delimiter="/")
                  for prefix in page.get("CommonPrefixes", []))


@dataclass(frozen=True)
class WeeklyResult:
    project: str
    report: dict[str, Any]
    written: dict[str, str]
    event: dict[str, Any]


def key_figures(report: dict[str, Any]) -> dict[str, Any]:
    """What the AnalysisCompleted event and the metrics carry: enough to decide on retraining."""
    counts = report["counts"]
    rates = [c["rate"] for c in report["cohorts"].values() if c["rate"] is not None]
    requests = sum(c["requests"] for c in report["cohorts"].values())
    with_feedback = sum(c["with_feedback"] for c in report["cohorts"].values())
    return {
        "eval_records": counts["eval_records"],
        "requests_with_human_score": counts["requests_with_human_score"],
        "labelled_binary": report["datasets"]["labelled_binary"],
        "spearman": report["correlation"]["overall"]["spearman"]["r"],
        "pearson": report["correlation"]["overall"]["pearson"]["r"],
        "auroc": report["agreement"]["auroc"]["auroc"],
        "disagreement_rate": report["miscalibration"]["rate"],
        "feedback_rate": with_feedback / requests if requests else None,
        "lowest_cohort_feedback_rate": min(rates) if rates else None,
        "flagged_segments": [{"field": f["field"], "value": f["value"]} for f in report["miscalibration"]["flagged_segments"]],
        "regressions": [r["change"] for r in report["regressions"]],
        "skipped_lines": counts["skipped_lines"],
    }


def run_weekly(project: str, until: datetime, *, s3: Any, events: Any, table: FeedbackTable, bucket: str,
               bus_name: str, day_shards: int, window: timedelta = timedelta(days=7),
               settings: AnalysisSettings | None = None, now: datetime | None = None,
               progress: Callable[[str], None] | None = None) -> WeeklyResult:
    settings = settings or AnalysisSettings()
    since = until - window
    changes = list_changes(table, project)
    feedback = FeedbackIndex()
    # feedback from the start of what is read (changes reach back one impact window) until now:
    # all explicit feedback about a request counts, whenever it arrived before the analysis ran
    feedback.add_items(table.feedback_in_window(project, since - settings.impact_window,
                                                now or datetime.now(timezone.utc), day_shards))
    source = EvalLogSource(f"s3://{bucket}/{eval_logs_prefix(project)}", s3)
    analysis = run_analysis(project, source, feedback, changes, since, until, settings, progress)
    written = write_s3(analysis, s3, bucket, reports_prefix(project, until))
    detail = {"project": project, "window": analysis.report["window"], "report": written[REPORT_JSON],
              "labelled_dataset": written[LABELLED], "reports": written, **key_figures(analysis.report)}
    put_event(events, bus_name, ANALYSIS_COMPLETED, detail, time=until)
    return WeeklyResult(project, analysis.report, written, detail)
