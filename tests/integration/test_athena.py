"""The weekly analysis's pass on Athena, on the local stack: the feedback stored through the API,
exported to S3; the eval logs in S3; the same queries rendered for Trino, answered by the local
Athena (local/athena.py: each statement run on DuckDB over the emulated bucket); and report.json
equal to the embedded engine's, every figure to 1e-9.

No Trino engine runs here: see tests/unit/test_queries.py for how the Trino rendering is checked."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from feedback_loop.analysis import athena
from feedback_loop.analysis.columnar import scan_files
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.model import AnalysisSettings, change_sides, read_range, run_name
from feedback_loop.analysis.report import report
from feedback_loop.client import FeedbackClient
from feedback_loop.models.changes import Change
from feedback_loop.simulate import Scenario, simulate

from ..unit.test_engine_parity import assert_same, plain

pytestmark = pytest.mark.integration
_END = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
SCENARIO = Scenario(start=_END - timedelta(days=14), requests=3_000, seed=9, days=14)
DATABASE = "athena_test"  # its tables read BUCKET; the stack's own database reads the stack's bucket
BUCKET = "athena-test-data"  # not the stack's: the scheduled analysis of other tests reads every project there
SETTINGS = AnalysisSettings()


def parquet(rows: list[dict]) -> bytes:
    """Eval records as a Parquet file of the eval_logs_parquet table's columns."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("request_id", pa.string()), ("timestamp", pa.string()), ("prompt", pa.string()),
                        ("output", pa.string()), ("eval_scores", pa.map_(pa.string(), pa.float64())),
                        ("metadata", pa.map_(pa.string(), pa.string()))])
    table = pa.Table.from_pylist([{**r, "eval_scores": list(r["eval_scores"].items()),
                                   "metadata": [(k, str(v)) for k, v in r["metadata"].items()]} for r in rows],
                                 schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def layout(s3, project: str) -> athena.Layout:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"eval-logs/{project}/")
    return athena.Layout.of(BUCKET, [o["Key"] for page in pages for o in page.get("Contents", [])])


def on_athena(s3, project: str, items: list, measured: list, since: datetime, until: datetime, start: datetime,
              calibration_map=None) -> tuple:
    """A pass on the local Athena: the feedback `items` exported for the run, the statements run;
    (collected, events exported, sides, skipped)."""
    run = run_name(until)
    assert athena.export_feedback(items, s3, BUCKET, project, run) == len(items)
    sides = change_sides(measured, since, until, SETTINGS)
    skipped: Counter[str] = Counter()
    collected, events = athena.scan_athena(boto3.client("athena"), DATABASE, f"s3://{BUCKET}/athena-results/",
                                           project, run, sides, start.timestamp(), until.timestamp(),
                                           (since.timestamp(), until.timestamp()), SETTINGS.segment_fields, skipped,
                                           poll=0.02, layout=layout(s3, project), calibration_map=calibration_map)
    return collected, events, sides, skipped


