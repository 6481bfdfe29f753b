"""The managed eval-log pipe on the local stack: POST /v1/evals → API function → the eval-log
delivery stream (Firehose's API, dynamic partitioning as the template configures it) → gzip JSON
Lines under eval-logs/<project>/dt=YYYY-MM-DD/ → the analysis reads them."""

from __future__ import annotations

import gzip
import json
import socket
import time
import uuid
from datetime import datetime, timezone

import boto3
import pytest

from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.run import run_analysis
from feedback_loop.client import EvalLogger, FeedbackClient
from feedback_loop.simulate import Scenario, simulate

from ..conftest import Api

pytestmark = pytest.mark.integration


def _objects(stack, project: str) -> dict[str, list[dict]]:
    """Every eval-log file of the project, by key, its records."""
    s3 = boto3.client("s3")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=f"eval-logs/{project}/"):
        for o in page.get("Contents", []):
            body = gzip.decompress(s3.get_object(Bucket=stack.bucket, Key=o["Key"])["Body"].read())
            found[o["Key"]] = [json.loads(line) for line in body.decode().splitlines()]
    return found


def _record(request_id: str, at: str = "2026-05-12T10:00:00Z", overall: float = 0.8) -> dict:
    return {"request_id": request_id, "timestamp": at, "prompt": "Summarize this.", "output": "A summary.",
            "eval_scores": {"overall": overall}, "metadata": {"user_cohort": "pro", "query_type": "summarize"}}


def test_records_land_in_their_day_partition_once(stack, http: Api, project: str) -> None:
    records = [_record("r-1"), _record("r-2", "2026-05-13T23:59:59+00:00"), _record("r-3", "2026-05-13T20:00:00-05:00")]
    first = http.post("/v1/evals", {"records": records})
    assert first.status_code == 207, first.text
    body = first.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 0, 0)
    assert [r["request_id"] for r in body["results"]] == ["r-1", "r-2", "r-3"]
    # the same batch again: accepted before, nothing delivered twice; a reused id with another record: 409
    again = http.post("/v1/evals", {"records": [*records, _record("r-1", overall=0.1)]}).json()
    assert [r["status"] for r in again["results"]] == [200, 200, 200, 409]
    assert again["results"][3]["errors"][0]["field"] == "request_id"
    files = _objects(stack, project)
    by_day = {key.split("/")[2]: [r["request_id"] for r in rows] for key, rows in files.items()}
    # the day in UTC: 20:00 at -05:00 is the next day
    assert sorted(by_day) == ["dt=2026-05-12", "dt=2026-05-13", "dt=2026-05-14"]
    assert by_day == {"dt=2026-05-12": ["r-1"], "dt=2026-05-13": ["r-2"], "dt=2026-05-14": ["r-3"]}
    assert all(key.endswith(".jsonl.gz") for key in files)
    [stored] = files[next(k for k in files if "dt=2026-05-12" in k)]
    assert {k: v for k, v in stored.items() if k != "_feedback_loop"} == records[0]  # as sent
    assert stored["_feedback_loop"]["project"] == project


def test_invalid_records_are_refused_naming_the_field_and_the_rest_accepted(stack, http: Api, project: str) -> None:
    records = [_record("ok-1"), {**_record("bad-1"), "eval_scores": {"overall": 1.7}}, {"timestamp": "2026-05-12"},
               _record("bad/2")]
    response = http.post("/v1/evals", {"records": records})
    assert response.status_code == 207
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 422, 422, 422]
    fields = [{e["field"] for e in r["errors"]} for r in results[1:]]
    assert "eval_scores.overall" in fields[0] and {"request_id", "eval_scores"} <= fields[1]
    assert "request_id" in fields[2]
    assert [r["request_id"] for rows in _objects(stack, project).values() for r in rows] == ["ok-1"]
    # a body that is not a batch of objects (as for feedback batches): refused whole, naming the item
    refused = http.post("/v1/evals", {"records": [_record("ok-2"), "not an object"]})
    assert refused.status_code == 422 and "records.1" in {f["field"] for f in refused.json()["error"]["fields"]}
    assert http.post("/v1/evals", {"records": []}).status_code == 422
    assert http.post("/v1/evals", {"items": [_record("x")]}).status_code == 422


def test_the_eval_logger_batches_in_the_background_and_the_analysis_reads_the_records(
        stack, api_key: str, project: str, tmp_path) -> None:
    """An app logs a simulated week through EvalLogger (log() returns at once) and sends its users'
    feedback through the client; the analysis of the bucket's files reads every record."""
    scenario = Scenario(requests=1_200, seed=13, start=datetime(2026, 5, 4, tzinfo=timezone.utc), days=7)
    records, events = simulate(scenario)
    logger = EvalLogger(stack.api_url, api_key, batch_size=200, flush_interval=0.2)
    for record in records:
        assert logger.log(record) is True
    logger.close(timeout=60)
    assert (logger.accepted, logger.refused, logger.dropped) == (len(records), 0, 0)
    files = _objects(stack, project)
    assert sum(len(rows) for rows in files.values()) == len(records)
    feedback = FeedbackIndex()
    feedback.add_export_lines([json.dumps(e).encode() for e in events])
    source = EvalLogSource(f"s3://{stack.bucket}/eval-logs/{project}/", boto3.client("s3"))
    report = run_analysis(project, source, feedback, [], scenario.start, scenario.end).report
    assert report["counts"]["eval_records"] == len(records) and report["counts"]["skipped_lines"] == 0
    assert report["counts"]["requests_with_human_score"] > 50


def test_the_eval_logger_never_blocks_and_counts_what_it_drops(stack, api_key: str) -> None:
    """An API that does not answer: log() still returns at once; past the queue's size records are
    dropped (counted), never waited for; what could not be sent is counted as failed. Records the
    API refuses are counted, not resent."""
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        logger = EvalLogger(f"http://127.0.0.1:{silent.getsockname()[1]}", "key", batch_size=1, max_queue=1,
                            timeout=2, retries=0)
        started = time.monotonic()
        results = [logger.log(_record(f"q-{i}")) for i in range(8)]
        assert time.monotonic() - started < 0.5
        assert results.count(False) == logger.dropped >= 6
        logger.close(timeout=30)
    assert logger.failed == 8 - logger.dropped and logger.accepted == 0
    refusing = EvalLogger(stack.api_url, api_key, flush_interval=0.1)
    refusing.log({"request_id": "no-scores", "timestamp": "2026-05-12T10:00:00Z"})
    refusing.log(_record(f"fine-{uuid.uuid4().hex[:8]}"))
    refusing.close(timeout=30)
    assert (refusing.accepted, refusing.refused, refusing.failed) == (1, 1, 0)
    assert not refusing.log(_record("after-close")) and refusing.dropped == 1


def test_the_client_sends_feedback_for_records_it_logged(stack, api_key: str) -> None:
    client = FeedbackClient(stack.api_url, api_key)
    result = client.log_evals([_record("c-1"), _record("c-1")])
    assert [r.status for r in result.results] == [201, 200]
