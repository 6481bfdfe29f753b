"""`feedback-loop doctor`: each check against a stack in the emulator's CloudFormation (its table,
bucket, schedule rule and alarm topic made from a template; the session's local stack, since moto's
in-process mock would reset the backends that stack runs on), Service Quotas answered by a fake (the
emulator serves no SageMaker quota): what passes, what fails with what to do, and the exit code."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from feedback_loop import cli, doctor
from feedback_loop.local.template import Template
from tests.conftest import ROOT

REGION = "us-east-1"


class Quotas:
    """Service Quotas' two listings of SageMaker quotas: the account's applied values, AWS's defaults."""

    def __init__(self, applied: dict[str, float], defaults: dict[str, float]):
        self.values = {"list_service_quotas": applied, "list_aws_default_service_quotas": defaults}

    def get_paginator(self, operation: str) -> Any:
        values = self.values[operation]

        class Pages:
            def paginate(self, ServiceCode: str) -> list[dict[str, Any]]:  # noqa: N803
                assert ServiceCode == "sagemaker"
                return [{"Quotas": [{"QuotaName": n, "Value": v} for n, v in values.items()]}]
        return Pages()


def template(schedule_state: str = "ENABLED", mapped: bool = True) -> str:
    table = Template(ROOT / "template.yaml").body["Resources"]["FeedbackTable"]["Properties"]
    resources = {
        "FeedbackTable": {"Type": "AWS::DynamoDB::Table", "Properties": table},
        "DataBucket": {"Type": "AWS::S3::Bucket"},
        "AlarmTopic": {"Type": "AWS::SNS::Topic"},
        "Schedule": {"Type": "AWS::Events::Rule", "Properties": {
            "ScheduleExpression": "cron(15 0 ? * MON *)", "State": schedule_state}},
        # a rule on the stack's own bus (the retraining events): the default bus does not know it
        "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": {"Fn::Sub": "${AWS::StackName}-bus"}}},
        "OnBus": {"Type": "AWS::Events::Rule", "DependsOn": "Bus", "Properties": {
            "EventBusName": {"Fn::Sub": "${AWS::StackName}-bus"}, "EventPattern": {"source": ["feedback-loop"]}}},
    }
    return json.dumps({
        "Parameters": {"TrainingInstanceType": {"Type": "String", "Default": "ml.g5.xlarge"},
                       "EndpointInstanceType": {"Type": "String", "Default": "ml.m5.large"}},
        "Mappings": {"EvaluatorImages": {REGION if mapped else "xx-nowhere-1": {"Training": "t", "Inference": "i"}}},
        "Resources": resources,
        "Outputs": {"TableName": {"Value": {"Ref": "FeedbackTable"}}, "DataBucket": {"Value": {"Ref": "DataBucket"}},
                    "AlarmTopicArn": {"Value": {"Ref": "AlarmTopic"}}}})