@pytest.fixture(scope="module")
def week(stack, table):
    """A project's two weeks: feedback through the API, eval logs in S3 (one file a day, and a
    day with a second file holding a request read again and a line that is not JSON)."""
    from feedback_loop.logic.keys import create_key

    project = "athena-sim"
    client = FeedbackClient(stack.api_url, create_key(table, project).plaintext)
    records, events = simulate(SCENARIO)
    for start in range(0, len(events), 500):
        assert client.send_batch(events[start:start + 500]).rejected == 0
    assert client.send_batch(events[:300]).rejected == 0  # a client's retry: the same events, stored once
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    by_day = defaultdict(list)
    for record in records:
        by_day[record["timestamp"][:10]].append(record)
    for number, (day, rows) in enumerate(sorted(by_day.items())):
        # every third day in Parquet of the Parquet table's schema (as Firehose writes it), and every
        # third day half in Parquet and half in JSON Lines (a day of both); the others JSON Lines
        if number % 3 == 1:
            s3.put_object(Bucket=BUCKET, Key=f"eval-logs/{project}/dt={day}/app-1.parquet", Body=parquet(rows))
            continue
        if number % 3 == 2:
            s3.put_object(Bucket=BUCKET, Key=f"eval-logs/{project}/dt={day}/app-0.parquet",
                          Body=parquet(rows[::2]))
            rows = rows[1::2]
        body = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
        s3.put_object(Bucket=BUCKET, Key=f"eval-logs/{project}/dt={day}/app-1.jsonl.gz", Body=body)
    labelled = {e["request_id"] for e in events if e["feedback_type"].startswith("explicit_")}
    again = next(r for r in records if r["request_id"] in labelled)
    extra = json.dumps({**again, "eval_scores": {"overall": 0.01}}) + "\n{not json\n"
    s3.put_object(Bucket=BUCKET, Key=f"eval-logs/{project}/dt={again['timestamp'][:10]}/app-2.jsonl",
                  Body=extra.encode())
    # not an eval-log file (the embedded reader reads JSON Lines and Parquet by name): not read either way
    s3.put_object(Bucket=BUCKET, Key=f"eval-logs/{project}/dt={again['timestamp'][:10]}/_SUCCESS", Body=b"done\n")
    glue = boto3.client("glue")
    glue.create_database(DatabaseInput={"Name": DATABASE})
    for table_input in athena.tables(BUCKET):
        glue.create_table(DatabaseName=DATABASE, TableInput=table_input)
    return project, s3, events


def test_the_pass_on_athena_gives_the_embedded_report(table, week) -> None:
    """With a calibrator too: the map, written as SQL and rendered for Trino, applied to every record."""
    from ..unit.test_queries import MAPS

    calibration_map = MAPS["platt with offsets"]
    project, s3, _ = week
    since, until = SCENARIO.end - timedelta(days=7), SCENARIO.end
    changes = [*SCENARIO.changes(), Change(name="ab", effective_at=SCENARIO.start, variant_field="prompt_version",
                                           control="v7", treatment="v8")]
    start, measured = read_range(since, until, changes, SETTINGS)
    window = (since.timestamp(), until.timestamp())
    items = list(table.feedback_in_window(project, start, datetime.now(timezone.utc), 8))
    assert len(items) > 500

    embedded_feedback = FeedbackIndex()
    embedded_feedback.add_items(items)
    embedded_sides = change_sides(measured, since, until, SETTINGS)
    embedded_skipped: Counter[str] = Counter()
    embedded = scan_files(EvalLogSource(f"s3://{BUCKET}/eval-logs/{project}/", s3), embedded_feedback,
                          embedded_sides, start.timestamp(), until.timestamp(), window, SETTINGS.segment_fields,
                          embedded_skipped, calibration_map=calibration_map)

    collected, events, athena_sides, athena_skipped = on_athena(s3, project, items, measured, since, until, start,
                                                                calibration_map)
    files = layout(s3, project)
    assert len(files.json_days) >= 8 and len(files.parquet_days) >= 4 and len(files.parquet_files) >= 4
    assert events == len(items) == embedded_feedback.events
    assert athena_skipped == embedded_skipped
    assert embedded_skipped["duplicate_request_id"] == 1 and embedded_skipped["invalid_json"] == 1
    assert embedded.read == collected.read == SCENARIO.requests + 1  # every record, Parquet or not, and one again
    athena_feedback = FeedbackIndex()
    athena_feedback.events = events
    generated = datetime(2026, 1, 1, tzinfo=timezone.utc)
    expected = report(project, embedded, embedded_feedback, embedded_sides, since, until, SETTINGS,
                      embedded_skipped, generated_at=generated, calibrator=(calibration_map, "m"))
    got = report(project, collected, athena_feedback, athena_sides, since, until, SETTINGS, athena_skipped,
                 generated_at=generated, calibrator=(calibration_map, "m"))
    assert expected.report["counts"]["requests_with_human_score"] > 100
    assert set(embedded.cohort_calibrated) == set(collected.cohort_calibrated) == set(embedded.cohort_requests)
    assert expected.report["calibration"]["quality"]["ppi_by_cohort"]["estimate"] is not None
    assert {i["change"] for i in expected.report["impact"]} == {"prompt-v8", "model-minor-bump", "ab"}
    assert_same(plain(expected.report), plain(got.report))
    assert list(expected.datasets.labelled()) == list(got.datasets.labelled())
    disagreements = list(expected.datasets.disagreements())
    assert disagreements == list(got.datasets.disagreements())
    assert any(e["comments"] for e in disagreements)  # the users' comments, read alike by both engines
    # the results are where Athena writes them
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="athena-results/")["Contents"]}
    assert len([k for k in keys if k.endswith(".csv")]) >= 8


