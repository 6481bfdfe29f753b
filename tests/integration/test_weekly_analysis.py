"""The scheduled analysis on the local stack: HTTP feedback + S3 eval logs → schedule → the weekly
state machine → S3 reports + event; the same week on Athena through the same state machine."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.run import run_analysis
from feedback_loop.client import FeedbackClient
from feedback_loop.simulate import Scenario, simulate

from ..analysis_data import write_eval_logs, write_feedback
from ..unit.test_engine_parity import assert_same, plain

pytestmark = pytest.mark.integration
# Two weeks that ended yesterday, as a real weekly run sees them (feedback may come an hour later).
_END = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
SCENARIO = Scenario(start=_END - timedelta(days=14), requests=6_000, seed=3, days=14)
WINDOW_KEY = _END.strftime("%Y-%m-%dT%H-%M-%SZ")


@pytest.fixture(scope="module")
def week(stack, table, tmp_path_factory):
    from feedback_loop.logic.keys import create_key

    project = "weekly-sim"
    client = FeedbackClient(stack.api_url, create_key(table, project).plaintext)
    records, events = simulate(SCENARIO)
    for start in range(0, len(events), 500):
        result = client.send_batch(events[start:start + 500])
        assert result.rejected == 0
    for change in SCENARIO.changes():
        client.register_change(change.name, change.effective_at, description=change.description,
                               segment=change.segment)
    s3 = boto3.client("s3")
    by_day = defaultdict(list)
    for record in records:
        by_day[record["timestamp"][:10]].append(record)
    for day, rows in by_day.items():
        body = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
        s3.put_object(Bucket=stack.bucket, Key=f"eval-logs/{project}/dt={day}/app-1.jsonl.gz", Body=body)
    # the week before first, by hand, as a project with history has it: this week's report shows both
    before = stack.states.execute("AnalysisStateMachine", {"time": (_END - timedelta(days=7)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"), "engine": "embedded", "projects": [project]})
    assert before["status"] == "SUCCEEDED", before
    # the schedule runs AnalysisLagMinutes after the window's end, for the window that ended then
    result = stack.fire_schedule(SCENARIO.end + stack.analysis_lag(), "AnalysisStateMachine")["AnalysisStateMachine"]
    delivered = stack.bus.wait_for("AnalysisCompleted", where=lambda event: event["detail"]["project"] == project
                                   and event["detail"]["window"]["until"] == _END.strftime("%Y-%m-%dT%H:%M:%SZ"))
    local = tmp_path_factory.mktemp("weekly")
    return project, records, events, result, delivered, s3, local


def test_the_schedule_writes_the_report_and_datasets_to_s3(stack, week) -> None:
    project, _, _, result, _, s3, _ = week
    prefix = f"reports/{project}/{WINDOW_KEY}/"
    assert result["status"] == "SUCCEEDED"
    [done] = [r for r in result["output"]["results"] if r["project"] == project]
    # a small project runs on the embedded engine (AnalysisEngine auto, under AthenaThresholdBytes)
    assert done == {"project": project, "engine": "embedded", "report": f"s3://{stack.bucket}/{prefix}report.json",
                    "failed": False}
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix)["Contents"]}
    assert keys == {prefix + n for n in ("report.json", "report.html", "disagreements.jsonl", "labelled.jsonl",
                                         "trend.json")}
    html = s3.get_object(Bucket=stack.bucket, Key=prefix + "report.html")
    assert html["ContentType"].startswith("text/html")
    report = json.loads(s3.get_object(Bucket=stack.bucket, Key=prefix + "report.json")["Body"].read())
    assert report["window"] == {"since": (_END - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                "until": _END.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert report["project"] == project


def test_the_scheduled_report_equals_the_analysis_of_the_exported_files(stack, week) -> None:
    project, records, events, _, _, s3, local = week
    prefix = f"reports/{project}/{WINDOW_KEY}/"
    scheduled = json.loads(s3.get_object(Bucket=stack.bucket, Key=prefix + "report.json")["Body"].read())
    feedback = FeedbackIndex()
    feedback.add_export_file(write_feedback(events, local / "feedback.jsonl"))
    on_files = run_analysis(project, EvalLogSource(str(write_eval_logs(records, local / "logs"))), feedback,
                            SCENARIO.changes(), SCENARIO.end - timedelta(days=7), SCENARIO.end).report
    expected = json.loads(json.dumps(on_files))
    for key in ("counts", "correlation", "agreement", "miscalibration", "cohorts", "weighting", "regressions"):
        assert expected[key] == scheduled[key], key
    assert len(expected["impact"]) == len(scheduled["impact"])
    for mine, theirs in zip(expected["impact"], scheduled["impact"]):
        for field in mine:
            assert mine[field] == theirs[field], (mine["change"], mine["metric"], field)
    assert scheduled["miscalibration"]["by_segment"]["query_type"]["code"]["flagged"]


def test_analysis_completed_carries_the_key_figures(stack, week) -> None:
    project, _, _, _, delivered, _, _ = week
    [delivery] = [d for d in delivered if d.event["detail"]["project"] == project]
    event = delivery.event
    assert event["source"] == "feedback-loop"
    assert event["time"] == _END.strftime("%Y-%m-%dT%H:%M:%SZ")
    detail = event["detail"]
    assert detail["report"].endswith("/report.json") and detail["labelled_dataset"].endswith("/labelled.jsonl")
    assert detail["requests_with_human_score"] > 100
    assert 0 < detail["spearman"] < 1 and 0.5 < detail["auroc"] <= 1
    assert {"field": "query_type", "value": "code"} in detail["flagged_segments"]


def test_the_analysis_reads_feedback_through_the_day_index_without_scans(stack, week) -> None:
    from feedback_loop.dal.store import patient_dynamodb_client

    calls: list[str] = []
    client = patient_dynamodb_client()  # the scheduled functions' shared client
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    try:
        # this project's week only (the schedule would analyse every project the suite wrote before)
        execution = stack.states.execute("AnalysisStateMachine", {"time": _END.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                                  "engine": "embedded", "projects": [week[0]]})
        assert execution["status"] == "SUCCEEDED", execution
    finally:
        client.meta.events.unregister("before-call.dynamodb.*")
    # other functions (the retrain function, triggered by the run's event) share the client: the
    # property is that nothing scans and the feedback comes through Query
    assert "Query" in calls and "Scan" not in calls


def test_the_function_emits_emf_metrics_per_project(stack, week, monkeypatch, capsys) -> None:
    from feedback_loop.local.runtime import LambdaContext, load_module
    from feedback_loop.settings import analysis_settings

    project = week[0]
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("ANALYSIS_PROJECTS", project)
    analysis_settings.cache_clear()
    try:
        spec = next(f for f in stack.template.functions() if f.logical_id == "AnalysisFunction")
        module = load_module(spec)
        scheduled = {"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
                     "account": "123456789012", "time": (_END + stack.analysis_lag()).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "region": "us-east-1", "resources": [], "detail": {}}
        module.lambda_handler(scheduled, LambdaContext("AnalysisFunction", timeout_seconds=900))
    finally:
        analysis_settings.cache_clear()
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [blob] = [b for b in blobs if b.get("project") == project]
    names = {m["Name"] for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {"HumanEvaluatorSpearman", "DisagreementRate", "FeedbackRate", "EvaluatorAuroc", "LabelledRequests"}
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "FeedbackLoop"
    value = {name: blob[name][0] if isinstance(blob[name], list) else blob[name] for name in names}
    assert 0 < value["DisagreementRate"] < 1 and value["LabelledRequests"] > 100


def test_the_same_week_from_s3_and_from_files(stack, week) -> None:
    """The pass downloads each S3 object and reads it in DuckDB: the same report and datasets, to
    the last bit, as the same records in local files read in runs of several files at once."""
    project, records, events, _, _, s3, local = week
    results = []
    for source in (EvalLogSource(f"s3://{stack.bucket}/eval-logs/{project}/", s3),
                   EvalLogSource(str(write_eval_logs(records, local / "same-logs")))):
        feedback = FeedbackIndex()
        feedback.add_export_file(write_feedback(events, local / "feedback.jsonl"))
        analysis = run_analysis(project, source, feedback, SCENARIO.changes(), SCENARIO.end - timedelta(days=7),
                                SCENARIO.end)
        analysis.report.pop("generated_at")
        results.append(json.loads(json.dumps((analysis.report, analysis.labelled, analysis.disagreements))))
    assert results[0][0]["counts"]["eval_records"] > 1000
    assert results[0] == results[1]


def test_the_week_before_joins_the_trends_and_the_index_lists_every_week(stack, week) -> None:
    """The week before was run (by hand, in the fixture); this week's scheduled run read its point
    (trend.json), shows both weeks with the registered changes on the time axis, and the project's
    index page links both reports. With one earlier week the drop test is not run (it needs three)."""
    project, _, _, _, _, s3, _ = week
    previous_key = (_END - timedelta(days=7)).strftime("%Y-%m-%dT%H-%M-%SZ")

    def read(key: str) -> bytes:
        return s3.get_object(Bucket=stack.bucket, Key=f"reports/{project}/{key}")["Body"].read()

    report = json.loads(read(f"{WINDOW_KEY}/report.json"))
    trend = report["trends"]
    assert [w["run"] for w in trend["weeks"]] == [previous_key, WINDOW_KEY]
    assert json.loads(read(f"{previous_key}/trend.json")) == trend["weeks"][0]
    assert json.loads(read(f"{WINDOW_KEY}/trend.json")) == trend["weeks"][-1]
    assert trend["weeks"][0]["until"] == trend["weeks"][1]["since"]
    # both registered changes take effect at the start of this week
    assert {(c["name"], c["week"]) for c in trend["changes"]} == {(c.name, trend["weeks"][1]["until"])
                                                                  for c in SCENARIO.changes()}
    assert not trend["drop"]["flagged"] and not trend["drop"]["metrics"]["auroc"]["tested"]
    for w in trend["weeks"]:
        assert w["quality"]["ci"][0] <= w["quality"]["value"] <= w["quality"]["ci"][1]
        assert 0.5 < w["auroc"]["value"] <= 1 and w["labelled"] > 100
    html = read(f"{WINDOW_KEY}/report.html").decode()
    assert 'id="trends"' in html and f'href="../{previous_key}/report.html"' in html
    assert 'data-plot="trend-quality"' in html and "◆ registered changes: model-minor-bump" in html
    index = s3.get_object(Bucket=stack.bucket, Key=f"reports/{project}/index.html")
    assert index["ContentType"].startswith("text/html")
    page = index["Body"].read().decode()
    assert page.index(f'href="{WINDOW_KEY}/report.html"') < page.index(f'href="{previous_key}/report.html"')
    read(f"{previous_key}/report.html")  # the link leads somewhere


# last in the module: it writes the week's report again, from Athena
def test_the_same_week_on_athena_through_the_state_machine(stack, week) -> None:
    """Started by hand with engine athena: the feedback exported, the statements started and polled
    by the state machine, the results read into the report: every figure equal to the embedded
    engine's, and the event sent again."""
    project, _, _, _, _, s3, _ = week
    key = f"reports/{project}/{WINDOW_KEY}/report.json"
    embedded = json.loads(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
    announced = len(stack.bus.wait_for("AnalysisCompleted", where=lambda event: event["detail"]["project"] == project))
    execution = stack.states.execute("AnalysisStateMachine", {"time": _END.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                              "engine": "athena", "projects": [project]})
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["output"]["results"] == [{"project": project, "engine": "athena", "failed": False,
                                               "report": f"s3://{stack.bucket}/{key}"}]
    on_athena = json.loads(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
    for report in (embedded, on_athena):
        report.pop("generated_at")
    assert on_athena["counts"]["requests_with_human_score"] > 100
    assert_same(plain(embedded), plain(on_athena))
    history = boto3.client("stepfunctions").get_execution_history(executionArn=execution["arn"],
                                                                  maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert entered[:4] == ["Plan", "Projects", "Engine", "OnAthena"] and "Embedded" not in entered
    assert entered.count("Poll") >= 1 and entered[-3:] == ["Summary", "AnyFailed", "Done"]
    state = json.loads(s3.get_object(Bucket=stack.bucket, Key=f"athena-results/passes/{project}/{WINDOW_KEY}.json")
                       ["Body"].read())
    ids = set(state["executions"].values())
    athena = boto3.client("athena")
    assert {athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]["Status"]["State"] for i in ids} == {
        "SUCCEEDED"}
    stack.bus.wait_for("AnalysisCompleted", count=announced + 1, timeout=60,
                       where=lambda event: event["detail"]["project"] == project)


def test_a_run_asked_for_an_unknown_engine_fails_naming_it(stack, week) -> None:
    """A failed execution (what the alarm on the state machine counts) says what failed."""
    execution = stack.states.execute("AnalysisStateMachine", {"time": _END.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                              "engine": "spark", "projects": [week[0]]})
    assert execution["status"] == "FAILED"
    assert execution["error"] == "ValueError" and "engine: 'spark' is not one of" in execution["cause"]


def test_the_plan_leaves_out_projects_without_eval_logs_in_the_window_unless_named(stack, week) -> None:
    from feedback_loop.local.runtime import LambdaContext, load_module

    project, s3 = week[0], week[5]
    s3.put_object(Bucket=stack.bucket, Key="eval-logs/idle-since-2020/dt=2020-01-06/app.jsonl", Body=b"{}\n")
    spec = next(f for f in stack.template.functions() if f.logical_id == "AnalysisFunction")
    handler = load_module(spec).lambda_handler
    context = LambdaContext("AnalysisFunction", timeout_seconds=900)
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event",
                 "time": (_END + stack.analysis_lag()).strftime("%Y-%m-%dT%H:%M:%SZ")}
    found = handler({"phase": "plan", "request": scheduled}, context)
    assert found["window_end"] == _END.isoformat()  # the schedule's time less AnalysisLagMinutes
    assert project in {p["project"] for p in found["projects"]} and "idle-since-2020" in found["idle"]
    assert all(p["bytes"] > 0 for p in found["projects"])
    named = handler({"phase": "plan", "request": {"time": _END.isoformat(), "projects": ["idle-since-2020"]}}, context)
    assert [p["project"] for p in named["projects"]] == ["idle-since-2020"] and named["idle"] == []


def test_a_calibrator_in_service_is_judged_in_the_weekly_report(stack, table, week) -> None:
    """A map put in service for the project (learned from the week's own labelled dataset, forced:
    a plumbing check, not a fair test of the map) and the week run again by the state machine: the
    report gives the calibrated score's figures beside the raw one's, the raw ones its own."""
    from feedback_loop.calibration.fit import fit, labelled
    from feedback_loop.calibration.curves import map_id
    from feedback_loop.logic.calibration import deploy

    project, _, _, _, _, s3, _ = week
    rows = [json.loads(line) for line in s3.get_object(
        Bucket=stack.bucket, Key=f"reports/{project}/{WINDOW_KEY}/labelled.jsonl")["Body"].read().splitlines()]
    calibration_map = fit(labelled(rows, ("query_type",)), ("query_type",)).map
    deploy(table, s3, stack.bucket, project, calibration_map.dumps(), "test", force=True)
    execution = stack.states.execute("AnalysisStateMachine", {"time": _END.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                              "engine": "embedded", "projects": [project]})
    assert execution["status"] == "SUCCEEDED", execution
    report = json.loads(s3.get_object(Bucket=stack.bucket, Key=f"reports/{project}/{WINDOW_KEY}/report.json")
                        ["Body"].read())
    section = report["calibration"]
    assert section["map_id"] == map_id(calibration_map) and section["n"] == report["agreement"]["n"]
    assert section["raw"]["ece"] == report["agreement"]["ece"]
    from feedback_loop.analysis import stats

    binary = [r for r in rows if r["human_label"] in ("good", "bad")]
    mapped = [calibration_map.apply(r["overall"], r["segments"])["p_good"] for r in binary]
    assert section["calibrated"]["ece"] == pytest.approx(
        stats.calibration(mapped, [r["human_label"] == "good" for r in binary]).ece, abs=1e-12)
    # the map applied to every request of the pass: the quality of all traffic with its predictors,
    # given beside the headline, which stays the raw score's (the map learned on this window's labels)
    assert section["quality"]["headline"] is False and "inside this window" in section["quality"]["why"]
    assert section["quality"]["ppi_by_cohort"]["estimate"] is not None and "predictor" not in report["quality"]
    # on Athena, in two invocations: the map the started statements apply is kept with the pass's
    # state, and the report is the embedded engine's
    execution = stack.states.execute("AnalysisStateMachine", {"time": _END.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                              "engine": "athena", "projects": [project]})
    assert execution["status"] == "SUCCEEDED", execution
    state = json.loads(s3.get_object(Bucket=stack.bucket, Key=f"athena-results/passes/{project}/{WINDOW_KEY}.json")
                       ["Body"].read())
    assert state["calibrator"]["id"] == map_id(calibration_map) and "calibrated cohorts" in state["executions"]
    on_athena = json.loads(s3.get_object(Bucket=stack.bucket, Key=f"reports/{project}/{WINDOW_KEY}/report.json")
                           ["Body"].read())
    for found in (report, on_athena):
        found.pop("generated_at")
    assert_same(plain(report), plain(on_athena))
