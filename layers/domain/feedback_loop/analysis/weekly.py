"""The scheduled weekly analysis of one project, AWS side: S3 and DynamoDB in, S3 and an event out.

On the embedded engine a project is one call (`run_weekly`). On Athena it is three steps of the
weekly state machine (statemachine/weekly-analysis.asl.json), so that no function waits for the
queries: `plan` chooses each project's engine, `start_athena` exports the feedback and starts the
pass's statements (what the last step needs goes to S3, in a small object), the state machine polls
Athena, and `finish_athena` reads the results into the same report.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Literal

from pydantic import TypeAdapter

from feedback_loop.analysis import athena, trends
from feedback_loop.analysis.html import INDEX_HTML, render_index
from feedback_loop.analysis.model import Analysis, AnalysisSettings, change_sides, read_range, run_name
from feedback_loop.analysis.evallogs import JSON_SUFFIXES, PARQUET_SUFFIXES, EvalLogSource, partition_range
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.report import change_marks, report, with_trends
from feedback_loop.analysis.run import LABELLED, REPORT_JSON, run_analysis, write_s3
from feedback_loop.calibration.curves import CalibrationMap
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.events import put_event
from feedback_loop.logic.changes import list_changes
from feedback_loop.models.changes import Change

Engine = Literal["embedded", "athena", "auto"]
ENGINES = ("embedded", "athena", "auto")
_changes = TypeAdapter(list[Change])

ANALYSIS_COMPLETED = "AnalysisCompleted"


def eval_logs_prefix(project: str) -> str:
    return f"eval-logs/{project}/"


def reports_prefix(project: str, until: datetime) -> str:
    return f"reports/{project}/{run_name(until)}/"


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
        "regressions": list(dict.fromkeys(r["change"] for r in report["regressions"])),
        "skipped_lines": counts["skipped_lines"],
        "agreement_dropped": bool(((report.get("trends") or {}).get("drop") or {}).get("flagged")),
    }


def previous_points(s3: Any, bucket: str, project: str, skipped: Counter[str] | None = None
                    ) -> list[dict[str, Any]]:
    """Every earlier run's point of a project (reports/<project>/<run>/trend.json, or its
    report.json where a run has no trend.json), by one listing of the runs' folders; a run whose
    files are missing or unreadable is counted in `skipped` and left out."""
    skipped = skipped if skipped is not None else Counter()
    paginator = s3.get_paginator("list_objects_v2")
    root = f"reports/{project}/"
    runs = [prefix["Prefix"].removeprefix(root).rstrip("/")
            for page in paginator.paginate(Bucket=bucket, Prefix=root, Delimiter="/")
            for prefix in page.get("CommonPrefixes", [])]
    points = []
    for run in sorted(runs):
        def read(name: str, run: str = run) -> bytes | None:
            try:
                return s3.get_object(Bucket=bucket, Key=f"{root}{run}/{name}")["Body"].read()
            except s3.exceptions.NoSuchKey:
                return None

        try:
            found = trends.load_point(run, read)
        except (ValueError, KeyError, TypeError):
            skipped["unreadable_report"] += 1
            continue
        if found is None:
            skipped["run_without_report"] += 1
        else:
            points.append(found)
    return points


def calibrator_in_service(table: FeedbackTable, s3: Any, bucket: str, project: str
                          ) -> tuple[CalibrationMap, str] | None:
    """The project's calibrator in service (its map and id), which the pass applies to every request."""
    from feedback_loop.logic.calibration import CurrentMaps

    current = CurrentMaps(table, s3, bucket).get(project)
    return None if current is None else (current.map, current.id)