def test_each_acknowledged_event_is_exported_exactly_once(table, week) -> None:
    """Every event the API acknowledged (some sent twice) is in the run's export once, and nothing else."""
    project, s3, events = week
    items = table.feedback_in_window(project, SCENARIO.start, datetime.now(timezone.utc), 8)
    assert athena.export_feedback(items, s3, BUCKET, project, "exactly-once") == len(events)
    body = s3.get_object(Bucket=BUCKET, Key=f"feedback-export/{project}/run=exactly-once/events.jsonl")["Body"]
    exported = [json.loads(line) for line in body.read().splitlines()]
    assert sorted(e["event_id"] for e in exported) == sorted(e["event_id"] for e in events)
    assert [e["position"] for e in exported] == list(range(len(events)))
    sent = {e["event_id"]: e for e in events}
    assert all(e["value"] == sent[e["event_id"]]["value"] and e["request_id"] == sent[e["event_id"]]["request_id"]
               for e in exported)


def test_a_statement_athena_refuses_stops_the_pass_with_its_reason(week) -> None:
    runner = athena.Athena(boto3.client("athena"), DATABASE, f"s3://{BUCKET}/athena-results/", poll=0.02)
    with pytest.raises(athena.QueryFailed, match="FAILED: .*no_such_table"):
        runner.execute(f"SELECT count(*) FROM {DATABASE}.no_such_table")
    assert len(runner.executed) == 1


def test_auto_runs_on_athena_from_the_threshold_of_bytes_under_the_pass(table, week) -> None:
    """The plan counts the bytes of the partitions the pass opens (a day of slack each side), by
    listing, and `auto` picks Athena from the threshold on."""
    from feedback_loop.analysis import weekly

    project, s3, _ = week
    listed = {o["Key"]: o["Size"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"eval-logs/{project}/") for o in page.get("Contents", [])}
    first, last = (SCENARIO.end - timedelta(days=3)).date(), (SCENARIO.end - timedelta(days=1)).date()
    days = {(first + timedelta(days=n)).isoformat() for n in range(-1, (last - first).days + 2)}
    expected = sum(size for key, size in listed.items() if key.split("/dt=")[1][:10] in days)
    assert 0 < expected < sum(listed.values())
    assert sum(size for _, size in weekly.eval_log_files(s3, BUCKET, project, first, last)) == expected
    assert weekly.choose_engine("auto", expected, expected) == "athena"
    assert weekly.choose_engine("auto", expected, expected + 1) == "embedded"
    assert weekly.choose_engine("embedded", expected, 0) == "embedded"
    [planned] = weekly.plan([project], SCENARIO.end, s3=s3, table=table, bucket=BUCKET, engine="auto", threshold=1,
                            window=timedelta(days=7), settings=SETTINGS)
    assert planned["engine"] == "athena" and planned["bytes"] > expected


