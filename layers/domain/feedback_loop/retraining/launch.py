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
from feedback_loop.evaluator.data import CALIBRATOR_METRICS, FINETUNE_METRICS, metric_definitions
from feedback_loop.registry.deploy import evaluator_since
from feedback_loop.events import put_event
from feedback_loop.retraining.policy import Decision, RetrainPolicy, decide

# script-mode entry points: the package travels in the source bundle beside them
TRAIN_SHIM = "import sys\n\nfrom feedback_loop.evaluator.train import main\n\nsys.exit(main())\n"
CALIBRATE_SHIM = "import sys\n\nfrom feedback_loop.calibration.train import main\n\nsys.exit(main())\n"
# what the training image adds to its own torch and transformers: pinned, nothing it carries is upgraded
TRAIN_REQUIREMENTS = images.requirements("training")
FINETUNE, CALIBRATE, AUTO = "finetune", "calibrate", "auto"  # EvaluatorKind
CALIBRATION_SUFFIX = "-cal"  # a calibrator's job name: the fine-tuning job's name and this


METRIC_DEFINITIONS = metric_definitions(FINETUNE_METRICS)
CALIBRATION_METRIC_DEFINITIONS = metric_definitions(CALIBRATOR_METRICS)
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
    kind: str = FINETUNE  # EvaluatorKind: finetune, calibrate, or auto (both when the labelled rows carry texts)
    calibration_image_uri: str = ""  # the SageMaker scikit-learn image
    calibration_instance_type: str = "ml.m5.large"
    calibration_hyperparameters: dict[str, str] = field(default_factory=dict)


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
    calibration_job: str | None = None  # the calibrator's job (kind calibrate or auto)
    kinds: list[str] = field(default_factory=list)  # what was launched: finetune, calibrate
    with_texts: int = 0  # binary labels whose rows carry the prompt and the output


def job_name(project: str, window_end: datetime) -> str:
    """Deterministic per project and window; SageMaker's rules: 1-63 of [a-zA-Z0-9-]."""
    slug = re.sub(r"[^a-zA-Z0-9-]", "-", project)[:40]
    return f"fl-{slug}-{window_end.astimezone(timezone.utc):%Y%m%dT%H%M}"


def calibration_job_name(project: str, window_end: datetime) -> str:
    return job_name(project, window_end) + CALIBRATION_SUFFIX


def claim_key(project: str, window_end: str, kind: str = FINETUNE) -> dict[str, str]:
    return {"pk": f"RETRAIN#{project}", "sk": f"WINDOW#{window_end}" + ("" if kind == FINETUNE else f"#{kind}")}


def kinds_to_train(kind: str, rows: list[dict[str, Any]], min_labels: int) -> tuple[list[str], int]:
    """What EvaluatorKind trains on these rows: `auto` fine-tunes too when at least `min_labels`
    binary labels carry the prompt and the output (a calibrator needs no text). Returns the kinds
    and that count."""
    with_texts = sum(r.get("human_label") in ("good", "bad") and bool(r.get("prompt")) and bool(r.get("output"))
                     for r in rows)
    if kind == AUTO:
        return ([FINETUNE] if with_texts >= min_labels else []) + [CALIBRATE], with_texts
    return [kind], with_texts


def scored_in_service(rows: list[dict[str, Any]], since: tuple[str, datetime] | None, min_labels: int
                      ) -> tuple[list[dict[str, Any]], str | None]:
    """The rows a calibrator may learn from: with a fine-tuned evaluator in service (`since`: its
    name and when its deployment began), only the requests made since (the earlier ones were
    scored by the evaluator it replaced; a row without a readable time is left out). Returns them,
    and why no calibrator is trained when fewer than `min_labels` of them are labelled good or bad."""
    if since is None:
        return rows, None
    name, began = since

    def after(row: dict[str, Any]) -> bool:
        try:
            moment = datetime.fromisoformat(str(row.get("timestamp")).replace("Z", "+00:00"))
        except ValueError:
            return False
        return moment.tzinfo is not None and moment >= began

    kept = [row for row in rows if after(row)]
    labels = sum(row.get("human_label") in ("good", "bad") for row in kept)
    if labels < min_labels:
        return kept, (f"no calibrator: {labels} requests labelled good or bad were scored by {name} (in service "
                      f"since {began:%Y-%m-%dT%H:%M:%SZ}); it needs {min_labels}")
    return kept, None


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


def request_retrain(events: Any, bus: str, project: str, requested_by: str, kind: str | None = None) -> dict[str, Any]:
    """A RetrainRequested event: the retrain function launches for the latest window, cadence and
    thresholds aside (the label minimum still holds); `kind` (EvaluatorKind) instead of the stack's."""
    detail = {"project": project, "requested_by": requested_by,
              "requested_at": timestamp_text(datetime.now(timezone.utc)), **({"kind": kind} if kind else {})}
    put_event(events, bus, RETRAIN_REQUESTED, detail)
    return detail


