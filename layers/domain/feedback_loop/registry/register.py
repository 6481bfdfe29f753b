"""Registering a trained challenger: gate it against the champion, record it, announce it.

Runs in the register function on "SageMaker Training Job State Change". Idempotent per training
job (a conditional write claims the job first); a failed job is reported and never registered.
"""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from feedback_loop.dal.items import timestamp_text
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.events import put_event
from feedback_loop.registry.gate import GatePolicy, gate
from feedback_loop.registry.packages import CALIBRATOR, package_key

EVALUATOR_GATED = "EvaluatorGated"
TRAINING_FAILED = "EvaluatorTrainingFailed"
PROJECT_TAG, WINDOW_TAG = "feedback-loop:project", "feedback-loop:window"


def package_group(project: str) -> str:
    return f"feedback-loop-{project}"[:63]


def calibrator_group(project: str) -> str:
    """A project's calibrators: their own group and versions. The deploy function tells a package's
    kind from the table (package_key), never from this name."""
    return f"feedback-loop-calibrator-{project}"[:63]


def _project_of(job: str) -> str:
    from feedback_loop.retraining.launch import CALIBRATION_SUFFIX

    return job.removeprefix("fl-").removesuffix(CALIBRATION_SUFFIX).rsplit("-", 1)[0]


def _read_output(s3: Any, model_artifacts: str) -> dict[str, bytes]:
    """The small output.tar.gz beside model.tar.gz: metrics and held-out predictions."""
    bucket, _, key = model_artifacts.removeprefix("s3://").partition("/")
    body = s3.get_object(Bucket=bucket, Key=key.replace("model.tar.gz", "output.tar.gz"))["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _ensure_group(sagemaker: Any, group: str, project: str, what: str = "evaluators") -> None:
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError:
        sagemaker.create_model_package_group(ModelPackageGroupName=group,
                                             ModelPackageGroupDescription=f"feedback-loop {what} of {project}")


def register_challenger(detail: dict[str, Any], *, s3: Any, sagemaker: Any, events: Any, table: FeedbackTable,
                        bus: str, inference_image: str, policy: GatePolicy, calibrator_policy: Any = None,
                        calibration_image: str = "") -> dict[str, Any]:
    job = detail["TrainingJobName"]
    tags = detail.get("Tags") or {}
    project = tags.get(PROJECT_TAG) or _project_of(job)
    key = {"pk": f"REGISTER#{project}", "sk": f"JOB#{job}"}
    claim = {**key, "entity": "registration", "project": project, "training_job": job,
             "status": detail["TrainingJobStatus"], "created_at": timestamp_text(datetime.now(timezone.utc))}
    existing = table.put_if_absent(claim)
    if existing is not None:
        return {**existing, "already_handled": True}
    if detail["TrainingJobStatus"] != "Completed":
        outcome = {"project": project, "training_job": job, "status": detail["TrainingJobStatus"],
                   "reason": detail.get("FailureReason", "the training job did not complete")}
        put_event(events, bus, TRAINING_FAILED, outcome)
        table.update(key["pk"], key["sk"], {"outcome": json.dumps(outcome)})
        return outcome
    artifacts = detail["ModelArtifacts"]["S3ModelArtifacts"]
    files = _read_output(s3, artifacts)
    metrics = json.loads(files["metrics.json"])
    if metrics.get("kind") == "calibrate":
        return _register_calibrator(project, job, tags, artifacts, files, metrics, key=key, sagemaker=sagemaker,
                                    events=events, table=table, bus=bus, policy=calibrator_policy,
                                    image=calibration_image or inference_image)
    predictions = [json.loads(line) for line in files["validation_predictions.jsonl"].splitlines() if line.strip()]
    decision = gate(predictions, policy)
    group = package_group(project)
    _ensure_group(sagemaker, group, project)
    summary = {"training_job": job, "project": project, "window": tags.get(WINDOW_TAG, ""), "n": str(decision.n),
               "challenger_auroc": str(decision.challenger.auroc), "champion_auroc": str(decision.champion.auroc),
               "challenger_ece": str(decision.challenger.ece), "champion_ece": str(decision.champion.ece)}
    arn = _create_package(sagemaker, group, inference_image, artifacts, decision.status, decision.reasons, summary)
    outcome = {"project": project, "training_job": job, "model_package_arn": arn, "model_data": artifacts,
               "status": decision.status, "reasons": decision.reasons, "gate": decision.as_dict(),
               "training_metrics": metrics.get("validation"), "window": tags.get(WINDOW_TAG, "")}
    return _gated(outcome, key, events=events, table=table, bus=bus)


def _create_package(sagemaker: Any, group: str, image: str, artifacts: str, status: str, reasons: list[str],
                    summary: dict[str, str], before_approval: Any = None) -> str:
    """A model package of the job's model data in `group` with the gate's `status` (and its reason as
    the approval's description); with `before_approval`, created pending and given the status only
    once `before_approval(arn)` has run (a calibrator's kind must be in the table before an approval's
    event reaches the deploy function). Returns its ARN."""
    package = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=reasons[0][:1000],
        InferenceSpecification={"Containers": [{"Image": image, "ModelDataUrl": artifacts}],
                                "SupportedContentTypes": ["application/json"],
                                "SupportedResponseMIMETypes": ["application/json"]},
        ModelApprovalStatus=status if before_approval is None else "PendingManualApproval",
        CustomerMetadataProperties={k: v[:256] for k, v in summary.items()},
    )
    arn = package["ModelPackageArn"]
    if before_approval is not None:
        before_approval(arn)
    if status != "PendingManualApproval":
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status,
                                       ApprovalDescription=reasons[0][:1000])
    return arn