def test_the_layout_names_what_each_table_reads() -> None:
    """Days of JSON Lines are read whole by the text table, days of Parquet only by the Parquet
    table, and a day of both: its JSON files by the text table, its Parquet files by name."""
    keys = ["eval-logs/p/dt=2026-05-01/a.jsonl.gz", "eval-logs/p/dt=2026-05-02/a.parquet",
            "eval-logs/p/dt=2026-05-02/b.pq", "eval-logs/p/dt=2026-05-03/a.json", "eval-logs/p/dt=2026-05-03/b.parquet",
            "eval-logs/p/dt=2026-05-04/_SUCCESS", "eval-logs/p/loose.parquet"]
    assert athena.Layout.of("bkt", keys) == athena.Layout(
        json_days=("2026-05-01", "2026-05-03"), parquet_days=("2026-05-02",),
        parquet_files=("s3://bkt/eval-logs/p/dt=2026-05-03/b.parquet",))


def test_order_and_layout_never_change_the_athena_report(table, week, tmp_path) -> None:
    """The order-and-layout guard on the Athena engine: the week's records shuffled, each day in a
    Parquet and a JSON Lines file, two days merged into one file, and the feedback exported in reverse
    order give, on Athena, the report the embedded engine gives on one file a day in time order and
    the feedback as stored: every figure to 1e-12 (tests/unit/test_order_invariance.py)."""
    import random

    from ..unit.test_order_invariance import differences, write_layout

    source, s3, _ = week
    project = "athena-shuffled"
    records, _ = simulate(SCENARIO)
    items = list(table.feedback_in_window(source, SCENARIO.start, datetime.now(timezone.utc), 8))
    since, until = SCENARIO.end - timedelta(days=7), SCENARIO.end
    changes = [*SCENARIO.changes(), Change(name="ab", effective_at=SCENARIO.start, variant_field="prompt_version",
                                           control="v7", treatment="v8")]
    start, measured = read_range(since, until, changes, SETTINGS)
    window = (since.timestamp(), until.timestamp())
    generated = datetime(2026, 1, 1, tzinfo=timezone.utc)

    embedded_feedback = FeedbackIndex()
    embedded_feedback.add_items(items)
    embedded_sides = change_sides(measured, since, until, SETTINGS)
    skipped: Counter[str] = Counter()
    logs = write_layout(records, tmp_path / "logs", None)
    embedded = scan_files(EvalLogSource(str(logs)), embedded_feedback, embedded_sides, start.timestamp(),
                          until.timestamp(), window, SETTINGS.segment_fields, skipped)
    expected = report("p", embedded, embedded_feedback, embedded_sides, since, until, SETTINGS, skipped,
                      generated_at=generated)

    rng = random.Random(4)
    by_day = defaultdict(list)
    for record in records:
        by_day[record["timestamp"][:10]].append(record)
    days = sorted(by_day)
    by_day[days[3]] += by_day.pop(days[4])  # two days in one folder's files
    for day, rows in by_day.items():
        rng.shuffle(rows)
        half = len(rows) // 2
        s3.put_object(Bucket=BUCKET, Key=f"eval-logs/{project}/dt={day}/a.parquet", Body=parquet(rows[:half]))
        s3.put_object(Bucket=BUCKET, Key=f"eval-logs/{project}/dt={day}/b.jsonl.gz",
                      Body=gzip.compress("".join(json.dumps(r) + "\n" for r in rows[half:]).encode()))
    collected, events, athena_sides, athena_skipped = on_athena(s3, project, items[::-1], measured, since, until,
                                                                start)
    athena_feedback = FeedbackIndex()
    athena_feedback.events = events
    got = report("p", collected, athena_feedback, athena_sides, since, until, SETTINGS, athena_skipped,
                 generated_at=generated)
    assert expected.report["counts"]["requests_with_human_score"] > 100 and skipped == athena_skipped
    assert differences(plain(expected.report), plain(got.report)) == []
