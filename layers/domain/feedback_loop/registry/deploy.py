"""Deploying an approved evaluator: model, endpoint config, blue/green endpoint update, a change record.

Runs in the deploy function on "SageMaker Model Package State Change" = Approved; idempotent per
model package (a conditional write claims it first). The endpoint update sits behind an adapter
because the local emulator does not implement UpdateEndpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from botocore.exceptions import ClientError

from feedback_loop.calibration.curves import CalibrationMap
from feedback_loop.dal.items import parse_timestamp, timestamp_text
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.events import put_event
from feedback_loop.logic import calibration
from feedback_loop.logic.changes import register_change
from feedback_loop.models.changes import Change
from feedback_loop.models.errors import DuplicateChange
from feedback_loop.registry.packages import CALIBRATOR, package_key

EVALUATOR_DEPLOYED = "EvaluatorDeployed"


def endpoint_name(project: str) -> str:
    return f"feedback-loop-{project}-evaluator"[:63]


def deployment_config(alarms: list[str]) -> dict[str, Any]:
    """Blue/green: the new fleet takes all traffic at once after baking, and rolls back on alarm."""
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
            "TerminationWaitInSeconds": 600,
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]},
    }


class Endpoints(Protocol):
    def exists(self, name: str) -> bool: ...
    def create(self, name: str, config: str) -> None: ...
    def update(self, name: str, config: str, deployment: dict[str, Any]) -> None: ...


@dataclass
class SageMakerEndpoints:
    """AWS: create_endpoint, and update_endpoint with the blue/green deployment config."""

    sagemaker: Any

    def exists(self, name: str) -> bool:
        try:
            self.sagemaker.describe_endpoint(EndpointName=name)
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                return False
            raise

    def create(self, name: str, config: str) -> None:
        self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)

    def update(self, name: str, config: str, deployment: dict[str, Any]) -> None:
        self.sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config, DeploymentConfig=deployment,
                                       RetainAllVariantProperties=False)


@dataclass
class RecreatedEndpoints(SageMakerEndpoints):
    """The local stack: the emulator has no UpdateEndpoint, so an update re-creates the endpoint."""

    def update(self, name: str, config: str, deployment: dict[str, Any]) -> None:
        self.sagemaker.delete_endpoint(EndpointName=name)
        self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)


@dataclass(frozen=True)
class DeploySetup:
    execution_role_arn: str
    instance_type: str = "ml.m5.large"
    bus: str = "default"
    alarm_topic_arn: str = ""  # where the endpoint's alarms also notify (the stack's AlarmTopic)
    bucket: str = ""  # the data bucket: a calibrator's map is put in service there


def _alarms(cloudwatch: Any, endpoint: str, topic: str = "") -> list[str]:
    """Alarms the blue/green update watches: server errors and latency of the new variant; they also
    notify `topic` (the stack's AlarmTopic), so an endpoint failing in service is seen."""
    specs = [("Invocation5XXErrors", 1, "Sum"), ("ModelLatency", 2_000_000, "Average")]  # latency in microseconds
    actions = [topic] if topic else []
    names = []
    for metric, threshold, statistic in specs:
        name = f"{endpoint}-{metric}"
        cloudwatch.put_metric_alarm(
            AlarmName=name, Namespace="AWS/SageMaker", MetricName=metric, Statistic=statistic, Period=60,
            EvaluationPeriods=2, Threshold=threshold, ComparisonOperator="GreaterThanOrEqualToThreshold",
            Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}],
            TreatMissingData="notBreaching", AlarmActions=actions, OKActions=actions)
        names.append(name)
    return names


def _current_key(project: str) -> dict[str, str]:
    return {"pk": f"DEPLOY#{project}", "sk": "CURRENT"}


def evaluator_since(table: FeedbackTable, project: str) -> tuple[str, datetime] | None:
    """The fine-tuned evaluator in service (`evaluator-v<version>`) and when its deployment began;
    None if none was deployed (the project's own evaluator scores its requests) or the record
    predates `deployed_at`."""
    current = table.get(**_current_key(project))
    if current is None or not current.get("deployed_at"):
        return None
    return f"evaluator-v{current['version']}", parse_timestamp(current["deployed_at"])  # as _claim_current wrote it