def _gated(outcome: dict[str, Any], key: dict[str, str], *, events: Any, table: FeedbackTable, bus: str
           ) -> dict[str, Any]:
    """EvaluatorGated with the outcome, which the registration's claim keeps."""
    put_event(events, bus, EVALUATOR_GATED, outcome)
    table.update(key["pk"], key["sk"], {"outcome": json.dumps(outcome, default=str)})
    return outcome


def _register_calibrator(project: str, job: str, tags: dict[str, str], artifacts: str, files: dict[str, bytes],
                         metrics: dict[str, Any], *, key: dict[str, str], sagemaker: Any, events: Any,
                         table: FeedbackTable, bus: str, policy: Any, image: str) -> dict[str, Any]:
    """A calibrator's job: its own gate run again here on the held-out rows the job wrote (the job's
    verdict is not trusted), a package in the project's calibrator group, the package's kind kept
    in the table for the deploy function, and EvaluatorGated with kind `calibrate`."""
    from feedback_loop.calibration.fit import regate

    rows = [json.loads(line) for line in files.get("held_out.jsonl", b"").splitlines() if line.strip()]
    decision = regate(rows, policy)
    group = calibrator_group(project)
    _ensure_group(sagemaker, group, project, "calibrators")
    figures = decision.figures
    summary = {"kind": CALIBRATOR, "training_job": job, "project": project, "window": tags.get(WINDOW_TAG, ""),
               "n": str(decision.n), "split_cut": str((metrics.get("split") or {}).get("cut", "")),
               "challenger_ece": str((figures.get("challenger") or {}).get("ece")),
               "champion_ece": str((figures.get("champion") or {}).get("ece")),
               "log_loss_improvement": str(figures.get("log_loss_improvement"))}
    arn = _create_package(sagemaker, group, image, artifacts, decision.status, decision.reasons, summary,
                          lambda arn: table.merge(**package_key(arn), values={
                              "entity": "package", "kind": CALIBRATOR, "project": project, "training_job": job,
                              "model_data": artifacts}))
    outcome = {"project": project, "training_job": job, "kind": "calibrate", "model_package_arn": arn,
               "model_data": artifacts, "status": decision.status, "reasons": decision.reasons,
               "gate": decision.as_dict(), "split": metrics.get("split"), "chosen": metrics.get("chosen"),
               "training_metrics": metrics.get("validation"), "window": tags.get(WINDOW_TAG, "")}
    return _gated(outcome, key, events=events, table=table, bus=bus)