def _publish(project: str, until: datetime, analysis: Analysis, changes: list[Change], *, s3: Any, events: Any,
             bucket: str, bus_name: str) -> WeeklyResult:
    """The report (with the trends of the project's earlier runs) and datasets written to S3, the
    project's index page rewritten, and AnalysisCompleted put on the bus."""
    run = run_name(until)
    previous = [p for p in previous_points(s3, bucket, project) if p.get("run") != run]
    with_trends(analysis.report, previous, change_marks(changes))
    written = write_s3(analysis, s3, bucket, reports_prefix(project, until))
    index = f"reports/{project}/{INDEX_HTML}"
    s3.put_object(Bucket=bucket, Key=index, ContentType="text/html; charset=utf-8",
                  Body=render_index(project, [*previous, analysis.report["trends"]["weeks"][-1]],
                                    analysis.report["trends"]).encode())
    written[INDEX_HTML] = f"s3://{bucket}/{index}"
    detail = {"project": project, "window": analysis.report["window"], "report": written[REPORT_JSON],
              "labelled_dataset": written[LABELLED], "reports": written, **key_figures(analysis.report)}
    put_event(events, bus_name, ANALYSIS_COMPLETED, detail, time=until)
    return WeeklyResult(project, analysis.report, written, detail)


def _feedback_items(table: FeedbackTable, project: str, since: datetime, settings: AnalysisSettings,
                    now: datetime | None, day_shards: int) -> Any:
    # feedback from the start of what is read (changes reach back one impact window) until now:
    # all explicit feedback about a request counts, whenever it arrived before the analysis ran
    return table.feedback_in_window(project, since - settings.impact_window, now or datetime.now(timezone.utc),
                                    day_shards)


def run_weekly(project: str, until: datetime, *, s3: Any, events: Any, table: FeedbackTable, bucket: str,
               bus_name: str, day_shards: int, window: timedelta = timedelta(days=7),
               settings: AnalysisSettings | None = None, now: datetime | None = None,
               progress: Callable[[str], None] | None = None) -> WeeklyResult:
    """One project's week on the embedded engine, in this process."""
    settings = settings or AnalysisSettings()
    since = until - window
    changes = list_changes(table, project)
    feedback = FeedbackIndex()
    feedback.add_items(_feedback_items(table, project, since, settings, now, day_shards))
    source = EvalLogSource(f"s3://{bucket}/{eval_logs_prefix(project)}", s3)
    analysis = run_analysis(project, source, feedback, changes, since, until, settings, progress,
                            calibrator=calibrator_in_service(table, s3, bucket, project))
    return _publish(project, until, analysis, changes, s3=s3, events=events, bucket=bucket, bus_name=bus_name)


# --- the engine of each project -----------------------------------------------------------------------
def eval_log_files(s3: Any, bucket: str, project: str, first: date, last: date) -> list[tuple[str, int]]:
    """(key, bytes) of a project's eval-log files (JSON Lines and Parquet, by name) in the partitions
    that a pass over first..last reads (evallogs.partition_range), by listing (no object is read)."""
    low, high = partition_range(first, last)
    paginator = s3.get_paginator("list_objects_v2")
    found, day = [], low
    while day <= high:
        prefix = f"{eval_logs_prefix(project)}dt={day.isoformat()}/"
        found += [(item["Key"], item["Size"]) for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                  for item in page.get("Contents", []) if item["Key"].endswith(JSON_SUFFIXES + PARQUET_SUFFIXES)]
        day += timedelta(days=1)
    return found


def choose_engine(engine: Engine, size: int, threshold: int) -> str:
    """`auto`: Athena from `threshold` bytes of eval logs under the pass (docs/DEPLOY.md)."""
    if engine == "auto":
        return "athena" if size >= threshold else "embedded"
    return engine


def plan(projects: list[str], until: datetime, *, s3: Any, table: FeedbackTable, bucket: str, engine: Engine,
         threshold: int, window: timedelta, settings: AnalysisSettings) -> list[dict[str, Any]]:
    """Each project with the bytes its pass reads and the engine that runs it."""
    planned = []
    for project in projects:
        since = until - window
        start, _ = read_range(since, until, list_changes(table, project), settings)
        size = sum(bytes_ for _, bytes_ in eval_log_files(s3, bucket, project, start.date(), until.date()))
        planned.append({"project": project, "bytes": size, "engine": choose_engine(engine, size, threshold)})
    return planned


# --- a project on Athena, in two steps ----------------------------------------------------------------
@dataclass(frozen=True)
class AthenaPlace:
    """Where the Athena path runs: the Glue database, the workgroup, and where results go."""

    database: str
    output: str  # s3://<bucket>/athena-results/
    workgroup: str | None = None