def scored_by_another_evaluator(calibration_map: Any, since: tuple[str, datetime] | None) -> str | None:
    """Why a calibrator must not go into service: its training labels began before the evaluator in
    service was deployed, so it maps (some of) the replaced evaluator's scores; None when it may."""
    if since is None:
        return None
    first = calibration_map.trained.get("since")
    try:
        began = datetime.fromisoformat(str(first).replace("Z", "+00:00"))
        if began.tzinfo is None:
            raise ValueError("a time without its zone")
    except (TypeError, ValueError):
        return f"the map does not say when its training labels begin; {since[0]} is in service since {since[1]:%Y-%m-%dT%H:%M:%SZ}"
    if began < since[1]:
        return (f"its training labels begin at {first}, before {since[0]} was deployed "
                f"({since[1]:%Y-%m-%dT%H:%M:%SZ}): it maps the scores of the evaluator that {since[0]} replaced")
    return None


def _claim_current(table: FeedbackTable, project: str, version: int, arn: str, now: datetime
                   ) -> dict[str, Any] | None | str:
    """Takes the project's "in service" record for `version` if it is newer than the one there
    (with `deployed_at`: when its deployment began). Returns the record it replaced (None if there
    was none), or why it did not take it."""
    from botocore.exceptions import ClientError

    key = _current_key(project)
    previous = table.get(**key)
    if previous is not None and int(previous["version"]) >= version:
        return f"version {previous['version']} is already in service; version {version} is older"
    condition = "attribute_not_exists(pk)" if previous is None else "version = :seen"
    values = {} if previous is None else {":seen": {"N": str(previous["version"])}}
    try:
        table.client.put_item(TableName=table.table_name, ConditionExpression=condition,
                              Item={"pk": {"S": key["pk"]}, "sk": {"S": key["sk"]}, "entity": {"S": "deployment"},
                                    "version": {"N": str(version)}, "model_package_arn": {"S": arn},
                                    "deployed_at": {"S": timestamp_text(now)}},
                              **({"ExpressionAttributeValues": values} if values else {}))
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return f"another deployment of {project} took over while version {version} was being prepared"
        raise
    return previous


def _release_current(table: FeedbackTable, project: str, version: int, previous: dict[str, Any] | None) -> None:
    key = _current_key(project)
    if previous is None:
        table.delete(**key)
    else:
        table.update(key["pk"], key["sk"], {"version": int(previous["version"]),
                                            "model_package_arn": previous["model_package_arn"],
                                            **({"deployed_at": previous["deployed_at"]} if previous.get("deployed_at")
                                               else {})})


def deploy_package(detail: dict[str, Any], *, sagemaker: Any, cloudwatch: Any, events: Any, endpoints: Endpoints,
                   table: FeedbackTable, setup: DeploySetup, now: datetime | None = None, s3: Any = None
                   ) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    arn = detail["ModelPackageArn"]
    version = int(detail.get("ModelPackageVersion") or arn.rsplit("/", 1)[1])  # ARNs end in /<version>
    package = table.get(**package_key(arn))
    calibrator = package is not None and package.get("kind") == CALIBRATOR
    project = package["project"] if calibrator else detail["ModelPackageGroupName"].removeprefix("feedback-loop-")
    key = {"pk": f"DEPLOY#{project}", "sk": f"{'CALIBRATOR' if calibrator else 'PACKAGE'}#{version:06d}"}
    status = sagemaker.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"]
    if status != "Approved":  # the event is stale (approval withdrawn since) or not an approval at all
        return {"project": project, "model_package_arn": arn, "version": version, "skipped": True,
                "reason": f"the model package is {status}, not Approved"}
    if calibrator:
        return _deploy_calibrator(project, arn, version, package, key, s3=s3, events=events, table=table,
                                  setup=setup, now=now)
    existing = table.put_if_absent({**key, "entity": "deployment", "project": project, "model_package_arn": arn,
                                    "created_at": timestamp_text(now)})
    if existing is not None:
        return {**existing, "already_handled": True}
    previous = _claim_current(table, project, version, arn, now)
    if isinstance(previous, str):  # a newer version is in service: an older event arrived late
        table.delete(**key)
        return {"project": project, "model_package_arn": arn, "version": version, "skipped": True, "reason": previous}
    model = f"fl-{project}-v{version}"[:63]
    config = f"{model}-{now:%Y%m%d%H%M%S}"[:63]
    endpoint = endpoint_name(project)
    try:
        sagemaker.create_model(ModelName=model, ExecutionRoleArn=setup.execution_role_arn,
                               PrimaryContainer={"ModelPackageName": arn})
        sagemaker.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1,
            "InstanceType": setup.instance_type}])
        alarms = _alarms(cloudwatch, endpoint, setup.alarm_topic_arn)
        if endpoints.exists(endpoint):
            endpoints.update(endpoint, config, deployment_config(alarms))
            action = "updated"
        else:
            endpoints.create(endpoint, config)
            action = "created"
    except Exception:
        # the champion keeps serving (a failed blue/green update rolls back): the claims are released
        # so that a redelivered event may try again
        _release_current(table, project, version, previous)
        table.delete(**key)
        raise
    change = Change(name=f"evaluator-v{version}", effective_at=now,
                    description=f"Deployed evaluator model package {arn} to endpoint {endpoint}")
    try:
        register_change(table, project, change, now)  # the next weekly report measures it
    except DuplicateChange:
        pass
    # a calibrator maps the replaced evaluator's scores: it leaves service with it
    retired = calibration.retire(table, project, f"evaluator-v{version} replaced the evaluator it calibrated", now)
    outcome = {"project": project, "model_package_arn": arn, "version": version, "model": model,
               "endpoint_config": config, "endpoint": endpoint, "action": action, "alarms": alarms,
               "change": change.name, "calibrator_retired": retired["map_id"] if retired else None}
    put_event(events, setup.bus, EVALUATOR_DEPLOYED, outcome)
    table.update(key["pk"], key["sk"], {"outcome": json.dumps(outcome)})
    return outcome


