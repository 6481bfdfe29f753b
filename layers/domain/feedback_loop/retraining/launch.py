"""Launching a training job for a project's evaluator (boto3 only: runs inside Lambda).

Idempotent per project and analysis window: the window is claimed with a conditional write
before the job is created, so a repeated or concurrent AnalysisCompleted never launches twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import feedback_loop
from feedback_loop.dal.items import timestamp_text
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.evaluator import base_model, images
from feedback_loop.events import put_event
from feedback_loop.retraining.policy import Decision, RetrainPolicy, decide

# script-mode entry point: the package travels in the source bundle beside it
TRAIN_SHIM = "import sys\n\nfrom feedback_loop.evaluator.train import main\n\nsys.exit(main())\n"
# what the training image adds to its own torch and transformers: pinned, nothing it carries is upgraded
TRAIN_REQUIREMENTS = images.requirements("training")
METRIC_DEFINITIONS = [{"Name": f"validation:{m}", "Regex": f"validation:{m}=([0-9.]+);"}
                      for m in ("auroc", "accuracy", "ece", "brier")]
RETRAIN_REQUESTED = "RetrainRequested"
_REPORT_FOLDER = re.compile(r"reports/[^/]+/(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z)/$")


@dataclass(frozen=True)
class TrainingSetup:
    bucket: str
    role_arn: str
    image_uri: str
    instance_type: str = "ml.g5.xlarge"
    hyperparameters: dict[str, str] = field(default_factory=dict)
    accumulation: timedelta = timedelta(days=14)
    max_runtime_seconds: int = 3600


@dataclass(frozen=True)
class Launch:
    project: str
    window_end: str
    decision: Decision
    job_name: str | None = None
    already_launched: bool = False
    labels: int = 0
    rows: int = 0
    base_model_from: str = ""  # the staged copy's s3:// prefix, or "hub:<id>" (the job downloads it)


def job_name(project: str, window_end: datetime) -> str:
    """Deterministic per project and window; SageMaker's rules: 1-63 of [a-zA-Z0-9-]."""
    slug = re.sub(r"[^a-zA-Z0-9-]", "-", project)[:40]
    return f"fl-{slug}-{window_end.astimezone(timezone.utc):%Y%m%dT%H%M}"


def claim_key(project: str, window_end: str) -> dict[str, str]:
    return {"pk": f"RETRAIN#{project}", "sk": f"WINDOW#{window_end}"}


def labelled_rows(s3: Any, bucket: str, project: str, until: datetime, accumulation: timedelta
                  ) -> list[dict[str, Any]]:
    """The labelled datasets of the reports whose window ended in (until - accumulation, until]."""
    rows = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"reports/{project}/", Delimiter="/"):
        for prefix in page.get("CommonPrefixes", []):
            match = _REPORT_FOLDER.match(prefix["Prefix"])
            if not match:
                continue
            ended = datetime.strptime(match.group(1), "%Y-%m-%dT%H-%M-%SZ").replace(tzinfo=timezone.utc)
            if until - accumulation < ended <= until:
                body = s3.get_object(Bucket=bucket, Key=prefix["Prefix"] + "labelled.jsonl")["Body"].read()
                rows.extend(json.loads(line) for line in body.splitlines() if line.strip())
    return rows


def latest_window_end(s3: Any, bucket: str, project: str) -> datetime | None:
    """The end of the project's most recent analysis window (from its report folders)."""
    ends = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"reports/{project}/", Delimiter="/"):
        for prefix in page.get("CommonPrefixes", []):
            match = _REPORT_FOLDER.match(prefix["Prefix"])
            if match:
                ends.append(datetime.strptime(match.group(1), "%Y-%m-%dT%H-%M-%SZ").replace(tzinfo=timezone.utc))
    return max(ends) if ends else None


def request_retrain(events: Any, bus: str, project: str, requested_by: str) -> dict[str, Any]:
    """A RetrainRequested event: the retrain function launches for the latest window, cadence and
    thresholds aside (the label minimum still holds)."""
    detail = {"project": project, "requested_by": requested_by,
              "requested_at": timestamp_text(datetime.now(timezone.utc))}
    put_event(events, bus, RETRAIN_REQUESTED, detail)
    return detail


