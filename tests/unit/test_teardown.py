"""`feedback-loop teardown`: what the stack's deploy function created (by deploy_package itself, in the
emulator's SageMaker and CloudWatch: the session's local stack) is listed from the stack's table,
deleted with --yes, and nothing of another stack's is touched."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from feedback_loop import cli, teardown
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.local.template import Template
from feedback_loop.registry.deploy import DeploySetup, SageMakerEndpoints, deploy_package, endpoint_name
from tests.conftest import ROOT

REGION = "us-east-1"


class Endpoints(SageMakerEndpoints):
    """moto has no UpdateEndpoint: an update deletes and recreates the endpoint (its second strategy)."""

    def update(self, name: str, config: str, deployment: dict[str, Any]) -> None:
        self.sagemaker.delete_endpoint(EndpointName=name)
        self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)


def deploy(sagemaker: Any, table: FeedbackTable, project: str, version: int) -> dict[str, Any]:
    group = project  # not feedback-loop-*: the session stack's own deploy function leaves these packages alone
    if version == 1:
        sagemaker.create_model_package_group(ModelPackageGroupName=group)
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": f"s3://b/{project}{version}.tar.gz"}],
                                "SupportedContentTypes": ["application/json"],
                                "SupportedResponseMIMETypes": ["application/json"]})["ModelPackageArn"]
    detail = {"ModelPackageArn": arn, "ModelPackageGroupName": group, "ModelPackageVersion": version}
    return deploy_package(detail, sagemaker=sagemaker, cloudwatch=boto3.client("cloudwatch", region_name=REGION),
                          events=boto3.client("events", region_name=REGION), endpoints=Endpoints(sagemaker),
                          table=table, setup=DeploySetup("arn:aws:iam::123456789012:role/x", bus="default"))


@pytest.fixture
def deployed(stack: Any) -> Any:
    properties = Template(ROOT / "template.yaml").body["Resources"]["FeedbackTable"]["Properties"]
    cloudformation, run = boto3.client("cloudformation"), uuid.uuid4().hex[:8]
    name = f"teardown-{run}"
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps({
        "Resources": {"FeedbackTable": {"Type": "AWS::DynamoDB::Table", "Properties": properties}},
        "Outputs": {"TableName": {"Value": {"Ref": "FeedbackTable"}}}}))
    table_name = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["Outputs"][0]["OutputValue"]
    sagemaker, table = boto3.client("sagemaker"), FeedbackTable(table_name, client=boto3.client("dynamodb"))
    shop, docs = f"td-shop-{run}", f"td-docs-{run}"
    outcomes = [deploy(sagemaker, table, shop, 1), deploy(sagemaker, table, shop, 2), deploy(sagemaker, table, docs, 1)]
    # another stack's evaluator in the same account
    other = f"other-{run}"
    sagemaker.create_model(ModelName=other, ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
                           PrimaryContainer={"Image": "img"})
    sagemaker.create_endpoint_config(EndpointConfigName=other, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": other, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName=other, EndpointConfigName=other)
    yield sagemaker, name, table_name, (shop, docs, other), outcomes
    for deleted in (lambda: sagemaker.delete_endpoint(EndpointName=other),
                    lambda: sagemaker.delete_endpoint_config(EndpointConfigName=other),
                    lambda: sagemaker.delete_model(ModelName=other)):
        deleted()


def _ours(names: list[str], run: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(part in n for part in run)}


def test_everything_the_deployments_created_is_found_and_deleted_and_nothing_else(deployed) -> None:
    sagemaker, _, table, (shop, docs, other), outcomes = deployed
    cloudwatch = boto3.client("cloudwatch")
    found = teardown.find(boto3.client("dynamodb"), sagemaker, cloudwatch, table)
    assert found.endpoints == {endpoint_name(shop), endpoint_name(docs)}
    assert found.endpoint_configs == {o["endpoint_config"] for o in outcomes}
    assert found.models == {f"fl-{shop}-v1", f"fl-{shop}-v2", f"fl-{docs}-v1"}
    assert found.alarms == {a for o in outcomes for a in o["alarms"]} and len(found.alarms) == 4
    said: list[str] = []
    assert teardown.remove(found, sagemaker, cloudwatch, said.append) == 2 + 3 + 3 + 4
    run = (shop, docs, other)
    assert _ours([e["EndpointName"] for e in sagemaker.list_endpoints(MaxResults=100)["Endpoints"]], run) == {other}
    assert _ours([m["ModelName"] for m in sagemaker.list_models(MaxResults=100)["Models"]], run) == {other}
    assert _ours([a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]], run) == set()
    assert teardown.find(boto3.client("dynamodb"), sagemaker, cloudwatch, table).lines() == []
    # a second run, or a resource deleted by hand in between: passed over
    again = teardown.remove(found, sagemaker, cloudwatch, said.append)
    assert again == 4 and sum(line.startswith("already gone") for line in said) == 8


def test_the_command_lists_without_yes_and_deletes_with_it(deployed, capsys: pytest.CaptureFixture[str]) -> None:
    sagemaker, name, _, (shop, docs, other), _ = deployed
    run = (shop, docs, other)

    def endpoints() -> set[str]:
        return _ours([e["EndpointName"] for e in sagemaker.list_endpoints(MaxResults=100)["Endpoints"]], run)

    assert cli.main(["teardown", "--stack", name]) == 0
    listed = capsys.readouterr().out
    assert f"endpoint {endpoint_name(shop)}" in listed and "nothing deleted: run again with --yes" in listed
    assert len(endpoints()) == 3
    assert cli.main(["teardown", "--stack", name, "--yes"]) == 0
    assert f"now `sam delete --stack-name {name}`" in capsys.readouterr().out
    assert endpoints() == {other}
    assert cli.main(["teardown", "--stack", name]) == 0
    assert f"nothing that {name}'s functions created is left" in capsys.readouterr().out