def pass_state_key(project: str, until: datetime) -> str:
    return f"athena-results/passes/{project}/{run_name(until)}.json"


def _engine(client: Any, place: AthenaPlace, project: str, until: datetime, window: timedelta,
            settings: AnalysisSettings, changes: list[Change], layout: athena.Layout | None = None,
            calibration_map: CalibrationMap | None = None) -> tuple[athena.Athena, dict[str, Any], list[Any]]:
    since = until - window
    start, measured = read_range(since, until, changes, settings)
    sides = change_sides(measured, since, until, settings)
    engine, results = athena.pass_engine(client, place.database, place.output, project, run_name(until),
                                         sides, start.timestamp(), until.timestamp(),
                                         (since.timestamp(), until.timestamp()), settings.read_fields,
                                         place.workgroup, layout=layout, threshold=settings.threshold,
                                         minimum=settings.min_segment_n, calibration_map=calibration_map)
    return engine, results, sides


def start_athena(project: str, until: datetime, *, s3: Any, client: Any, table: FeedbackTable, bucket: str,
                 place: AthenaPlace, day_shards: int, window: timedelta, settings: AnalysisSettings,
                 now: datetime | None = None) -> dict[str, Any]:
    """The feedback exported and every statement of the pass started. Returns what the state
    machine polls (the execution ids) and where the rest is kept for `finish_athena`."""
    changes = list_changes(table, project)
    start, _ = read_range(until - window, until, changes, settings)
    listed = eval_log_files(s3, bucket, project, start.date(), until.date())
    layout = athena.Layout.of(bucket, (key for key, _ in listed))
    calibrator = calibrator_in_service(table, s3, bucket, project)
    engine, results, _ = _engine(client, place, project, until, window, settings, changes, layout,
                                 calibrator[0] if calibrator else None)
    items = _feedback_items(table, project, until - window, settings, now, day_shards)
    exported = athena.export_feedback(items, s3, bucket, project, run_name(until))
    executions = athena.start_pass(engine, results)
    key = pass_state_key(project, until)
    # the calibrator the statements apply, kept for the report (the one in service may change meanwhile)
    state = {"project": project, "until": until.isoformat(), "window_seconds": window.total_seconds(),
             "changes": _changes.dump_python(changes, mode="json"), "executions": executions,
             "calibrator": None if calibrator is None else {"id": calibrator[1], "map": calibrator[0].to_json()}}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(state).encode(), ContentType="application/json")
    return {"project": project, "state": key, "ids": sorted(set(executions.values())), "exported": exported}


def finish_athena(state_key: str, *, s3: Any, client: Any, events: Any, bucket: str, bus_name: str,
                  place: AthenaPlace, settings: AnalysisSettings, table: FeedbackTable | None = None) -> WeeklyResult:
    """The started pass's results read into the report, written and announced as run_weekly does."""
    state = json.loads(s3.get_object(Bucket=bucket, Key=state_key)["Body"].read())
    project, until = state["project"], datetime.fromisoformat(state["until"])
    window = timedelta(seconds=state["window_seconds"])
    changes = _changes.validate_python(state["changes"])
    if "calibrator" in state:  # what the started statements apply
        kept = state["calibrator"]
        calibrator = None if kept is None else (CalibrationMap.from_json(kept["map"]), kept["id"])
        applied = calibrator[0] if calibrator else None
    else:  # a pass started by an earlier version: the map in service, on the labelled requests only
        calibrator = None if table is None else calibrator_in_service(table, s3, bucket, project)
        applied = None
    engine, results, sides = _engine(client, place, project, until, window, settings, changes,
                                     calibration_map=applied)
    skipped: Counter[str] = Counter()
    collected, exported = athena.finish_pass(engine, results, state["executions"], sides, skipped)
    feedback = FeedbackIndex()
    feedback.events = exported
    analysis = report(project, collected, feedback, sides, until - window, until, settings, skipped,
                      calibrator=calibrator)
    return _publish(project, until, analysis, changes, s3=s3, events=events, bucket=bucket, bus_name=bus_name)