def source_bundle(s3: Any, bucket: str, kind: str = FINETUNE) -> str:
    """sourcedir.tar.gz (the entry point, the feedback_loop package and, for fine-tuning,
    requirements.txt: a calibrator's image carries all it needs), stored once per content."""
    package = Path(feedback_loop.__file__).resolve().parent
    files = ({"calibrate.py": CALIBRATE_SHIM.encode()} if kind == CALIBRATE else
             {"train.py": TRAIN_SHIM.encode(), "requirements.txt": TRAIN_REQUIREMENTS.encode()})
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
                    now: datetime | None = None, force: bool = False, kind: str | None = None) -> Launch:
    """Launches what `kind` (else setup.kind) trains for the window, each at most once: a fine-tuned
    challenger, a calibrator, or with `auto` both when the rows carry texts."""
    now = now or datetime.now(timezone.utc)
    kind = kind or setup.kind
    if kind not in (FINETUNE, CALIBRATE, AUTO):
        raise ValueError(f"unknown evaluator kind {kind!r}: {FINETUNE}, {CALIBRATE} or {AUTO}")
    window = timestamp_text(window_end)
    name = job_name(project, window_end)

    def launched_already(kinds: list[str], with_texts: int = 0) -> Launch | None:
        if not all(claimed[k] for k in kinds):
            return None
        return Launch(project, window, Decision(False, ["this window was already launched"]),
                      claimed[kinds[0]]["job_name"], already_launched=True, kinds=kinds, with_texts=with_texts,
                      calibration_job=(claimed.get(CALIBRATE) or {}).get("job_name"))

    # the claims first: a redelivered event reads no labelled rows
    claimed = {k: table.get(**claim_key(project, window, k)) for k in ([FINETUNE, CALIBRATE] if kind == AUTO else [kind])}
    found = launched_already(list(claimed))
    if found is not None:
        return found
    rows = labelled_rows(s3, setup.bucket, project, window_end, setup.accumulation)
    labels = sum(r.get("human_label") in ("good", "bad") for r in rows)
    wanted, with_texts = kinds_to_train(kind, rows, policy.min_new_labels)
    calibrator_rows, why_not = rows, None
    if CALIBRATE in wanted:  # a calibrator maps one evaluator's scores: those of the evaluator in service
        calibrator_rows, why_not = scored_in_service(rows, evaluator_since(table, project), policy.min_new_labels)
        if why_not is not None:
            wanted = [k for k in wanted if k != CALIBRATE]
            if not wanted:
                return Launch(project, window, Decision(False, [why_not]), labels=labels, rows=len(rows),
                              with_texts=with_texts)
    found = launched_already(wanted, with_texts)  # auto, its calibrator launched, and too few texts to fine-tune
    if found is not None:
        return found
    decision = decide(figures, labels, last_trained(table, project), now, policy, force)
    if why_not is not None:  # auto: the fine-tuned challenger alone
        decision = Decision(decision.launch, [*decision.reasons, why_not])
    if not decision.launch:
        return Launch(project, window, decision, labels=labels, rows=len(rows), with_texts=with_texts)
    launched: dict[str, str] = {}
    base_from = ""
    for what in wanted:
        if claimed[what] is not None:
            continue
        this = name if what == FINETUNE else calibration_job_name(project, window_end)
        claim = {**claim_key(project, window, what), "entity": "retrain", "project": project, "job_name": this,
                 "kind": what, "created_at": timestamp_text(now), "reasons": decision.reasons, "labels": labels}
        if table.put_if_absent(claim) is not None:  # a concurrent delivery of the same event won
            continue
        try:
            if what == FINETUNE:
                base_from = _create_finetune_job(project, this, window, rows, s3=s3, sagemaker=sagemaker, setup=setup)
            else:
                _create_calibration_job(project, this, window, calibrator_rows, s3=s3, sagemaker=sagemaker,
                                        table=table, setup=setup)
        except Exception:
            table.delete(**claim_key(project, window, what))  # let a redelivered event try again
            raise
        launched[what] = this
    if not launched:
        return Launch(project, window, Decision(False, ["this window was already launched"]), name,
                      already_launched=True, kinds=wanted, with_texts=with_texts)
    return Launch(project, window, decision, launched.get(FINETUNE) or launched.get(CALIBRATE), labels=labels,
                  rows=len(rows), base_model_from=base_from, calibration_job=launched.get(CALIBRATE),
                  kinds=list(launched), with_texts=with_texts)


