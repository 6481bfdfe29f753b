"""`feedback-loop teardown`: what the stack's deploy function created (by deploy_package itself, in moto's
SageMaker and CloudWatch) is listed from the stack's table, deleted with --yes, and nothing of
another stack's is touched."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

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
    group = f"feedback-loop-{project}"
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
def deployed(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        properties = Template(ROOT / "template.yaml").body["Resources"]["FeedbackTable"]["Properties"]
        cloudformation = boto3.client("cloudformation")
        cloudformation.create_stack(StackName="feedback-loop", TemplateBody=json.dumps({
            "Resources": {"FeedbackTable": {"Type": "AWS::DynamoDB::Table", "Properties": properties}},
            "Outputs": {"TableName": {"Value": {"Ref": "FeedbackTable"}}}}))
        name = cloudformation.describe_stacks(StackName="feedback-loop")["Stacks"][0]["Outputs"][0]["OutputValue"]
        sagemaker, table = boto3.client("sagemaker"), FeedbackTable(name, client=boto3.client("dynamodb"))
        outcomes = [deploy(sagemaker, table, "shop", 1), deploy(sagemaker, table, "shop", 2),
                    deploy(sagemaker, table, "docs", 1)]
        # another stack's evaluator in the same account
        sagemaker.create_model(ModelName="other-model", ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
                               PrimaryContainer={"Image": "img"})
        sagemaker.create_endpoint_config(EndpointConfigName="other-config", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": "other-model", "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large"}])
        sagemaker.create_endpoint(EndpointName="other-stack-evaluator", EndpointConfigName="other-config")
        yield sagemaker, name, outcomes


def test_everything_the_deployments_created_is_found_and_deleted_and_nothing_else(deployed) -> None:
    sagemaker, table, outcomes = deployed
    found = teardown.find(boto3.client("dynamodb"), sagemaker, boto3.client("cloudwatch"), table)
    assert found.endpoints == {endpoint_name("shop"), endpoint_name("docs")}
    assert found.endpoint_configs == {o["endpoint_config"] for o in outcomes}
    assert found.models == {"fl-shop-v1", "fl-shop-v2", "fl-docs-v1"}
    assert found.alarms == {a for o in outcomes for a in o["alarms"]} and len(found.alarms) == 4
    said: list[str] = []
    assert teardown.remove(found, sagemaker, boto3.client("cloudwatch"), said.append) == 2 + 3 + 3 + 4
    assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == ["other-stack-evaluator"]
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == ["other-model"]
    assert boto3.client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert teardown.find(boto3.client("dynamodb"), sagemaker, boto3.client("cloudwatch"), table).lines() == []
    # a second run, or a resource deleted by hand in between: passed over
    again = teardown.remove(found, sagemaker, boto3.client("cloudwatch"), said.append)
    assert again == 4 and sum(line.startswith("already gone") for line in said) == 8


def test_the_command_lists_without_yes_and_deletes_with_it(deployed, capsys: pytest.CaptureFixture[str]) -> None:
    sagemaker, _, _ = deployed
    assert cli.main(["teardown", "--stack", "feedback-loop"]) == 0
    listed = capsys.readouterr().out
    assert f"endpoint {endpoint_name('shop')}" in listed and "nothing deleted: run again with --yes" in listed
    assert len(sagemaker.list_endpoints()["Endpoints"]) == 3
    assert cli.main(["teardown", "--stack", "feedback-loop", "--yes"]) == 0
    assert "now `sam delete --stack-name feedback-loop`" in capsys.readouterr().out
    assert len(sagemaker.list_endpoints()["Endpoints"]) == 1
    assert cli.main(["teardown", "--stack", "feedback-loop"]) == 0
    assert "nothing that feedback-loop's functions created is left" in capsys.readouterr().out
