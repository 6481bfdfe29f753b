"""Retraining on the local stack: AnalysisCompleted → retrain function → SageMaker job really run."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from datetime import datetime, timezone

import boto3
import pytest

from feedback_loop.analysis.model import split_of
from feedback_loop.retraining.launch import claim_key, job_name

pytestmark = pytest.mark.integration
END = datetime(2026, 5, 18, tzinfo=timezone.utc)
GOOD = ["Refunds within 30 days, pro rata; send the order id to billing.", "Use sorted(set(x), key=x.index)."]
BAD = ["Refunds are possible. Check the website.", "def f(x): return list(set(x))  # loses order"]


def labelled(project: str, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        good = i % 2 == 0
        request_id = f"{project}-{i}"
        rows.append({"request_id": request_id, "timestamp": f"2026-05-1{i % 7 + 1}T10:00:00Z",
                     "prompt": "How do refunds work?" if i % 4 < 2 else "Deduplicate a list, keep order.",
                     "output": (GOOD if good else BAD)[i % 2] + f" (variant {i % 5})", "overall": 0.8,
                     "human_score": 1.0 if good else 0.0, "human_label": "good" if good else "bad",
                     "weight": 1.0, "split": split_of(request_id, 0.2)})
    return rows


def publish(stack, project: str, rows: list[dict], figures: dict) -> dict:
    s3 = boto3.client("s3")
    folder = f"reports/{project}/{END:%Y-%m-%dT%H-%M-%SZ}/"
    s3.put_object(Bucket=stack.bucket, Key=folder + "labelled.jsonl",
                  Body="".join(json.dumps(r) + "\n" for r in rows).encode())
    detail = {"project": project, "window": {"since": "2026-05-11T00:00:00Z", "until": "2026-05-18T00:00:00Z"},
              "report": f"s3://{stack.bucket}/{folder}report.json", **figures}
    boto3.client("events").put_events(Entries=[{"Source": "feedback-loop", "DetailType": "AnalysisCompleted",
                                                "Detail": json.dumps(detail), "EventBusName": stack.bus_name}])
    return detail


def wait_for_retrain(stack, project: str, count: int = 1) -> list:
    found = stack.bus.wait_for("AnalysisCompleted", count=count, timeout=60,
                               where=lambda event: event["detail"].get("project") == project)
    assert len(found) == count
    return found


def test_analysis_completed_launches_one_real_training_job(stack, table) -> None:
    project = "retrain-sim"
    detail = publish(stack, project, labelled(project, 240), {"disagreement_rate": 0.35, "spearman": 0.3})
    [delivery] = wait_for_retrain(stack, project)
    assert delivery.errors == {}
    result = delivery.results["RetrainFunction"]
    name = job_name(project, END)
    assert result["job_name"] == name and result["labels"] == 240 and result["decision"]["launch"]

    run = stack.sagemaker.wait_for(name, timeout=600)
    assert run.status == "Completed", run.log[-2000:]
    [state] = stack.bus.wait_for("SageMaker Training Job State Change",
                                 where=lambda event: event["detail"]["TrainingJobName"] == name)
    event = state.event
    assert event["source"] == "aws.sagemaker"
    artifacts = event["detail"]["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifacts == f"s3://{stack.bucket}/models/{project}/{name}/output/model.tar.gz"
    assert event["detail"]["Tags"] == {"feedback-loop:project": project, "feedback-loop:window": "2026-05-18T00:00:00.000000Z",
                                       "feedback-loop:kind": "finetune"}
    body = boto3.client("s3").get_object(Bucket=stack.bucket, Key=artifacts.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = set(tar.getnames())
        metrics = json.load(tar.extractfile("metrics.json"))
    assert {"head.json", "metrics.json", "validation_predictions.jsonl", "code/inference.py"} <= names
    assert metrics["n_train"] + metrics["n_validation"] == 240
    assert metrics["hyperparameters"]["mode"] == "frozen"  # the local stack's default; AWS fine-tunes
    assert metrics["validation"]["auroc"] > 0.9  # the planted texts separate cleanly
    assert "validation:auroc=" in run.log

    # the same event again (EventBridge delivers at least once): no second job
    publish(stack, project, labelled(project, 240), {"disagreement_rate": 0.35, "spearman": 0.3})
    deliveries_now = wait_for_retrain(stack, project, count=2)
    again = deliveries_now[-1].results["RetrainFunction"]
    assert again["already_launched"] and again["job_name"] == name
    jobs = [j["TrainingJobName"] for j in boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]]
    assert jobs.count(name) == 1
    assert table.get(**claim_key(project, "2026-05-18T00:00:00.000000Z"))["job_name"] == name
    assert detail["project"] == project


def test_no_job_without_enough_labels_or_reason(stack) -> None:
    project = "retrain-few"
    publish(stack, project, labelled(project, 20), {"disagreement_rate": 0.5, "spearman": 0.1})
    [delivery] = wait_for_retrain(stack, project)
    result = delivery.results["RetrainFunction"]
    assert result["job_name"] is None and not result["decision"]["launch"]
    assert "binary human labels" in result["decision"]["reasons"][0]


def test_the_challenger_is_gated_against_the_champion_and_registered_once(stack) -> None:
    project = "retrain-sim"  # trained by the first test
    name = job_name(project, END)
    [gated] = stack.bus.wait_for("EvaluatorGated", timeout=120,
                                 where=lambda event: event["detail"]["training_job"] == name)
    outcome = gated.event["detail"]
    # champion: the eval logs' constant 0.8 cannot rank; the challenger separates the planted texts
    assert outcome["gate"]["champion"]["auroc"] == 0.5
    assert outcome["gate"]["challenger"]["auroc"] > 0.9
    assert outcome["status"] == "Approved", outcome["reasons"]
    sagemaker = boto3.client("sagemaker")
    packages = sagemaker.list_model_packages(ModelPackageGroupName=f"feedback-loop-{project}")["ModelPackageSummaryList"]
    assert len(packages) == 1
    described = sagemaker.describe_model_package(ModelPackageName=outcome["model_package_arn"])
    assert described["ModelApprovalStatus"] == "Approved"
    # (moto does not return CustomerMetadataProperties, which carry the same figures in AWS)
    assert described["ApprovalDescription"] == outcome["reasons"][0]
    assert "held-out labels" in described["ModelPackageDescription"]
    assert described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == outcome["model_data"]

    # SageMaker's event delivered again: handled once
    [state] = stack.bus.wait_for("SageMaker Training Job State Change",
                                 where=lambda event: event["detail"]["TrainingJobName"] == name)
    again = stack.bus.dispatch(state.event)
    stack.bus.wait_for("SageMaker Training Job State Change", count=2,
                       where=lambda event: event["detail"]["TrainingJobName"] == name)
    assert again.results["RegisterFunction"]["already_handled"]
    assert len(sagemaker.list_model_packages(ModelPackageGroupName=f"feedback-loop-{project}")["ModelPackageSummaryList"]) == 1


def test_a_failed_training_job_is_reported_and_never_registered(stack) -> None:
    project = "retrain-fails"
    rows = [{**r, "human_label": "good", "human_score": 1.0} for r in labelled(project, 240)]  # one class only
    publish(stack, project, rows, {"disagreement_rate": 0.5, "spearman": 0.1})
    name = job_name(project, END)
    assert wait_for_retrain(stack, project)[0].results["RetrainFunction"]["job_name"] == name
    run = stack.sagemaker.wait_for(name, timeout=300)
    assert run.status == "Failed" and "not enough labelled examples" in run.failure
    [failed] = stack.bus.wait_for("EvaluatorTrainingFailed", timeout=60,
                                  where=lambda event: event["detail"]["training_job"] == name)
    assert "not enough labelled examples" in failed.event["detail"]["reason"]
    groups = boto3.client("sagemaker").list_model_package_groups()["ModelPackageGroupSummaryList"]
    assert f"feedback-loop-{project}" not in [g["ModelPackageGroupName"] for g in groups]


def test_the_approved_evaluator_is_deployed_recorded_as_a_change_and_serves(stack, table) -> None:
    from feedback_loop.logic.changes import list_changes

    project = "retrain-sim"
    [deployed] = stack.bus.wait_for("EvaluatorDeployed", timeout=120,
                                    where=lambda event: event["detail"]["project"] == project)
    outcome = deployed.event["detail"]
    assert outcome["action"] == "created" and outcome["endpoint"] == f"feedback-loop-{project}-evaluator"
    endpoint = boto3.client("sagemaker").describe_endpoint(EndpointName=outcome["endpoint"])
    assert endpoint["EndpointConfigName"] == outcome["endpoint_config"]
    alarms = boto3.client("cloudwatch").describe_alarms(AlarmNames=outcome["alarms"])["MetricAlarms"]
    assert {a["MetricName"] for a in alarms} == {"Invocation5XXErrors", "ModelLatency"}
    topic = stack.template.arn("AlarmTopic")  # the stack's alarm topic hears the endpoint's alarms too
    assert all(a["AlarmActions"] == [topic] and a["OKActions"] == [topic] for a in alarms)
    assert "evaluator-v1" in [c.name for c in list_changes(table, project)]

    runtime = boto3.client("sagemaker-runtime")  # through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, as in AWS
    # the labelled rows pair GOOD[0] with good labels and BAD[1] with bad ones
    body = {"inputs": [{"prompt": "How do refunds work?", "output": GOOD[0] + " (variant 2)"},
                       {"prompt": "Deduplicate a list, keep order.", "output": BAD[1] + " (variant 3)"}]}
    response = runtime.invoke_endpoint(EndpointName=outcome["endpoint"], ContentType="application/json",
                                       Accept="application/json", Body=json.dumps(body))
    scores = json.loads(response["Body"].read())["scores"]
    assert scores[0] > 0.5 > scores[1]

    import requests

    bad = requests.post(f"{stack.api_url}/endpoints/{outcome['endpoint']}/invocations", data='{"inputs": "x"}',
                        headers={"Content-Type": "application/json"}, timeout=30)
    assert bad.status_code == 400 and "'inputs' must be a list" in bad.json()["Message"]
    missing = requests.post(f"{stack.api_url}/endpoints/no-such-endpoint/invocations", data="{}",
                            headers={"Content-Type": "application/json"}, timeout=30)
    assert missing.status_code == 400 and missing.json()["ErrorCode"] == "ValidationError"


def test_an_update_uses_blue_green_with_the_alarms(stack, table) -> None:
    from feedback_loop.registry.deploy import DeploySetup, SageMakerEndpoints, deploy_package

    class FakeUpdate(SageMakerEndpoints):
        """The one call the emulator lacks, recorded instead of sent."""

        calls: list = []

        def update(self, name, config, deployment):
            self.calls.append((name, config, deployment))

    sagemaker = boto3.client("sagemaker")
    group = "deploy-unit"  # not feedback-loop-*: the stack's own deploy function (its rule) leaves these packages alone
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    endpoints = FakeUpdate(sagemaker)
    outcomes = []
    for version in (1, 2):
        arn = sagemaker.create_model_package(
            ModelPackageGroupName=group, ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": f"s3://b/m{version}.tar.gz"}],
                                    "SupportedContentTypes": ["application/json"],
                                    "SupportedResponseMIMETypes": ["application/json"]})["ModelPackageArn"]
        detail = {"ModelPackageArn": arn, "ModelPackageGroupName": group, "ModelPackageVersion": version}
        outcomes.append(deploy_package(detail, sagemaker=sagemaker, cloudwatch=boto3.client("cloudwatch"),
                                       events=boto3.client("events"), endpoints=endpoints, table=table,
                                       setup=DeploySetup("arn:aws:iam::123456789012:role/x", bus=stack.bus_name)))
    assert [o["action"] for o in outcomes] == ["created", "updated"]
    [(name, config, deployment)] = FakeUpdate.calls
    assert name == "feedback-loop-deploy-unit-evaluator" and config == outcomes[1]["endpoint_config"]
    assert deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert [a["AlarmName"] for a in deployment["AutoRollbackConfiguration"]["Alarms"]] == outcomes[1]["alarms"]
    again = deploy_package({"ModelPackageArn": arn, "ModelPackageGroupName": group},  # version from the ARN
                           sagemaker=sagemaker, cloudwatch=boto3.client("cloudwatch"), events=boto3.client("events"),
                           endpoints=endpoints, table=table, setup=DeploySetup("arn:aws:iam::123456789012:role/x"))
    assert again["already_handled"] and len(FakeUpdate.calls) == 1


def test_post_retrain_requests_a_training_for_the_latest_window(stack, table) -> None:
    from feedback_loop.logic.keys import create_key

    from ..conftest import Api

    api = Api(stack.api_url, create_key(table, "retrain-sim").plaintext)
    response = api.post("/v1/retrain", {})
    assert response.status_code == 202 and response.json()["project"] == "retrain-sim"
    [delivery] = stack.bus.wait_for("RetrainRequested", timeout=60,
                                    where=lambda event: event["detail"]["project"] == "retrain-sim")
    result = delivery.results["RetrainFunction"]
    # the latest window (2026-05-18) was already trained: idempotent per window, even when asked
    assert result["already_launched"] and result["job_name"] == job_name("retrain-sim", END)

    nobody = Api(stack.api_url, create_key(table, "retrain-none").plaintext)
    assert nobody.post("/v1/retrain", {}).status_code == 202
    [none] = stack.bus.wait_for("RetrainRequested", timeout=60,
                                where=lambda event: event["detail"]["project"] == "retrain-none")
    assert none.results["RetrainFunction"]["decision"]["reasons"] == ["no analysis report yet"]
    assert Api(stack.api_url, None).post("/v1/retrain", {}).status_code == 401


def test_a_failed_training_job_is_counted_for_the_alarm(stack, monkeypatch, capsys) -> None:
    """The register function emits FeedbackLoop/TrainingJobsFailed once per failed job (the stack's
    TrainingJobFailedAlarm watches it); a redelivered event is not counted again."""
    from feedback_loop.local.runtime import LambdaContext, load_module

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    spec = next(f for f in stack.template.functions() if f.logical_id == "RegisterFunction")
    module = load_module(spec)
    module.metrics.clear_metrics()  # Powertools shares one metric set across containers of this process
    job = f"fl-metrics-{uuid.uuid4().hex[:6]}-20261123T0000"
    event = {"version": "0", "id": "1", "detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker",
             "account": "123456789012", "time": "2026-11-23T00:10:00Z", "region": "us-east-1", "resources": [],
             "detail": {"TrainingJobName": job, "TrainingJobStatus": "Failed", "FailureReason": "out of memory",
                        "Tags": {}}}
    for _ in range(2):
        module.lambda_handler(event, LambdaContext("RegisterFunction", timeout_seconds=120))
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    counted = [b for b in blobs if "TrainingJobsFailed" in b]
    assert len(counted) == 1 and counted[0]["TrainingJobsFailed"] == [1.0]
    directive = counted[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "FeedbackLoop" and directive["Dimensions"] == [["service"]]
    assert counted[0]["service"] == "feedback-loop"  # the alarm's dimension


class Recorder:
    """A SageMaker client that keeps each create_training_job request instead of sending it."""

    def __init__(self) -> None:
        self.requests: list[dict] = []

    def create_training_job(self, **request) -> dict:
        self.requests.append(request)
        return {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/recorded"}


def test_a_staged_base_model_is_what_the_training_job_loads(stack, table, capsys) -> None:
    """`feedback-loop stage-model` copies the encoder into the bucket (manifest last); the retrain
    function then gives the job that prefix as its base_model channel, the hub switched off, and the
    job trains from the copy (the local runner mounts channels as SageMaker does)."""
    from feedback_loop.cli import main
    from feedback_loop.evaluator import base_model
    from feedback_loop.retraining.launch import launch_training
    from feedback_loop.settings import RetrainFunctionSettings

    s3 = boto3.client("s3")
    uri = f"s3://{stack.bucket}/base-models/sentence-transformers--all-MiniLM-L6-v2/"
    try:
        assert main(["stage-model", "--bucket", stack.bucket]) == 0
        assert f"staged sentence-transformers/all-MiniLM-L6-v2: {uri}" in capsys.readouterr().out
        manifest = json.loads(s3.get_object(Bucket=stack.bucket, Key=uri.split("/", 3)[3] + "STAGED.json")["Body"].read())
        assert {"config.json", "model.safetensors", "modules.json", "1_Pooling/config.json"} <= \
            {f["path"] for f in manifest["files"]}
        assert main(["stage-model", "--bucket", stack.bucket]) == 0
        assert "already staged" in capsys.readouterr().out

        project = "retrain-staged"
        publish(stack, project, labelled(project, 240), {"disagreement_rate": 0.35, "spearman": 0.3})
        [delivery] = wait_for_retrain(stack, project)
        result = delivery.results["RetrainFunction"]
        assert result["base_model_from"] == uri, result
        run = stack.sagemaker.wait_for(result["job_name"], timeout=600)
        assert run.status == "Completed", run.log[-2000:]
        job = boto3.client("sagemaker").describe_training_job(TrainingJobName=result["job_name"])
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
        assert channels["base_model"] == uri
        assert json.loads(job["HyperParameters"]["base-model"]) == base_model.CHANNEL_PATH
        artifacts = f"models/{project}/{result['job_name']}/output/output.tar.gz"
        with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=stack.bucket, Key=artifacts)["Body"].read())) as tar:
            metrics = json.load(tar.extractfile("metrics.json"))
        assert metrics["hyperparameters"]["base_model"].endswith("/input/data/base_model")  # the mounted copy

        settings = RetrainFunctionSettings(TABLE_NAME=stack.table_name, DATA_BUCKET=stack.bucket,
                                           TRAINING_ROLE_ARN="arn:aws:iam::123456789012:role/t", TRAINING_IMAGE_URI="image")
        for name in ("retrain-offline", "retrain-online"):  # an analysed window each, no event
            s3.put_object(Bucket=stack.bucket, Key=f"reports/{name}/{END:%Y-%m-%dT%H-%M-%SZ}/labelled.jsonl",
                          Body="".join(json.dumps(r) + "\n" for r in labelled(name, 240)).encode())
        recorder = Recorder()
        launch_training("retrain-offline", END, {"disagreement_rate": 0.35, "spearman": 0.3}, s3=s3,
                        sagemaker=recorder, table=table, setup=settings.setup(), policy=settings.policy(), force=True)
        [request] = recorder.requests
        assert request["Environment"] == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    finally:
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix="base-models/")
                for o in page.get("Contents", [])]
        for key in keys:
            s3.delete_object(Bucket=stack.bucket, Key=key)
    unstaged = Recorder()
    launch = launch_training("retrain-online", END, {"disagreement_rate": 0.35, "spearman": 0.3}, s3=s3,
                             sagemaker=unstaged, table=table, setup=settings.setup(), policy=settings.policy(), force=True)
    [request] = unstaged.requests
    assert launch.base_model_from == f"hub:{settings.base_model}" and request["Environment"] == {}
    assert "base_model" not in {c["ChannelName"] for c in request["InputDataConfig"]}


def judged_rows(project: str, n: int, seed: int = 3) -> list[dict]:
    """An LLM judge grading 1-10 (as 0-1), overconfident and biased by query type, and users' thumbs,
    over the window's week; no prompt or output text: a calibrator needs none."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bias = {"code": 2.0, "chat": 0.5, "summarize": -0.5}
    rows = []
    for i in range(n):
        query_type = ["code", "chat", "summarize"][int(rng.integers(3))]
        quality = rng.beta(2, 2)
        grade = int(np.clip(np.round(1 + 9 * quality + bias[query_type] + rng.normal(0, 1.2)), 1, 10))
        good = bool(rng.random() < quality**1.5)
        request_id = f"{project}-{i}"
        rows.append({"request_id": request_id, "timestamp": f"2026-05-{11 + i * 7 // n:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
                     "overall": (grade - 1) / 9, "human_score": 1.0 if good else 0.0,
                     "human_label": "good" if good else "bad", "weight": 1.0, "split": split_of(request_id, 0.2),
                     "segments": {"query_type": query_type, "user_cohort": "all"}})
    return rows