def source_bundle(s3: Any, bucket: str) -> str:
    """sourcedir.tar.gz (train.py, requirements.txt, the feedback_loop package), stored once per content."""
    package = Path(feedback_loop.__file__).resolve().parent
    files = {"train.py": TRAIN_SHIM.encode(), "requirements.txt": TRAIN_REQUIREMENTS.encode()}
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".html", ".txt"):
            files[f"feedback_loop/{path.relative_to(package).as_posix()}"] = path.read_bytes()
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()[:16]
    key = f"code/evaluator/sourcedir-{digest}.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(content), 0
            tar.addfile(info, io.BytesIO(content))
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return f"s3://{bucket}/{key}"


def last_trained(table: FeedbackTable, project: str) -> datetime | None:
    claims = list(table.query_partition(f"RETRAIN#{project}", sk_prefix="WINDOW#"))
    times = [datetime.fromisoformat(c["created_at"].replace("Z", "+00:00")) for c in claims]
    return max(times) if times else None


def launch_training(project: str, window_end: datetime, figures: dict[str, Any], *, s3: Any, sagemaker: Any,
                    table: FeedbackTable, setup: TrainingSetup, policy: RetrainPolicy,
                    now: datetime | None = None, force: bool = False) -> Launch:
    now = now or datetime.now(timezone.utc)
    window = timestamp_text(window_end)
    name = job_name(project, window_end)
    existing = table.get(**claim_key(project, window))
    if existing is not None:
        return Launch(project, window, Decision(False, ["this window was already launched"]), existing["job_name"],
                      already_launched=True)
    rows = labelled_rows(s3, setup.bucket, project, window_end, setup.accumulation)
    labels = sum(r.get("human_label") in ("good", "bad") for r in rows)
    decision = decide(figures, labels, last_trained(table, project), now, policy, force)
    if not decision.launch:
        return Launch(project, window, decision, labels=labels, rows=len(rows))
    claim = {**claim_key(project, window), "entity": "retrain", "project": project, "job_name": name,
             "created_at": timestamp_text(now), "reasons": decision.reasons, "labels": labels}
    if table.put_if_absent(claim) is not None:  # a concurrent delivery of the same event won
        return Launch(project, window, Decision(False, ["this window was already launched"]), name,
                      already_launched=True)
    hyperparameters = dict(setup.hyperparameters)
    base = hyperparameters.get("base-model", "")
    copy = base_model.staged(s3, setup.bucket, base) if base else None
    try:
        channels = {}
        for split in ("train", "validation"):
            key = f"training/{project}/{name}/{split}/labelled.jsonl"
            body = "".join(json.dumps(r) + "\n" for r in rows if r.get("split") == split)
            s3.put_object(Bucket=setup.bucket, Key=key, Body=body.encode())
            channels[split] = f"s3://{setup.bucket}/training/{project}/{name}/{split}/"
        if copy is not None:  # the job reads the encoder from the bucket, never from the hub
            channels[base_model.CHANNEL] = copy.uri
            hyperparameters["base-model"] = base_model.CHANNEL_PATH
        sagemaker.create_training_job(
            TrainingJobName=name,
            AlgorithmSpecification={"TrainingImage": setup.image_uri, "TrainingInputMode": "File",
                                    "MetricDefinitions": METRIC_DEFINITIONS},
            RoleArn=setup.role_arn,
            HyperParameters={"sagemaker_program": json.dumps("train.py"),
                             "sagemaker_submit_directory": json.dumps(source_bundle(s3, setup.bucket)),
                             **{k: json.dumps(v) for k, v in hyperparameters.items()}},
            InputDataConfig=[{"ChannelName": channel,
                              **({} if channel == base_model.CHANNEL else {"ContentType": "application/jsonlines"}),
                              "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                                              "S3DataDistributionType": "FullyReplicated"}}}
                             for channel, uri in channels.items()],
            Environment=base_model.OFFLINE if copy is not None else {},
            OutputDataConfig={"S3OutputPath": f"s3://{setup.bucket}/models/{project}/"},
            ResourceConfig={"InstanceType": setup.instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30},
            StoppingCondition={"MaxRuntimeInSeconds": setup.max_runtime_seconds},
            Tags=[{"Key": "feedback-loop:project", "Value": project}, {"Key": "feedback-loop:window", "Value": window}],
        )
    except Exception:
        table.delete(**claim_key(project, window))  # let a redelivered event try again
        raise
    return Launch(project, window, decision, name, labels=labels, rows=len(rows),
                  base_model_from=copy.uri if copy is not None else f"hub:{base}")