def _deploy_calibrator(project: str, arn: str, version: int, package: dict[str, Any], key: dict[str, str], *,
                       s3: Any, events: Any, table: FeedbackTable, setup: DeploySetup, now: datetime
                       ) -> dict[str, Any]:
    """An approved calibrator package: its map (calibration.json in model.tar.gz) put in service for
    the project (logic/calibration.deploy: the bucket, the table's pointer, a change), unless a newer
    version is in service already; EvaluatorDeployed with kind `calibrator`. Once per package."""
    import io
    import tarfile

    from feedback_loop.calibration.train import MAP_FILE

    existing = table.put_if_absent({**key, "entity": "deployment", "project": project, "model_package_arn": arn,
                                    "kind": CALIBRATOR, "created_at": timestamp_text(now)})
    if existing is not None:
        return {**existing, "already_handled": True}
    current = table.get(**calibration.pointer_key(project))
    if current is not None and int(current.get("model_package_version") or 0) > version:
        table.delete(**key)
        return {"project": project, "model_package_arn": arn, "version": version, "kind": CALIBRATOR, "skipped": True,
                "reason": f"calibrator version {current['model_package_version']} is in service; {version} is older"}
    try:
        bucket, _, object_key = package["model_data"].removeprefix("s3://").partition("/")
        body = s3.get_object(Bucket=bucket, Key=object_key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            member = tar.extractfile(MAP_FILE)
            if member is None:
                raise ValueError(f"{package['model_data']} holds no {MAP_FILE}")
            text = member.read().decode()
        stale = scored_by_another_evaluator(CalibrationMap.loads(text), evaluator_since(table, project))
        if stale is not None:  # auto: the fine-tuned challenger of the same labels won, or a later one
            table.update(key["pk"], key["sk"], {"outcome": json.dumps({"skipped": True, "reason": stale})})
            return {"project": project, "model_package_arn": arn, "version": version, "kind": CALIBRATOR,
                    "skipped": True, "reason": stale}
        pointer = calibration.deploy(table, s3, setup.bucket, project, text, deployed_by=f"model registry {arn}",
                                     now=now, package={"model_package_arn": arn, "model_package_version": version})
    except Exception:
        table.delete(**key)  # a redelivered event may try again
        raise
    outcome = {"project": project, "kind": CALIBRATOR, "model_package_arn": arn, "version": version,
               "map_id": pointer["map_id"], "key": pointer["key"], "action": "in service",
               "change": f"calibrator-{pointer['map_id']}"}
    put_event(events, setup.bus, EVALUATOR_DEPLOYED, outcome)
    table.update(key["pk"], key["sk"], {"outcome": json.dumps(outcome)})
    return outcome
