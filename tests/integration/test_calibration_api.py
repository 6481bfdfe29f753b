"""The calibrator in service through HTTP on the local stack: deployed by the command line (refused
when its gate did not approve it), served with its id as ETag, applied by POST /v1/calibrate and by
the client equal to the fitted map on every input, registered as a change, behind its scope."""

from __future__ import annotations

import json

import numpy as np
import pytest

from feedback_loop.calibration import fit as calibration
from feedback_loop.calibration.curves import CalibrationMap, map_id
from feedback_loop.cli import main
from feedback_loop.client import FeedbackClient
from feedback_loop.logic.keys import create_key

from ..conftest import Api
from ..unit.test_calibration import judged

pytestmark = pytest.mark.integration
FIELDS = ("query_type",)


def local_state(stack, folder) -> str:
    """A data directory whose local.json names the session's stack (what `serve` writes)."""
    folder.mkdir(exist_ok=True)
    (folder / "local.json").write_text(json.dumps({"aws_endpoint": stack.aws_endpoint, "api_url": stack.api_url,
                                                   "table": stack.table_name, "bucket": stack.bucket}))
    return str(folder)


def test_a_deployed_calibrator_is_served_and_applied_as_fitted(stack, table, project, tmp_path, capsys) -> None:
    fitted, decision = calibration.fit_gated(calibration.labelled(judged(6000), FIELDS), FIELDS)
    assert decision.status == "Approved"
    (tmp_path / "map.json").write_text(fitted.map.dumps())
    identifier = map_id(fitted.map)
    api = Api(stack.api_url, create_key(table, project).plaintext)
    assert api.get("/v1/calibration").status_code == 404
    nothing = api.post("/v1/calibrate", {"items": [{"score": 0.5}]})
    assert nothing.status_code == 404 and "calibrate deploy" in nothing.json()["error"]["message"]

    data_dir = local_state(stack, tmp_path / "state")
    assert main(["--data-dir", data_dir, "calibrate", "deploy", "--map", str(tmp_path / "map.json"),
                 "--project", project, "--by", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["map_id"] == identifier

    served = api.get("/v1/calibration")
    assert served.status_code == 200 and served.headers["ETag"] == f'"{identifier}"', served.text
    assert CalibrationMap.loads(served.content).to_json() == json.loads(json.dumps(fitted.map.to_json()))
    assert api.get("/v1/calibration", headers={"If-None-Match": f'"{identifier}"'}).status_code == 304

    scores = [0.0, 1 / 9, 0.25, 0.5, 0.61, 7 / 9, 1.0]
    kinds = ["code", "chat", "summarize", "poetry", None]
    items = [{"score": s, "metadata": {"query_type": k} if k else {}} for s in scores for k in kinds]
    answer = api.post("/v1/calibrate", {"items": items})
    assert answer.status_code == 200 and answer.json()["calibration_map"] == identifier
    for item, result in zip(items, answer.json()["results"]):
        expected = fitted.map.apply(item["score"], item["metadata"])
        assert result["p_good"] == pytest.approx(expected["p_good"], abs=1e-12)
        assert result["expected_human"] == pytest.approx(expected["expected_human"], abs=1e-12)
        assert result["needs_review"] == expected["needs_review"]
    # the vectorised prediction of the fitted map, on the same inputs
    probe = calibration.labelled([{"request_id": str(i), "overall": it["score"], "human_score": 0.0,
                                   "segments": it["metadata"]} for i, it in enumerate(items)], FIELDS)
    assert [r["p_good"] for r in answer.json()["results"]] == pytest.approx(
        calibration.predict(fitted.map.p_good, probe), abs=1e-12)

    client = FeedbackClient(stack.api_url, api.headers["Authorization"].split()[1])
    assert client.calibrate(0.61, {"query_type": "code"}) == fitted.map.apply(0.61, {"query_type": "code"})
    assert client.calibrate_batch(items[:3])["results"] == answer.json()["results"][:3]

    bad = api.post("/v1/calibrate", {"items": [{"score": 0.5}, {"score": 1.5}]})
    assert bad.status_code == 422 and [f["field"] for f in bad.json()["error"]["fields"]] == ["items.1.score"]
    assert api.post("/v1/calibrate", {"items": []}).status_code == 422
    browser = Api(stack.api_url, create_key(table, project, scopes=["feedback:write"]).plaintext)
    assert browser.get("/v1/calibration").status_code == 403
    assert f"calibrator-{identifier}" in {c["name"] for c in api.get("/v1/changes").json()["changes"]}


def test_a_map_its_gate_did_not_approve_needs_force(stack, table, project, tmp_path) -> None:
    rows = judged(3000)
    fitted = calibration.fit(calibration.labelled(rows))  # no held-out part: no gate
    (tmp_path / "map.json").write_text(fitted.map.dumps())
    data_dir = local_state(stack, tmp_path / "state")
    with pytest.raises(SystemExit, match="gate says nothing.*--force"):
        main(["--data-dir", data_dir, "calibrate", "deploy", "--map", str(tmp_path / "map.json"), "--project", project])
    assert main(["--data-dir", data_dir, "calibrate", "deploy", "--map", str(tmp_path / "map.json"),
                 "--project", project, "--force"]) == 0
    api = Api(stack.api_url, create_key(table, project).plaintext)
    result = api.post("/v1/calibrate", {"items": [{"score": 0.3}]}).json()["results"][0]
    assert result["needs_review"] is None and result["p_good"] == pytest.approx(fitted.map.apply(0.3)["p_good"])
    (tmp_path / "bad.json").write_text('{"format": 1}')
    with pytest.raises(SystemExit, match="not a calibration map"):
        main(["--data-dir", data_dir, "calibrate", "deploy", "--map", str(tmp_path / "bad.json"), "--project", project])
    assert np.isfinite(result["expected_human"])


def test_the_eval_logger_sends_the_calibrated_score_beside_the_raw_one(stack, table, project, tmp_path) -> None:
    import gzip

    import boto3

    from feedback_loop.client import EvalLogger

    key = create_key(table, project).plaintext
    records = [{"request_id": f"cal-{i}", "timestamp": "2026-05-12T10:00:00Z", "prompt": "p", "output": "o",
                "eval_scores": {"overall": i / 9}, "metadata": {"query_type": ["code", "chat"][i % 2]}}
               for i in range(10)]
    before = EvalLogger(stack.api_url, key, flush_interval=0.1, calibrate=True)
    before.log(records[0])
    before.close(timeout=30)
    assert before.accepted == 1 and before.uncalibrated == 1  # no calibrator yet: sent as it was

    fitted, _ = calibration.fit_gated(calibration.labelled(judged(6000), FIELDS), FIELDS)
    (tmp_path / "map.json").write_text(fitted.map.dumps())
    assert main(["--data-dir", local_state(stack, tmp_path / "state"), "calibrate", "deploy",
                 "--map", str(tmp_path / "map.json"), "--project", project]) == 0
    logger = EvalLogger(stack.api_url, key, flush_interval=0.1, calibrate=True)
    for record in records[1:]:
        logger.log(record)
    logger.close(timeout=30)
    assert (logger.accepted, logger.refused, logger.uncalibrated) == (9, 0, 0)
    s3 = boto3.client("s3")
    stored = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=f"eval-logs/{project}/"):
        for item in page.get("Contents", []):
            body = gzip.decompress(s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read())
            stored.update({r["request_id"]: r for r in map(json.loads, body.decode().splitlines())})
    assert "calibrated" not in stored["cal-0"]["eval_scores"]
    for record in records[1:]:
        got, expected = stored[record["request_id"]], fitted.map.apply(record["eval_scores"]["overall"], record["metadata"])
        assert got["eval_scores"]["overall"] == record["eval_scores"]["overall"]
        assert got["eval_scores"]["calibrated"] == pytest.approx(expected["p_good"], abs=1e-12)
        assert got["metadata"]["calibration_map"] == map_id(fitted.map)
        assert got["metadata"]["needs_review"] == ("true" if expected["needs_review"] else "false")
