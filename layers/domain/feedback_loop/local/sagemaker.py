"""The local SageMaker runner: training jobs created through the emulator's API, really run.

The emulator only records `CreateTrainingJob`. This runner does the rest the way SageMaker does
for a script-mode job: it lays out /opt/ml in a temporary folder (input/data/<channel> from S3,
input/config/*.json, model/, output/), unpacks `sagemaker_submit_directory` into code/, runs
`python <sagemaker_program> --hyperparameter value ...` with the SM_* environment, uploads
model/ as `<S3OutputPath>/<job>/output/model.tar.gz`, and emits "SageMaker Training Job State
Change" on the local bus, as SageMaker emits it on the default bus.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3

from feedback_loop.local.template import ACCOUNT_ID, REGION

log = logging.getLogger("feedback_loop.local.sagemaker")
STATE_CHANGE = "SageMaker Training Job State Change"
PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


@dataclass
class JobRun:
    name: str
    status: str
    seconds: float
    log: str
    failure: str | None = None
    model_artifacts: str | None = None


class LocalSageMaker:
    def __init__(self, emit: Callable[[dict[str, Any]], Any], poll_seconds: float = 0.5, timeout: float = 1800):
        self.emit = emit
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self.runs: dict[str, JobRun] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: set[str] = set()
        self._approvals: dict[str, str] = {}  # model package ARN -> last approval status seen
        self._condition = threading.Condition()

    def start(self) -> None:
        self._seen = {j["TrainingJobName"] for j in self._list()}  # jobs from before this runner are history
        self._approvals = {p["ModelPackageArn"]: p["ModelApprovalStatus"] for p in self._packages()}
        self._thread = threading.Thread(target=self._loop, name="local-sagemaker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _list(self) -> list[dict[str, Any]]:
        paginator = boto3.client("sagemaker").get_paginator("list_training_jobs")
        return [j for page in paginator.paginate() for j in page["TrainingJobSummaries"]]

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                jobs = [j["TrainingJobName"] for j in sorted(self._list(), key=lambda j: j["CreationTime"])]
            except Exception:  # the emulator is stopping
                return
            for name in jobs:
                if name not in self._seen:
                    self._seen.add(name)
                    self.run(name)
            self._announce_approvals()

    def _packages(self) -> list[dict[str, Any]]:
        sagemaker = boto3.client("sagemaker")
        groups = [g["ModelPackageGroupName"] for page in sagemaker.get_paginator("list_model_package_groups").paginate()
                  for g in page["ModelPackageGroupSummaryList"]]
        return [p for group in groups for page in sagemaker.get_paginator("list_model_packages").paginate(
            ModelPackageGroupName=group) for p in page["ModelPackageSummaryList"]]

    def _announce_approvals(self) -> None:
        """SageMaker emits a state change when a package is created or its approval changes."""
        try:
            packages = self._packages()
        except Exception:  # the emulator is stopping
            return
        for package in packages:
            arn, status = package["ModelPackageArn"], package["ModelApprovalStatus"]
            if self._approvals.get(arn) == status:
                continue
            self._approvals[arn] = status
            detail = {"ModelPackageGroupName": package["ModelPackageGroupName"],
                      "ModelPackageVersion": package.get("ModelPackageVersion"), "ModelPackageArn": arn,
                      "ModelApprovalStatus": status, "ModelPackageStatus": package.get("ModelPackageStatus")}
            self.emit({"version": "0", "id": str(uuid.uuid4()), "detail-type": PACKAGE_STATE_CHANGE,
                       "source": "aws.sagemaker", "account": ACCOUNT_ID,
                       "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
                       "resources": [arn], "detail": detail})

    def wait_for(self, name: str, timeout: float = 600) -> JobRun:
        with self._condition:
            if not self._condition.wait_for(lambda: name in self.runs, timeout=timeout):
                raise TimeoutError(f"training job {name} did not finish within {timeout} s")
            return self.runs[name]

    # --- one job --------------------------------------------------------------------------------

    def run(self, name: str) -> JobRun:
        sagemaker, s3 = boto3.client("sagemaker"), boto3.client("s3")
        job = sagemaker.describe_training_job(TrainingJobName=name)
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"sm-{name}-") as root:
            ml = Path(root)
            try:
                env, command = self._prepare(job, ml, s3)
                done = subprocess.run(command, cwd=ml / "code", env=env, capture_output=True, text=True,
                                      timeout=job["StoppingCondition"].get("MaxRuntimeInSeconds", self.timeout))
                output = done.stdout + done.stderr
                if done.returncode != 0:
                    (ml / "output").mkdir(exist_ok=True)
                    failure = (output.strip().splitlines() or ["exit code %d" % done.returncode])[-1][:1000]
                    result = JobRun(name, "Failed", time.monotonic() - began, output, failure)
                else:
                    artifacts = self._upload(job, ml, s3)
                    result = JobRun(name, "Completed", time.monotonic() - began, output, None, artifacts)
            except subprocess.TimeoutExpired as error:
                result = JobRun(name, "Failed", time.monotonic() - began, str(error.output or ""),
                                "MaxRuntimeInSeconds exceeded")
            except Exception as error:  # a job the runner cannot even start fails like SageMaker's would
                log.exception("training job %s could not run", name)
                result = JobRun(name, "Failed", time.monotonic() - began, "", f"{type(error).__name__}: {error}")
        tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=job["TrainingJobArn"]).get("Tags", [])}
        self.emit(self._state_change(job, result, tags))
        with self._condition:
            self.runs[name] = result
            self._condition.notify_all()
        return result

    def _prepare(self, job: dict[str, Any], ml: Path, s3: Any) -> tuple[dict[str, str], list[str]]:
        hyperparameters = {k: json.loads(v) if v[:1] in '"[{' else v for k, v in job.get("HyperParameters", {}).items()}
        # paths inside the job's container (a channel's /opt/ml/input/data/<name>) are under `ml` here
        hyperparameters = {k: str(ml / v.removeprefix("/opt/ml/")) if isinstance(v, str) and v.startswith("/opt/ml/")
                           else v for k, v in hyperparameters.items()}
        program = hyperparameters.pop("sagemaker_program")
        submit = hyperparameters.pop("sagemaker_submit_directory")
        for folder in ("code", "model", "output/data", "input/config"):
            (ml / folder).mkdir(parents=True, exist_ok=True)
        bucket, key = _split(submit)
        archive = ml / "sourcedir.tar.gz"
        s3.download_file(bucket, key, str(archive))
        with tarfile.open(archive) as tar:
            tar.extractall(ml / "code", filter="data")
        channels = []
        for channel in job.get("InputDataConfig", []):
            name = channel["ChannelName"]
            channels.append(name)
            bucket, prefix = _split(channel["DataSource"]["S3DataSource"]["S3Uri"])
            target = ml / "input" / "data" / name
            target.mkdir(parents=True, exist_ok=True)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    relative = item["Key"][len(prefix):].lstrip("/") or Path(item["Key"]).name
                    (target / relative).parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, item["Key"], str(target / relative))
        (ml / "input/config/hyperparameters.json").write_text(json.dumps(hyperparameters))
        (ml / "input/config/resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
        env = {**os.environ, "SM_MODEL_DIR": str(ml / "model"), "SM_OUTPUT_DATA_DIR": str(ml / "output/data"),
               "SM_OUTPUT_DIR": str(ml / "output"), "SM_INPUT_DIR": str(ml / "input"),
               "SM_INPUT_CONFIG_DIR": str(ml / "input/config"), "SM_CHANNELS": json.dumps(channels),
               "SM_HPS": json.dumps(hyperparameters), "SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1",
               "SM_NUM_GPUS": "0", "SM_NUM_CPUS": str(os.cpu_count() or 1), "SM_USER_ENTRY_POINT": program,
               "SM_MODULE_DIR": submit, "TRAINING_JOB_NAME": job["TrainingJobName"],
               "PYTHONPATH": os.pathsep.join([str(ml / "code"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        env.update({f"SM_CHANNEL_{name.upper()}": str(ml / "input" / "data" / name) for name in channels})
        arguments = [part for k, v in hyperparameters.items() for part in (f"--{k}", str(v))]
        return env, [sys.executable, program, *arguments]

    def _upload(self, job: dict[str, Any], ml: Path, s3: Any) -> str:
        """model/ as model.tar.gz and output/data/ as output.tar.gz, where SageMaker puts them."""
        bucket, prefix = _split(job["OutputDataConfig"]["S3OutputPath"].rstrip("/") + "/")
        for name, folder in (("model.tar.gz", ml / "model"), ("output.tar.gz", ml / "output" / "data")):
            archive = ml / name
            with tarfile.open(archive, "w:gz") as tar:
                for path in sorted(folder.iterdir()):
                    tar.add(path, arcname=path.name)
            s3.upload_file(str(archive), bucket, f"{prefix}{job['TrainingJobName']}/output/{name}")
        return f"s3://{bucket}/{prefix}{job['TrainingJobName']}/output/model.tar.gz"

    @staticmethod
    def _state_change(job: dict[str, Any], result: JobRun, tags: dict[str, str]) -> dict[str, Any]:
        detail = {"TrainingJobName": job["TrainingJobName"], "TrainingJobArn": job["TrainingJobArn"],
                  "TrainingJobStatus": result.status, "HyperParameters": job.get("HyperParameters", {}),
                  "OutputDataConfig": job["OutputDataConfig"], "Tags": tags,
                  "TrainingStartTime": int(time.time() * 1000), "SecondaryStatus": result.status}
        if result.model_artifacts:
            detail["ModelArtifacts"] = {"S3ModelArtifacts": result.model_artifacts}
        if result.failure:
            detail["FailureReason"] = result.failure
        return {"version": "0", "id": str(uuid.uuid4()), "detail-type": STATE_CHANGE, "source": "aws.sagemaker",
                "account": ACCOUNT_ID, "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": REGION, "resources": [job["TrainingJobArn"]], "detail": detail}
