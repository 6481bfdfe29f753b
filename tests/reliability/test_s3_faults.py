"""S3 errors and latency between the weekly analysis and the emulated bucket: retried reads give the
same report; a bucket that keeps failing stops the run before anything is written (EventBridge's
retry of the scheduled invocation runs it again), never a report built from part of the logs."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict

import boto3
import pytest
from botocore.exceptions import ClientError

from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.run import run_analysis
from feedback_loop.simulate import Scenario, simulate

from ..analysis_data import write_feedback
from .faults import Faults

pytestmark = pytest.mark.integration
SCENARIO = Scenario(requests=3000, seed=13, days=7)
PROJECT = "s3-faults"


@pytest.fixture(scope="module")
def logs(stack, tmp_path_factory):
    records, events = simulate(SCENARIO)
    s3 = boto3.client("s3")
    by_day = defaultdict(list)
    for record in records:
        by_day[record["timestamp"][:10]].append(record)
    for day, rows in by_day.items():
        for part in range(2):  # two objects a day
            body = gzip.compress("".join(json.dumps(r) + "\n" for r in rows[part::2]).encode())
            s3.put_object(Bucket=stack.bucket, Key=f"eval-logs/{PROJECT}/dt={day}/part-{part}.jsonl.gz", Body=body)
    feedback = write_feedback(events, tmp_path_factory.mktemp("s3faults") / "feedback.jsonl")
    return f"s3://{stack.bucket}/eval-logs/{PROJECT}/", feedback


def analyse(uri: str, feedback_file, s3) -> dict:
    feedback = FeedbackIndex()
    feedback.add_export_file(feedback_file)
    return run_analysis(PROJECT, EvalLogSource(uri, s3), feedback, SCENARIO.changes(), SCENARIO.start,
                        SCENARIO.end).report


def comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("generated_at", "runtime")}


def test_errors_and_latency_are_retried_into_the_same_report(logs) -> None:
    uri, feedback = logs
    clean = analyse(uri, feedback, boto3.client("s3"))
    s3 = boto3.client("s3")  # as the analysis function makes it: botocore's default retries
    faults = Faults(s3)
    with faults.s3_errors(once=True, delay=0.02):
        faulty = analyse(uri, feedback, s3)
    assert faults.injected["s3:GetObject"] == 14 and faults.injected["s3:ListObjectsV2"] >= 1
    assert comparable(faulty) == comparable(clean)
    assert faulty["counts"]["eval_records"] == SCENARIO.requests


def test_a_bucket_that_keeps_failing_stops_the_run(logs) -> None:
    uri, feedback = logs
    s3 = boto3.client("s3")
    with Faults(s3).s3_errors(once=False, operations=("GetObject",)), pytest.raises(ClientError):
        analyse(uri, feedback, s3)