def _channels(project: str, name: str, rows: list[dict[str, Any]], s3: Any, bucket: str) -> dict[str, str]:
    channels = {}
    for split in ("train", "validation"):
        key = f"training/{project}/{name}/{split}/labelled.jsonl"
        body = "".join(json.dumps(r) + "\n" for r in rows if r.get("split") == split)
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
        channels[split] = f"s3://{bucket}/training/{project}/{name}/{split}/"
    return channels


def _input(channel: str, uri: str, content_type: str | None = "application/jsonlines") -> dict[str, Any]:
    return {"ChannelName": channel, **({"ContentType": content_type} if content_type else {}),
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                            "S3DataDistributionType": "FullyReplicated"}}}


def _tags(project: str, window: str, kind: str) -> list[dict[str, str]]:
    return [{"Key": "feedback-loop:project", "Value": project}, {"Key": "feedback-loop:window", "Value": window},
            {"Key": "feedback-loop:kind", "Value": kind}]


def _create_finetune_job(project: str, name: str, window: str, rows: list[dict[str, Any]], *, s3: Any,
                         sagemaker: Any, setup: TrainingSetup) -> str:
    """The fine-tuned challenger's job; returns where its base model comes from."""
    hyperparameters = dict(setup.hyperparameters)
    base = hyperparameters.get("base-model", "")
    copy = base_model.staged(s3, setup.bucket, base) if base else None
    channels = _channels(project, name, rows, s3, setup.bucket)
    if copy is not None:  # the job reads the encoder from the bucket, never from the hub
        channels[base_model.CHANNEL] = copy.uri
        hyperparameters["base-model"] = base_model.CHANNEL_PATH
    sagemaker.create_training_job(**_job_request(
        name, project, window, FINETUNE, setup, image=setup.image_uri, definitions=METRIC_DEFINITIONS,
        program="train.py", bundle=source_bundle(s3, setup.bucket), hyperparameters=hyperparameters,
        channels=channels, unlabelled=(base_model.CHANNEL,), instance_type=setup.instance_type, volume_gb=30,
        environment=base_model.OFFLINE if copy is not None else {}))
    return copy.uri if copy is not None else f"hub:{base}"


def _create_calibration_job(project: str, name: str, window: str, rows: list[dict[str, Any]], *, s3: Any,
                            sagemaker: Any, table: FeedbackTable, setup: TrainingSetup) -> None:
    """The calibrator's job: the scikit-learn image in script mode on a small CPU instance, the
    labelled rows (texts or none) and, when one is in service, the current map as its champion."""
    from feedback_loop.logic.calibration import pointer_key

    if not setup.calibration_image_uri:
        raise ValueError("no calibration image configured (CALIBRATION_IMAGE_URI)")
    channels = _channels(project, name, rows, s3, setup.bucket)
    current = table.get(**pointer_key(project))
    if current is not None:
        channels["champion"] = f"s3://{setup.bucket}/{current['key']}"
    sagemaker.create_training_job(**_job_request(
        name, project, window, CALIBRATE, setup, image=setup.calibration_image_uri,
        definitions=CALIBRATION_METRIC_DEFINITIONS, program="calibrate.py",
        bundle=source_bundle(s3, setup.bucket, CALIBRATE), hyperparameters=setup.calibration_hyperparameters,
        channels=channels, unlabelled=("champion",),
        instance_type=setup.calibration_instance_type, volume_gb=5))


def _job_request(name: str, project: str, window: str, kind: str, setup: TrainingSetup, *, image: str,
                 definitions: list[dict[str, str]], program: str, bundle: str, hyperparameters: dict[str, str],
                 channels: dict[str, str], unlabelled: tuple[str, ...], instance_type: str, volume_gb: int,
                 environment: dict[str, str] | None = None) -> dict[str, Any]:
    """CreateTrainingJob's request for a script-mode job of `kind` (its source `bundle`, entry point and
    hyperparameters; the channels, JSON Lines but those in `unlabelled`; the output under
    models/<project>/; tagged with the project, the window and the kind)."""
    return dict(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File", "MetricDefinitions": definitions},
        RoleArn=setup.role_arn,
        HyperParameters={"sagemaker_program": json.dumps(program),
                         "sagemaker_submit_directory": json.dumps(bundle),
                         **{k: json.dumps(v) for k, v in hyperparameters.items()}},
        InputDataConfig=[_input(channel, uri, None if channel in unlabelled else "application/jsonlines")
                         for channel, uri in channels.items()],
        Environment=environment or {},
        OutputDataConfig={"S3OutputPath": f"s3://{setup.bucket}/models/{project}/"},
        ResourceConfig={"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": volume_gb},
        StoppingCondition={"MaxRuntimeInSeconds": setup.max_runtime_seconds},
        Tags=_tags(project, window, kind),
    )
