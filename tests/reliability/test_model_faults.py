"""The deploy function under faults: approvals out of order, stale or rejected packages, and an
endpoint update that fails. No older, failed or rejected model goes into service, and the champion
keeps serving until a newer approved one really replaces it."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from feedback_loop.logic.changes import list_changes
from feedback_loop.registry.deploy import DeploySetup, SageMakerEndpoints, deploy_package, endpoint_name

pytestmark = pytest.mark.integration


class Endpoints(SageMakerEndpoints):
    """The emulator lacks UpdateEndpoint: updates are recorded, or fail when told to."""

    def __init__(self, sagemaker, fail: bool = False):
        super().__init__(sagemaker)
        self.fail = fail
        self.updates: list[str] = []

    def update(self, name, config, deployment):
        if self.fail:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "injected: update failed"}},
                              "UpdateEndpoint")
        self.updates.append(config)


def package(sagemaker, group: str, version: int, status: str = "Approved") -> dict:
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": f"s3://b/m{version}.tar.gz"}],
                                "SupportedContentTypes": ["application/json"],
                                "SupportedResponseMIMETypes": ["application/json"]})["ModelPackageArn"]
    return {"ModelPackageArn": arn, "ModelPackageGroupName": group, "ModelPackageVersion": version,
            "ModelApprovalStatus": "Approved"}  # what the event says, whatever the package says now


@pytest.fixture
def deploy(stack, table):
    sagemaker = boto3.client("sagemaker")

    def run(detail: dict, endpoints: Endpoints) -> dict:
        return deploy_package(detail, sagemaker=sagemaker, cloudwatch=boto3.client("cloudwatch"),
                              events=boto3.client("events"), endpoints=endpoints, table=table,
                              setup=DeploySetup("arn:aws:iam::123456789012:role/x", bus=stack.bus_name))

    return sagemaker, run


def serving_config(sagemaker, project: str) -> str:
    return sagemaker.describe_endpoint(EndpointName=endpoint_name(project))["EndpointConfigName"]


def test_a_late_approval_of_an_older_version_does_not_replace_a_newer_one(deploy, table) -> None:
    sagemaker, run = deploy
    project = "faults-order"
    group = project  # not feedback-loop-*: the stack's own deploy function (its rule) leaves these packages alone
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    first, second = package(sagemaker, group, 1), package(sagemaker, group, 2)
    endpoints = Endpoints(sagemaker)
    newer = run(second, endpoints)  # version 2's approval arrives first
    late = run(first, endpoints)
    assert newer["action"] == "created"
    assert late["skipped"] and "version 2 is already in service" in late["reason"]
    assert serving_config(sagemaker, project) == newer["endpoint_config"]
    assert endpoints.updates == []
    assert [c.name for c in list_changes(table, project)] == ["evaluator-v2"]


def test_a_package_that_is_no_longer_approved_is_not_deployed(deploy, table) -> None:
    sagemaker, run = deploy
    project = "faults-rejected"
    group = project  # not feedback-loop-*: the stack's own deploy function (its rule) leaves these packages alone
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    detail = package(sagemaker, group, 1, status="Rejected")
    outcome = run(detail, Endpoints(sagemaker))
    assert outcome["skipped"] and "Rejected" in outcome["reason"]
    models = sagemaker.list_models()["Models"]
    assert not [m for m in models if m["ModelName"].startswith(f"fl-{project}-")]
    with pytest.raises(ClientError):
        sagemaker.describe_endpoint(EndpointName=endpoint_name(project))


def test_a_failed_update_keeps_the_champion_serving_and_can_be_retried(deploy, table) -> None:
    sagemaker, run = deploy
    project = "faults-update"
    group = project  # not feedback-loop-*: the stack's own deploy function (its rule) leaves these packages alone
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    champion = run(package(sagemaker, group, 1), Endpoints(sagemaker))
    challenger = package(sagemaker, group, 2)
    with pytest.raises(ClientError):
        run(challenger, Endpoints(sagemaker, fail=True))
    assert serving_config(sagemaker, project) == champion["endpoint_config"]  # still the champion
    assert [c.name for c in list_changes(table, project)] == ["evaluator-v1"]  # nothing claims v2 is live
    first = table.get(f"DEPLOY#{project}", "CURRENT")
    assert first["version"] == 1 and first["deployed_at"]  # released back as it was, its time kept

    working = Endpoints(sagemaker)
    redelivered = run(challenger, working)  # EventBridge retries the failed invocation
    assert redelivered.get("action") == "updated", redelivered
    assert working.updates == [redelivered["endpoint_config"]]
    second = table.get(f"DEPLOY#{project}", "CURRENT")
    assert second["version"] == 2 and second["deployed_at"] >= first["deployed_at"]
    assert [c.name for c in list_changes(table, project)] == ["evaluator-v1", "evaluator-v2"]
