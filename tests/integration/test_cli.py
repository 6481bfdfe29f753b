"""`feedback-loop serve` and `feedback-loop keys` as a user runs them: subprocesses, HTTP, Ctrl-C."""

from __future__ import annotations

import gzip
import json
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests

from ..conftest import ROOT
from ..serving import serve

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "feedback_loop.cli"]


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "--data-dir", str(data_dir), *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_serve_prints_a_working_key_manages_keys_and_stops_cleanly(tmp_path: Path) -> None:
    served = serve(tmp_path, "KeyCacheSeconds=0", startup_seconds=60)
    url, key, output = served.url, served.key, served.output
    try:
        assert "curl" in output

        body = {"request_id": "cli-1", "feedback_type": "explicit_thumbs_up", "value": True}
        assert requests.post(f"{url}/v1/feedback", json=body, headers={"x-api-key": key}, timeout=10).status_code == 201

        state = json.loads((tmp_path / "local.json").read_text())
        assert state["api_url"] == url

        created = run_cli(tmp_path, "keys", "create", "--project", "other", "--label", "ci")
        assert created.returncode == 0, created.stderr
        issued = json.loads(created.stdout)
        other = {"Authorization": f"Bearer {issued['api_key']}"}
        assert requests.post(f"{url}/v1/feedback", json=body, headers=other, timeout=10).status_code == 201
        # the other project's key sees its own event only
        assert requests.get(f"{url}/v1/requests/cli-1/feedback", headers=other, timeout=10).json()["events"] == 1

        listed = run_cli(tmp_path, "keys", "list", "--project", "other")
        assert [json.loads(line)["key_id"] for line in listed.stdout.splitlines()] == [issued["key_id"]]
        assert issued["api_key"] not in listed.stdout  # secrets are never listed

        revoked = run_cli(tmp_path, "keys", "revoke", issued["key_id"])
        assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"]
        assert requests.post(f"{url}/v1/feedback", json=body, headers=other, timeout=10).status_code == 401
        assert run_cli(tmp_path, "keys", "revoke", "0000000000000000").returncode != 0

        requested = run_cli(tmp_path, "retrain", "--project", "shop")
        assert requested.returncode == 0, requested.stderr
        assert json.loads(requested.stdout)["project"] == "shop"

        # an app's OpenTelemetry exporter set up as serve prints it: its span and score become a record
        [otlp_line] = [line for line in output.splitlines() if line.strip().startswith("OTLP:")]
        assert f"OTEL_EXPORTER_OTLP_ENDPOINT={url} " in otlp_line and f"x-api-key={key}" in otlp_line
        exported = _export_one_scored_span(url, key)
        s3 = boto3.client("s3", endpoint_url=state["aws_endpoint"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        [file] = s3.list_objects_v2(Bucket=state["bucket"], Prefix="eval-logs/shop/")["Contents"]  # serve --project shop
        [record] = [json.loads(line) for line in gzip.decompress(
            s3.get_object(Bucket=state["bucket"], Key=file["Key"])["Body"].read()).splitlines()]
        assert record["request_id"] == exported and record["eval_scores"] == {"overall": 0.9}

        # what the running stack holds, analysed with the command serve prints
        [analyze_line] = [line for line in output.splitlines() if line.strip().startswith("analyze:")]
        command = shlex.split(analyze_line.split("analyze:", 1)[1])[1:]  # without "feedback-loop"
        command[command.index("--out") + 1] = str(tmp_path / "local-report")
        analysed = run_cli(tmp_path, *command)
        assert analysed.returncode == 0, analysed.stderr
        report = json.loads((tmp_path / "local-report" / "report.json").read_text())
        assert report["project"] == "shop" and report["counts"]["eval_records"] == 1
    finally:
        code, out, err = served.stop(timeout=30)
    assert code == 0, err
    assert "stopped." in out
    assert "Traceback" not in err
    assert not (tmp_path / "local.json").exists()


def _export_one_scored_span(url: str, key: str) -> str:
    """One GenAI span with its evaluation, through the OpenTelemetry SDK's OTLP/HTTP exporter; its trace id."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces",
                                                                     headers={"x-api-key": key})))
    with provider.get_tracer("app").start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat"}) as span:
        span.add_event("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "overall",
                                                    "gen_ai.evaluation.score.value": 0.9})
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


def test_keys_without_a_running_stack_say_what_to_do(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "keys", "list", "--project", "x")
    assert result.returncode != 0
    assert "feedback-loop serve" in result.stderr and "--table" in result.stderr


def test_openapi_command_prints_the_committed_document(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "openapi")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads((ROOT / "docs/openapi.json").read_text())


def test_analyze_on_files(tmp_path: Path) -> None:
    """`feedback-loop analyze` on an export and a folder of eval logs, as a user runs it: the four
    files written, and report.json that of the analysis run in process on the same files (with
    DuckDB's default memory limit there, 256MB here)."""
    from feedback_loop.analysis.evallogs import EvalLogSource
    from feedback_loop.analysis.feedback import FeedbackIndex
    from feedback_loop.analysis.run import run_analysis
    from feedback_loop.simulate import Scenario, simulate

    from ..analysis_data import write_eval_logs, write_feedback

    scenario = Scenario(requests=3_000, seed=5)
    records, events = simulate(scenario)
    logs = write_eval_logs(records, tmp_path / "logs")
    feedback = write_feedback(events, tmp_path / "feedback.jsonl")
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps([c.model_dump(mode="json") for c in scenario.changes()]))
    done = run_cli(tmp_path, "analyze", "--eval-logs", str(logs), "--feedback", str(feedback), "--changes",
                   str(changes), "--since", scenario.start.isoformat(), "--until", scenario.end.isoformat(),
                   "--out", str(tmp_path / "out"), "--quiet", "--memory-limit", "256MB")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"report.json", "report.html", "disagreements.jsonl",
                                                              "labelled.jsonl", "trend.json"}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    index = FeedbackIndex()
    index.add_export_file(feedback)
    in_process = run_analysis("default", EvalLogSource(str(logs)), index, scenario.changes(), scenario.start,
                              scenario.end).report
    assert report["counts"]["eval_records"] > 1000
    for key in ("counts", "correlation", "agreement", "miscalibration", "cohorts", "weighting", "impact"):
        assert report[key] == json.loads(json.dumps(in_process[key])), key


def test_analyze_with_history_reads_the_earlier_runs_and_writes_the_index(tmp_path: Path) -> None:
    """Two weeks run into folders of one history folder: the second report's trends hold both
    weeks (the first by its folder's trend.json), and history/index.html links both reports."""
    from feedback_loop.simulate import Scenario, simulate

    from ..analysis_data import write_eval_logs, write_feedback

    scenario = Scenario(requests=3_000, seed=6)
    records, events = simulate(scenario)
    logs = write_eval_logs(records, tmp_path / "logs")
    feedback = write_feedback(events, tmp_path / "feedback.jsonl")
    history = tmp_path / "history"
    middle = scenario.start + (scenario.end - scenario.start) / 2
    for name, since, until in (("week-1", scenario.start, middle), ("week-2", middle, scenario.end)):
        done = run_cli(tmp_path, "analyze", "--eval-logs", str(logs), "--feedback", str(feedback), "--since",
                       since.isoformat(), "--until", until.isoformat(), "--out", str(history / name),
                       "--history", str(history), "--quiet")
        assert done.returncode == 0, done.stderr
    report = json.loads((history / "week-2" / "report.json").read_text())
    assert [w["run"] for w in report["trends"]["weeks"]] == ["week-1", "week-2"]
    first = json.loads((history / "week-1" / "trend.json").read_text())
    assert {k: v for k, v in first.items() if k != "run"} == {
        k: v for k, v in report["trends"]["weeks"][0].items() if k != "run"}
    page = (history / "index.html").read_text()
    assert page.index('href="week-2/report.html"') < page.index('href="week-1/report.html"')
    assert 'href="../week-1/report.html"' in (history / "week-2" / "report.html").read_text()


def test_export_then_import_through_the_command_line(tmp_path: Path) -> None:
    """`feedback-loop export --format openinference` then `feedback-loop import phoenix`: the same
    feedback back (a file of the export contract the analysis reads); `--format otel` writes OTLP/JSON."""
    from feedback_loop.simulate import Scenario, simulate

    from ..analysis_data import write_feedback

    _, events = simulate(Scenario(requests=200, seed=8))
    feedback = write_feedback(events, tmp_path / "feedback.jsonl")
    done = run_cli(tmp_path, "export", "--feedback", str(feedback), "--format", "openinference",
                   "--out", str(tmp_path / "annotations.json"))
    assert done.returncode == 0, done.stderr
    done = run_cli(tmp_path, "import", "phoenix", str(tmp_path / "annotations.json"), "--out", str(tmp_path / "back"))
    assert done.returncode == 0, done.stderr
    assert f"{len(events)} feedback events" in done.stdout and "skipped none" in done.stdout
    back = [json.loads(line) for line in (tmp_path / "back" / "feedback.jsonl").read_text().splitlines()]
    assert sorted((e["request_id"], e["feedback_type"], str(e["value"])) for e in back) == sorted(
        (e["request_id"], e["feedback_type"], str(e["value"])) for e in events)
    done = run_cli(tmp_path, "export", "--feedback", str(feedback), "--format", "otel", "--out",
                   str(tmp_path / "logs.json"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "logs.json").read_text())["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    done = run_cli(tmp_path, "export", "--feedback", str(feedback), "--format", "langfuse", "--out",
                   str(tmp_path / "scores.json"))
    assert done.returncode == 0, done.stderr
    done = run_cli(tmp_path, "import", "langfuse", str(tmp_path / "scores.json"), "--out", str(tmp_path / "lf"))
    assert done.returncode == 0 and "skipped none" in done.stdout, done.stdout + done.stderr
    back = [json.loads(line) for line in (tmp_path / "lf" / "feedback.jsonl").read_text().splitlines()]
    assert sorted((e["event_id"], e["feedback_type"], str(e["value"])) for e in back) == sorted(
        (e["event_id"], e["feedback_type"], str(e["value"])) for e in events)


def test_analyze_refuses_a_memory_limit_that_is_not_a_size(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "analyze", "--eval-logs", str(tmp_path), "--feedback", str(tmp_path),
                     "--out", str(tmp_path / "out"), "--memory-limit", "lots")
    assert result.returncode == 2
    assert "--memory-limit" in result.stderr and "512MB" in result.stderr and "Traceback" not in result.stderr


def test_serve_prints_the_same_key_after_a_restart_and_a_new_one_once_it_is_revoked(tmp_path: Path) -> None:
    import os
    import stat

    first = serve(tmp_path, "KeyCacheSeconds=0", startup_seconds=60)
    assert "(new)" in first.output
    assert first.stop()[0] == 0
    saved = tmp_path / "serve-key.json"
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600 and json.loads(saved.read_text()) == {"shop": first.key}
    second = serve(tmp_path, "KeyCacheSeconds=0", startup_seconds=60)
    try:
        assert second.key == first.key and "(the one printed before)" in second.output  # no key piles up
        revoked = run_cli(tmp_path, "keys", "revoke", first.key.split("_")[1])
        assert revoked.returncode == 0, revoked.stderr
    finally:
        assert second.stop()[0] == 0
    third = serve(tmp_path, "KeyCacheSeconds=0", startup_seconds=60)
    try:
        assert third.key != first.key and "(new)" in third.output
        body = {"request_id": "r", "feedback_type": "implicit_usage", "value": True}
        assert requests.post(f"{third.url}/v1/feedback", json=body, headers={"x-api-key": third.key},
                             timeout=10).status_code == 201
    finally:
        third.stop()


def test_the_same_judgements_from_another_form_or_a_round_trip_are_stored_once(stack, table) -> None:
    """Through the API: MLflow's judgements imported from its assessments, then from its traces, and
    Langfuse's from both score shapes, are the same events (duplicates the second time); feedback sent,
    exported to a real Phoenix and read back from it is stored once too (tests/fixtures/interop)."""
    from feedback_loop.client import FeedbackClient
    from feedback_loop.interop import mapping, tools
    from feedback_loop.logic.keys import create_key

    fixtures = Path(__file__).parent.parent / "fixtures" / "interop"
    client = FeedbackClient(stack.api_url, create_key(table, "imports-once").plaintext)

    def send(events: list[dict]) -> tuple[int, int]:
        result = client.send_batch(events)
        assert result.rejected == 0, [r for r in result.results if r.errors]
        return result.stored, result.duplicates

    for tool, first, second, request_id in (("mlflow", "assessments.jsonl", "traces.json", "trace"),
                                            ("langfuse", "scores.json", "scores_v3.json", "trace")):
        events = [mapping.convert(tools.read(tool, fixtures / tool / name), request_id).feedback
                  for name in (first, second)]
        assert send(events[0]) == (len(events[0]), 0) and len(events[0]) > 50
        assert send(events[1]) == (0, len(events[0]))
    for tool, listing, request_id in (("phoenix", "roundtrip_span_annotations.json", "span"),
                                      ("langfuse", "roundtrip_scores_v3.json", "trace"),
                                      ("mlflow", "roundtrip_assessments.jsonl", "trace")):
        sent = [json.loads(line) for line in (fixtures / tool / "roundtrip_events.jsonl").read_text().splitlines()]
        # the round trips use the same event ids: a project each
        client = FeedbackClient(stack.api_url, create_key(table, f"imports-once-{tool}").plaintext)
        assert send(sent) == (len(sent), 0)
        back = mapping.convert(tools.read(tool, fixtures / tool / listing), request_id)
        assert send(back.feedback) == (0, len(sent))