def test_a_calibrator_is_trained_gated_registered_and_put_in_service(stack, table) -> None:
    """EvaluatorKind calibrate (asked for in RetrainRequested): a calibrator's job on the scikit-learn
    image's entry point, without texts; the register function gates it again on the job's held-out
    rows (a time split) and registers it in the project's calibrator group; the approval deploys its
    map (no endpoint), which GET /v1/calibration then serves, byte for byte, as a change."""
    from feedback_loop.calibration.curves import CalibrationMap
    from feedback_loop.logic.changes import list_changes
    from feedback_loop.logic.keys import create_key
    from feedback_loop.retraining.launch import calibration_job_name

    from ..conftest import Api

    project = "calibrate-sim"
    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    s3.put_object(Bucket=stack.bucket, Key=f"reports/{project}/{END:%Y-%m-%dT%H-%M-%SZ}/labelled.jsonl",
                  Body="".join(json.dumps(r) + "\n" for r in judged_rows(project, 1500)).encode())
    boto3.client("events").put_events(Entries=[{
        "Source": "feedback-loop", "DetailType": "RetrainRequested", "EventBusName": stack.bus_name,
        "Detail": json.dumps({"project": project, "requested_by": "test", "kind": "calibrate"})}])
    [delivery] = stack.bus.wait_for("RetrainRequested", timeout=60, where=lambda e: e["detail"]["project"] == project)
    result = delivery.results["RetrainFunction"]
    name = calibration_job_name(project, END)
    assert result["kinds"] == ["calibrate"] and result["calibration_job"] == name == result["job_name"], result
    job = sagemaker.describe_training_job(TrainingJobName=name)
    assert job["AlgorithmSpecification"]["TrainingImage"] == stack.template.resolve(
        {"Fn::FindInMap": ["EvaluatorImages", "us-east-1", "Calibration"]})
    assert json.loads(job["HyperParameters"]["sagemaker_program"]) == "calibrate.py"
    assert json.loads(job["HyperParameters"]["fields"]) == "query_type,user_cohort"
    run = stack.sagemaker.wait_for(name, timeout=300)
    assert run.status == "Completed", run.log[-2000:]
    bundle = json.loads(job["HyperParameters"]["sagemaker_submit_directory"]).split("/", 3)[3]
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=stack.bucket, Key=bundle)["Body"].read())) as tar:
        assert "requirements.txt" not in tar.getnames()  # the image carries what it needs: nothing installed

    [gated] = stack.bus.wait_for("EvaluatorGated", timeout=120, where=lambda e: e["detail"]["training_job"] == name)
    outcome = gated.event["detail"]
    assert outcome["kind"] == "calibrate" and outcome["status"] == "Approved", outcome["reasons"]
    figures = outcome["gate"]["figures"]
    assert figures["challenger"]["ece"] < figures["champion"]["ece"]
    assert figures["log_loss_improvement_ci"][0] > 0
    assert outcome["split"]["held_out"] >= 200 and outcome["split"]["cut"] > "2026-05-11"
    packages = sagemaker.list_model_packages(ModelPackageGroupName=f"feedback-loop-calibrator-{project}")
    assert [p["ModelPackageArn"] for p in packages["ModelPackageSummaryList"]] == [outcome["model_package_arn"]]

    [deployed] = stack.bus.wait_for("EvaluatorDeployed", timeout=120,
                                    where=lambda e: e["detail"]["project"] == project)
    done = deployed.event["detail"]
    assert done["kind"] == "calibrator" and done["model_package_arn"] == outcome["model_package_arn"]
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(
            Bucket=stack.bucket, Key=outcome["model_data"].split("/", 3)[3])["Body"].read())) as tar:
        trained = CalibrationMap.loads(tar.extractfile("calibration.json").read())
    api = Api(stack.api_url, create_key(table, project).plaintext)
    served = api.get("/v1/calibration")
    assert served.status_code == 200 and CalibrationMap.loads(served.content) == trained
    assert served.headers["ETag"].strip('"') == done["map_id"]
    assert done["change"] in [c.name for c in list_changes(table, project)]
    assert not sagemaker.list_endpoints(NameContains=project)["Endpoints"]  # a calibrator has no endpoint