def run(body: str, quotas: Quotas, alarm_email: str = "") -> dict[str, doctor.Check]:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    name = f"doctor-{uuid.uuid4().hex[:8]}"
    cloudformation.create_stack(StackName=name, TemplateBody=body)
    stack = doctor.describe(cloudformation, name)
    if alarm_email:  # the template's AWS::SNS::Subscription, which moto's CloudFormation does not make
        boto3.client("sns", region_name=REGION).subscribe(TopicArn=stack.outputs["AlarmTopicArn"],
                                                          Protocol="email", Endpoint=alarm_email)
    clients = {"cloudformation": cloudformation, "quotas": quotas,
               **{name: boto3.client(name, region_name=REGION) for name in ("dynamodb", "s3", "events", "sns")}}
    dynamodb = clients["dynamodb"]
    dynamodb.update_time_to_live(TableName=stack.outputs["TableName"],  # moto's CloudFormation leaves TTL off
                                 TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    return {check.name: check for check in doctor.run_checks(stack, clients)}


GPU_TRAINING, ENDPOINT = "ml.g5.xlarge for training job usage", "ml.m5.large for endpoint usage"


def test_a_new_account_without_gpu_quota_or_alarm_address_fails_with_what_to_do(stack) -> None:
    checks = run(template(), Quotas(applied={}, defaults={GPU_TRAINING: 0, ENDPOINT: 4}))
    assert {name: c.status for name, c in checks.items()} == {
        "stack": "ok", "table": "ok", "bucket": "ok", "schedule": "ok", "alarms": "FAIL",
        "training quota": "FAIL", "endpoint quota": "ok", "images": "ok", "base model": "warn"}
    assert checks["base model"].fix.startswith("feedback-loop stage-model --stack doctor-")
    assert "ResourceLimitExceeded" in checks["training quota"].detail
    assert "frozen" in checks["training quota"].fix and "AlarmEmail" in checks["alarms"].fix
    assert "cron(15 0 ? * MON *)" in checks["schedule"].detail


def test_an_account_with_its_quota_and_a_subscription_passes(stack) -> None:
    checks = run(template(), Quotas(applied={GPU_TRAINING: 1}, defaults={GPU_TRAINING: 0, ENDPOINT: 4}),
                 alarm_email="ops@example.com")
    assert checks["training quota"].status == "ok"  # the account's applied value before AWS's default
    # the emulator confirms email subscriptions at once; in AWS one is PendingConfirmation until clicked
    assert checks["alarms"].status == "ok" and "ops@example.com" in checks["alarms"].detail
    assert checks["base model"].status == "warn"


def test_a_staged_base_model_is_seen(stack, tmp_path) -> None:
    from feedback_loop.evaluator import base_model

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"0" * 1000)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=(bucket := f"doctor-{uuid.uuid4().hex[:8]}"))
    base_model.stage(s3, bucket, "org/encoder", tmp_path)
    stack = doctor.Stack("s", REGION, "CREATE_COMPLETE", {"DataBucket": bucket}, {"EvaluatorBaseModel": "org/encoder"})
    check = doctor.check_base_model(stack, s3=s3)
    assert check.status == "ok" and f"s3://{bucket}/base-models/org--encoder/ (2 files" in check.detail
    other = doctor.check_base_model(doctor.Stack("s", REGION, "CREATE_COMPLETE", {"DataBucket": bucket}, {}), s3=s3)
    assert other.status == "warn"  # the stack trains from another model than the one staged


def test_a_disabled_schedule_an_unmapped_region_and_an_unknown_quota_are_said(stack) -> None:
    checks = run(template(schedule_state="DISABLED", mapped=False), Quotas(applied={}, defaults={}),
                 alarm_email="ops@example.com")
    assert checks["schedule"].status == "FAIL" and "enable-rule" in checks["schedule"].fix
    assert checks["images"].status == "FAIL" and "TrainingImageUri" in checks["images"].fix
    assert checks["training quota"].status == "warn" and checks["endpoint quota"].status == "warn"


def test_the_command_prints_each_check_and_exits_1_on_a_failure(stack, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"doctor-cli-{uuid.uuid4().hex[:8]}"
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName=name, TemplateBody=template())
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    real = boto3.session.Session.client
    monkeypatch.setattr(boto3.session.Session, "client", lambda self, name, **kw: Quotas(
        {}, {GPU_TRAINING: 0, ENDPOINT: 1}) if name == "service-quotas" else real(self, name, **kw))
    assert cli.main(["doctor", "--stack", name]) == 1
    printed = capsys.readouterr().out
    assert "FAIL  alarms" in printed and "-> sam deploy --parameter-overrides AlarmEmail=" in printed
    assert printed.strip().endswith("7 of 9 checks passed; failed: alarms, training quota")
    with pytest.raises(SystemExit, match="no-such-stack"):
        cli.main(["doctor", "--stack", "no-such-stack"])


def test_an_email_that_has_not_confirmed_is_not_someone_who_receives_alarms() -> None:
    class Sns:  # as SNS lists a subscription until its email's link is clicked
        def get_paginator(self, operation: str) -> Any:
            assert operation == "list_subscriptions_by_topic"

            class Pages:
                def paginate(self, TopicArn: str) -> list[dict[str, Any]]:  # noqa: N803
                    return [{"Subscriptions": [{"SubscriptionArn": "PendingConfirmation", "Endpoint": "ops@example.com"}]}]
            return Pages()

    stack = doctor.Stack("s", REGION, "CREATE_COMPLETE", {"AlarmTopicArn": "arn:aws:sns:us-east-1:1:t"}, {})
    check = doctor.check_alarms(stack, sns=Sns())
    assert check.status == "FAIL" and "has not confirmed" in check.detail and "Subscription Confirmation" in check.fix
