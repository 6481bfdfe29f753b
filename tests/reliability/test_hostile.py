"""Hostile bodies: what Python's JSON parser would crash on or quietly accept (deep nesting, huge
integers, NaN and infinities, invalid UTF-8) is refused with a 4xx naming the field, never a 5xx,
and nothing is stored."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import requests

from feedback_loop.dal import items

pytestmark = pytest.mark.integration

BASE = '{"request_id": "%s", "feedback_type": "implicit_usage", "value": true, '
CASES = {
    "deeply nested array": (BASE + '"metadata": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}", 400, "body"),
    "deeply nested object": (BASE + '"metadata": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}", 400, "body"),
    "nested deeper than allowed": (BASE + '"metadata": ' + '{"a": ' * 60 + "1" + "}" * 60 + "}", 422, "metadata"),
    "infinity": (BASE + '"metadata": {"a": 1e999}}', 400, "body"),
    "NaN": (BASE + '"metadata": {"a": NaN}}', 400, "body"),
    "5,000-digit integer": (BASE + '"metadata": {"a": ' + "9" * 5000 + "}}", 400, "body"),
    "metadata over 4 KB": (BASE + '"metadata": {' + ", ".join(f'"k{i}": 1' for i in range(600)) + "}}", 422,
                           "metadata"),
    "event_id of 10,000 characters": (BASE + '"event_id": "' + "e" * 10_000 + '"}', 422, "event_id"),
    "lone surrogate in a comment": ('{"request_id": "%s", "feedback_type": "explicit_text_comment", '
                                    '"value": "a\\ud800b"}', 422, "value"),
    "a list instead of an object": ('["%s"]', 422, "body"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_bodies_are_refused_naming_the_field(stack, table, project, api_key, case) -> None:
    template, status, field = CASES[case]
    request_id = f"hostile-{abs(hash(case)) % 10**8}"
    body = (template % request_id).encode()
    answer = requests.post(f"{stack.api_url}/v1/feedback", data=body, timeout=60,
                           headers={"x-api-key": api_key, "Content-Type": "application/json"})
    assert answer.status_code == status, answer.text[:300]
    assert field in [f["field"] for f in answer.json()["error"]["fields"]]
    assert list(table.query_partition(items.request_pk(project, request_id))) == []


def test_invalid_utf8_is_refused(stack, api_key) -> None:
    body = b'{"request_id": "r", "feedback_type": "implicit_usage", "value": true, "user_id": "\xff\xfe"}'
    answer = requests.post(f"{stack.api_url}/v1/feedback", data=body, timeout=30,
                           headers={"x-api-key": api_key, "Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["fields"][0]["field"] == "body"


def test_a_hostile_batch_is_refused_whole_and_a_bad_item_alone(stack, table, project, api_key) -> None:
    deep = '{"events": [' + (BASE % "hb-1") + '"metadata": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}]}"
    answer = requests.post(f"{stack.api_url}/v1/feedback/batch", data=deep.encode(), timeout=30,
                           headers={"x-api-key": api_key, "Content-Type": "application/json"})
    assert answer.status_code == 400
    mixed = {"events": [{"request_id": "hb-2", "feedback_type": "implicit_usage", "value": True, "event_id": "ok"},
                        {"request_id": "hb-2", "feedback_type": "explicit_rating", "value": 9, "event_id": "bad"}]}
    answer = requests.post(f"{stack.api_url}/v1/feedback/batch", json=mixed, timeout=30, headers={"x-api-key": api_key})
    assert [r["status"] for r in answer.json()["results"]] == [201, 422]
    assert [i["event_id"] for i in table.query_partition(items.request_pk(project, "hb-2"))] == ["ok"]


def test_comments_and_edits_are_stored_as_given(client) -> None:
    payload = '<script>alert(1)</script> \'; DROP TABLE feedback; -- \u202e \u0000 \U0001f600'
    client.comment("hostile-text", payload, user_id="u")
    client.edited("hostile-text", payload)
    summary = client.summary("hostile-text")
    assert summary.comments[0].text == payload  # data, byte for byte; the report and widget escape it


def _nested(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


@pytest.mark.parametrize("levels", [330, 600, 890])
def test_an_item_nested_hundreds_deep_is_refused_alone_and_its_batch_stored(stack, table, project, api_key,
                                                                          levels) -> None:
    request_id = f"deep-batch-{levels}"
    ok = json.dumps({"request_id": request_id, "feedback_type": "implicit_usage", "value": True, "event_id": "ok"})
    deep = (f'{{"request_id": "{request_id}", "feedback_type": "implicit_usage", "value": true, '
            f'"event_id": "deep", "metadata": {_nested(levels)}}}')
    answer = requests.post(f"{stack.api_url}/v1/feedback/batch", data=f'{{"events": [{ok}, {deep}]}}'.encode(),
                           timeout=60, headers={"x-api-key": api_key, "Content-Type": "application/json"})
    assert answer.status_code == 207, answer.text[:300]
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [201, 422]
    assert [f["field"] for f in results[1]["errors"]] == ["metadata"]
    assert [i["event_id"] for i in table.query_partition(items.request_pk(project, request_id))] == ["ok"]


def test_an_eval_record_nested_deep_or_in_the_future_is_refused_naming_the_field(stack, api_key) -> None:
    now = datetime.now(timezone.utc)
    base = {"timestamp": now.isoformat(), "eval_scores": {"overall": 0.5}}
    records = [{**base, "request_id": "deep-prompt", "prompt": json.loads(_nested(256))},
               {**base, "request_id": "deep-output", "output": [json.loads(_nested(40))]},
               {**base, "request_id": "deep-extra", "trace": json.loads(_nested(40))},
               {**base, "request_id": "future", "timestamp": "2099-01-01T00:00:00Z"},
               {**base, "request_id": "fine", "prompt": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}]
    answer = requests.post(f"{stack.api_url}/v1/evals", json={"records": records}, timeout=60,
                           headers={"x-api-key": api_key})
    assert answer.status_code == 207, answer.text[:300]
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [422, 422, 422, 422, 201]
    assert [[f["field"] for f in r["errors"]] for r in results[:4]] == [["prompt"], ["output"], ["trace"],
                                                                       ["timestamp"]]
    assert "must be nested at most 32 levels deep" in results[2]["errors"][0]["message"]


def test_a_poison_eval_record_in_s3_does_not_stop_the_projects_week(stack, table) -> None:
    """A record nested 256 levels deep (orjson writes 255) and one nested 1,100 (past what orjson
    reads), written to S3 by hand as the API would refuse them, each with a thumbs-up: the weekly
    state machine still writes the report and the datasets and announces AnalysisCompleted."""
    import boto3

    from feedback_loop.client import FeedbackClient
    from feedback_loop.logic.keys import create_key

    project = "poison-week"
    end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    moment = (end - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f'{{"request_id": "ok-{i}", "timestamp": "{moment}", "prompt": "p", "output": "o", '
             f'"eval_scores": {{"overall": {i / 10}}}, "metadata": {{"user_cohort": "pro"}}}}' for i in range(10)]
    lines.append(f'{{"request_id": "poison-256", "timestamp": "{moment}", "prompt": {_nested(256)}, '
                 f'"output": "o", "eval_scores": {{"overall": 0.9}}}}')
    lines.append(f'{{"request_id": "poison-1100", "timestamp": "{moment}", "prompt": "p", '
                 f'"output": {_nested(1100)}, "eval_scores": {{"overall": 0.9}}}}')
    boto3.client("s3").put_object(Bucket=stack.bucket, Key=f"eval-logs/{project}/dt={moment[:10]}/app.jsonl",
                                  Body="\n".join(lines).encode())
    client = FeedbackClient(stack.api_url, create_key(table, project).plaintext)
    sent = client.send_batch([{"request_id": r, "feedback_type": "explicit_thumbs_up", "value": True,
                               "timestamp": moment, "event_id": f"up-{r}"}
                              for r in ["poison-256", "poison-1100", *(f"ok-{i}" for i in range(10))]])
    assert sent.rejected == 0
    execution = stack.states.execute("AnalysisStateMachine", {"time": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                              "engine": "embedded", "projects": [project]})
    assert execution["status"] == "SUCCEEDED" and execution["output"]["results"][0]["failed"] is False, execution
    prefix = f"reports/{project}/{end:%Y-%m-%dT%H-%M-%SZ}/"
    s3 = boto3.client("s3")
    report = json.loads(s3.get_object(Bucket=stack.bucket, Key=prefix + "report.json")["Body"].read())
    assert report["counts"]["requests_with_human_score"] == 12
    labelled = {entry["request_id"]: entry for entry in map(json.loads, s3.get_object(
        Bucket=stack.bucket, Key=prefix + "labelled.jsonl")["Body"].read().splitlines())}
    assert json.loads(labelled["poison-256"]["prompt"]) == json.loads(_nested(256))  # kept as its JSON text
    assert isinstance(labelled["poison-1100"]["output"], str) and labelled["ok-3"]["prompt"] == "p"
    stack.bus.wait_for("AnalysisCompleted", where=lambda event: event["detail"]["project"] == project)


def _listening(port: int) -> set[str]:
    """The IPv4 addresses a TCP port of this machine listens on (/proc/net/tcp: no traffic sent)."""
    found = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # LISTEN
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_the_emulator_stays_on_loopback_whatever_address_the_api_is_given(tmp_path) -> None:
    """serve --host 0.0.0.0 in its own process (a second stack in this one would reset the session's)."""
    from ..serving import serve

    served = serve(tmp_path, extra=("--host", "0.0.0.0"))  # noqa: S104 (what a user may ask for)
    try:
        state = json.loads((tmp_path / "local.json").read_text())
        aws_port = int(state["aws_endpoint"].rsplit(":", 1)[1])
        api_port = int(served.url.rsplit(":", 1)[1])
        assert state["aws_endpoint"].startswith("http://127.0.0.1:")
        assert _listening(aws_port) == {"127.0.0.1"} and _listening(api_port) == {"0.0.0.0"}
    finally:
        served.stop()


def _otlp_bomb(inflated_mib: int) -> bytes:
    """A gzip OTLP/JSON export of a few hundred KiB that inflates to `inflated_mib` MiB."""
    import gzip

    span = {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "chat",
            "startTimeUnixNano": "1700000000000000000",
            "attributes": [{"key": "gen_ai.input.messages", "value": {"stringValue": "x" * 4000}}]}
    one = json.dumps(span)
    count = inflated_mib * 1024 * 1024 // len(one)
    document = '{"resourceSpans": [{"scopeSpans": [{"spans": [' + ",".join([one] * count) + "]}]}]}"
    return gzip.compress(document.encode(), compresslevel=9)


def test_a_gzip_bomb_is_a_413_read_within_the_functions_memory(stack, api_key) -> None:
    import subprocess
    import sys
    import time

    body = _otlp_bomb(60)
    assert len(body) < 400 * 1024
    started = time.monotonic()
    answer = requests.post(f"{stack.api_url}/v1/traces", data=body, timeout=60, headers={
        "x-api-key": api_key, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert answer.status_code == 413, answer.text[:300]  # not a 503 that exporters would send again
    assert answer.json()["error"]["fields"][0]["field"] == "body" and time.monotonic() - started < 10
    # what reading it costs, alone in a process as in the function: well under its 512 MB
    code = ("import resource, sys\nfrom feedback_loop.interop import otlp\nbody = sys.stdin.buffer.read()\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    otlp.decode('traces', body, 'application/json', 'gzip')\nexcept otlp.OtlpTooLarge:\n    pass\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")
    grown = subprocess.run([sys.executable, "-c", code], input=body, capture_output=True, timeout=60)
    assert grown.returncode == 0, grown.stderr[-500:]
    assert int(grown.stdout) < 64  # MB: the inflater stops at the limit


@pytest.mark.parametrize("path", ["/v1//changes", "/v1/feedback/", "/v1/changes/", "/v1/requests//feedback",
                                  "/v1/requests/a%2Fb/feedback", "/v1/requests/x/feedback/"])
def test_odd_paths_are_api_gateways_403_not_a_500_or_a_401_without_reason(stack, api_key, path) -> None:
    for method in ("GET", "POST"):
        answer = requests.request(method, stack.api_url + path, headers={"x-api-key": api_key}, json={}, timeout=10,
                                  allow_redirects=False)
        assert (answer.status_code, answer.json()) == (403, {"message": "Missing Authentication Token"}), path


def test_a_half_sent_request_is_closed_after_the_read_timeout(stack, monkeypatch) -> None:
    import socket
    import time

    from feedback_loop.local import gateway

    monkeypatch.setattr(gateway._TimedRequestHandler, "timeout", 1)
    host, port = stack.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as half:
        half.sendall(b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        half.recv(1024)  # returns when the gateway closes; without a read timeout this waits 10 s and raises
        assert time.monotonic() - started < 5


def test_a_template_in_the_working_directory_is_not_trusted(tmp_path, monkeypatch) -> None:
    from feedback_loop.local.stack import find_template

    (tmp_path / "template.yaml").write_text("Resources: {}\n")  # someone else's folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEEDBACK_LOOP_TEMPLATE", raising=False)
    found = find_template()
    assert found != (tmp_path / "template.yaml").resolve() and found.parent.joinpath("functions").is_dir()
    assert find_template(tmp_path / "template.yaml") == (tmp_path / "template.yaml").resolve()  # asked for by name


SNAPSHOT_RUN = """
import json, sys
from feedback_loop.local.stack import LocalStack
with LocalStack(data_dir=sys.argv[1], persist=True, snapshot_seconds=3600) as stack:
    stack.snapshot()
    print(json.dumps(stack.restored))
"""


def test_the_data_directory_is_the_users_alone_and_a_foreign_pickle_is_not_loaded(tmp_path) -> None:
    """Each stack in its own process: a second stack in this one would reset the session's."""
    import os
    import pickle
    import stat
    import subprocess
    import sys

    from feedback_loop.local.snapshots import SAGEMAKER, SNAPSHOT_DIR

    from ..conftest import ROOT

    data = tmp_path / "state"

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", SNAPSHOT_RUN, str(data)], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)

    first = run()
    assert first.returncode == 0, first.stderr[-2000:]
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert (data / SNAPSHOT_DIR / SAGEMAKER).exists()

    class Planted:  # what someone else's folder could hold: unpickling it would run this
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (data / SNAPSHOT_DIR / SAGEMAKER).write_bytes(pickle.dumps(Planted()))
    second = run()
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads(second.stdout.splitlines()[-1])["SageMaker resources"] == 0
    assert not (tmp_path / "pwned").exists()
    assert "was not written by this user's local stack" in second.stderr


def test_a_file_name_with_an_ansi_escape_is_printed_escaped(capsys) -> None:
    from feedback_loop.analysis.run import print_progress

    print_progress("[1/1] eval-logs/p/dt=2026-12-01/\x1b[2J\x1b]0;owned\x07.jsonl (0.1 s)")
    shown = capsys.readouterr().err
    assert "\x1b" not in shown and "\x07" not in shown and "\\x1b[2J" in shown and shown.endswith(".jsonl (0.1 s)\n")