def test_auto_trains_a_calibrator_always_and_a_fine_tuned_challenger_when_there_are_texts(stack, table) -> None:
    """EvaluatorKind auto: both jobs for labelled requests with texts, the calibrator alone without;
    the calibrator in service is the new one's champion (its map as a channel); each window once."""
    from feedback_loop.calibration.fit import fit, labelled as labelled_data
    from feedback_loop.logic import calibration
    from feedback_loop.retraining.launch import calibration_job_name, launch_training
    from feedback_loop.settings import RetrainFunctionSettings

    s3 = boto3.client("s3")
    settings = RetrainFunctionSettings(TABLE_NAME=stack.table_name, DATA_BUCKET=stack.bucket, EVALUATOR_KIND="auto",
                                       TRAINING_ROLE_ARN="arn:aws:iam::123456789012:role/t", TRAINING_IMAGE_URI="hf-image",
                                       CALIBRATION_IMAGE_URI="sklearn-image")
    figures = {"disagreement_rate": 0.35, "spearman": 0.3}
    with_texts, without = "auto-texts", "auto-judge"
    for project, rows in ((with_texts, labelled(with_texts, 240)), (without, judged_rows(without, 400))):
        s3.put_object(Bucket=stack.bucket, Key=f"reports/{project}/{END:%Y-%m-%dT%H-%M-%SZ}/labelled.jsonl",
                      Body="".join(json.dumps(r) + "\n" for r in rows).encode())
    in_service = fit(labelled_data(judged_rows(without, 400, seed=5))).map
    calibration.deploy(table, s3, stack.bucket, without, in_service.dumps(), "test", force=True)

    both = Recorder()
    launch = launch_training(with_texts, END, figures, s3=s3, sagemaker=both, table=table, setup=settings.setup(),
                             policy=settings.policy())
    assert launch.kinds == ["finetune", "calibrate"] and launch.with_texts == 240
    assert [r["TrainingJobName"] for r in both.requests] == [job_name(with_texts, END), calibration_job_name(with_texts, END)]
    finetune, calibrate = both.requests
    assert finetune["AlgorithmSpecification"]["TrainingImage"] == "hf-image"
    assert calibrate["AlgorithmSpecification"]["TrainingImage"] == "sklearn-image"
    assert calibrate["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    assert {c["ChannelName"] for c in calibrate["InputDataConfig"]} == {"train", "validation"}
    assert {t["Value"] for t in calibrate["Tags"] if t["Key"] == "feedback-loop:kind"} == {"calibrate"}

    alone = Recorder()
    launch = launch_training(without, END, figures, s3=s3, sagemaker=alone, table=table, setup=settings.setup(),
                             policy=settings.policy())
    assert launch.kinds == ["calibrate"] and launch.with_texts == 0
    [request] = alone.requests
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels["champion"] == f"s3://{stack.bucket}/calibration/{without}/{calibration.CurrentMaps(table, s3, stack.bucket).get(without).id}.json"

    again = Recorder()
    for project in (with_texts, without):
        repeated = launch_training(project, END, figures, s3=s3, sagemaker=again, table=table, setup=settings.setup(),
                                   policy=settings.policy())
        assert repeated.already_launched
    assert again.requests == []
    with pytest.raises(ValueError, match="unknown evaluator kind"):
        launch_training(without, END, figures, s3=s3, sagemaker=again, table=table, setup=settings.setup(),
                        policy=settings.policy(), kind="other")

    # a fine-tuned evaluator replacing the judge takes the judge's calibrator out of service with it
    retired = calibration.retire(table, without, "evaluator-v2 replaced the evaluator it calibrated")
    assert retired is not None and calibration.CurrentMaps(table, s3, stack.bucket).get(without) is None
    history = list(table.query_partition(f"CALIBRATION#{without}", sk_prefix="RETIRED#"))
    assert [h["map_id"] for h in history] == [retired["map_id"]]
    assert calibration.retire(table, without, "again") is None


def test_a_calibrator_maps_only_the_scores_of_the_evaluator_in_service(stack, table) -> None:
    """Once a fine-tuned evaluator is deployed, a calibrator learns only from the requests made
    since its deployment began (the others were scored by the evaluator it replaced), or is not
    trained when too few of them are labelled; and a calibrator learned from earlier labels (auto's
    calibrator of the window whose fine-tuned challenger won) is not put in service."""
    from feedback_loop.calibration.fit import fit, labelled as labelled_data
    from feedback_loop.dal.items import timestamp_text
    from feedback_loop.registry.deploy import evaluator_since, scored_by_another_evaluator
    from feedback_loop.retraining.launch import calibration_job_name, launch_training
    from feedback_loop.settings import RetrainFunctionSettings

    s3 = boto3.client("s3")
    settings = RetrainFunctionSettings(TABLE_NAME=stack.table_name, DATA_BUCKET=stack.bucket,
                                       EVALUATOR_KIND="calibrate", TRAINING_ROLE_ARN="arn:aws:iam::123456789012:role/t",
                                       CALIBRATION_IMAGE_URI="sklearn-image")
    figures = {"disagreement_rate": 0.35, "spearman": 0.3}
    rows = judged_rows("replaced", 1400)  # 2026-05-11 to 2026-05-17
    deployed = "2026-05-14T00:00:00Z"
    for project in ("replaced", "replaced-lately"):
        s3.put_object(Bucket=stack.bucket, Key=f"reports/{project}/{END:%Y-%m-%dT%H-%M-%SZ}/labelled.jsonl",
                      Body="".join(json.dumps(r) + "\n" for r in rows).encode())
    for project, version, at in (("replaced", 3, datetime(2026, 5, 14, tzinfo=timezone.utc)),
                                 ("replaced-lately", 4, datetime(2026, 5, 17, 12, tzinfo=timezone.utc))):
        # the deploy record as the deploy function writes it
        table.put_if_absent({"pk": f"DEPLOY#{project}", "sk": "CURRENT", "entity": "deployment", "version": version,
                             "model_package_arn": f"arn:p/{version}", "deployed_at": timestamp_text(at)})
    since = evaluator_since(table, "replaced")
    assert since == ("evaluator-v3", datetime(2026, 5, 14, tzinfo=timezone.utc))

    recorded = Recorder()
    launch = launch_training("replaced", END, figures, s3=s3, sagemaker=recorded, table=table,
                             setup=settings.setup(), policy=settings.policy())
    assert launch.kinds == ["calibrate"] and launch.calibration_job == calibration_job_name("replaced", END)
    sent = []
    for channel in recorded.requests[0]["InputDataConfig"]:
        if channel["ChannelName"] in ("train", "validation"):
            prefix = channel["DataSource"]["S3DataSource"]["S3Uri"].split("/", 3)[3]
            body = s3.get_object(Bucket=stack.bucket, Key=f"{prefix}labelled.jsonl")["Body"].read().decode()
            sent += [json.loads(line) for line in body.splitlines()]
    expected = sorted(r["request_id"] for r in rows if r["timestamp"] >= deployed)
    assert sorted(r["request_id"] for r in sent) == expected and 0 < len(expected) < len(rows)

    lately = launch_training("replaced-lately", END, figures, s3=s3, sagemaker=Recorder(), table=table,
                             setup=settings.setup(), policy=settings.policy())
    assert lately.kinds == [] and lately.job_name is None
    [reason] = lately.decision.reasons
    assert "were scored by evaluator-v4 (in service since 2026-05-17T12:00:00Z)" in reason

    # the deploy function's check: a map learned from labels older than the evaluator in service
    older = fit(labelled_data(rows)).map
    assert "it maps the scores of the evaluator that evaluator-v3 replaced" in scored_by_another_evaluator(older, since)
    newer = fit(labelled_data([r for r in rows if r["timestamp"] >= deployed])).map
    assert scored_by_another_evaluator(newer, since) is None
    assert scored_by_another_evaluator(older, None) is None  # the project's own evaluator: no fine-tuned one deployed


def test_post_retrain_may_name_what_to_train(stack, table) -> None:
    from feedback_loop.logic.keys import create_key

    from ..conftest import Api

    api = Api(stack.api_url, create_key(table, "retrain-kind").plaintext)
    response = api.post("/v1/retrain?kind=calibrate", {})
    assert response.status_code == 202 and response.json()["kind"] == "calibrate"
    [delivery] = stack.bus.wait_for("RetrainRequested", timeout=60,
                                    where=lambda event: event["detail"]["project"] == "retrain-kind")
    assert delivery.event["detail"]["kind"] == "calibrate"
    wrong = api.post("/v1/retrain?kind=bigger", {})
    assert wrong.status_code == 422 and "kind" in wrong.text
    # the client's request_retrain: the same route, the kind named or the stack's
    from feedback_loop.client import FeedbackApiError, FeedbackClient

    client = FeedbackClient(stack.api_url, create_key(table, "retrain-client").plaintext)
    assert client.request_retrain("auto")["kind"] == "auto"
    assert client.request_retrain()["status"] == "requested"
    deliveries = stack.bus.wait_for("RetrainRequested", count=2, timeout=60,
                                    where=lambda event: event["detail"]["project"] == "retrain-client")
    assert sorted(str(d.event["detail"].get("kind")) for d in deliveries) == ["None", "auto"]
    with pytest.raises(FeedbackApiError) as refused:
        client.request_retrain("bigger")
    assert refused.value.status == 422
