"""`feedback-loop doctor --stack NAME`: what a deployed stack needs from its account and region, checked
before it is needed (the first training job runs a week after the deploy; its quota is 0 in new accounts).

Each check reads one thing through AWS's APIs (boto3 only: the package's core dependencies) and says
ok, warn or FAIL with what to do. Read-only: it changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

OK, WARN, FAIL = "ok", "warn", "FAIL"
# the permissions the checks need (docs/DEPLOY.md)
PERMISSIONS = ("cloudformation:DescribeStacks", "cloudformation:GetTemplate", "cloudformation:ListStackResources",
               "dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive", "s3:ListBucket", "s3:GetObject", "events:DescribeRule",
               "sns:ListSubscriptionsByTopic", "servicequotas:ListServiceQuotas",
               "servicequotas:ListAWSDefaultServiceQuotas")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Stack:
    name: str
    region: str
    status: str
    outputs: dict[str, str]
    parameters: dict[str, str]


def describe(cloudformation: Any, name: str) -> Stack:
    found = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    return Stack(name, cloudformation.meta.region_name, found["StackStatus"],
                 {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])},
                 {p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue", "")) for p in found.get("Parameters", [])})


def check_stack(stack: Stack, **_: Any) -> Check:
    healthy = stack.status.endswith("_COMPLETE") and "ROLLBACK" not in stack.status and "DELETE" not in stack.status
    return Check("stack", OK if healthy else FAIL, f"{stack.name} in {stack.region}: {stack.status}",
                 "" if healthy else "see the stack's events in the CloudFormation console, then deploy again")


def check_table(stack: Stack, dynamodb: Any, **_: Any) -> Check:
    name = stack.outputs["TableName"]
    status = dynamodb.describe_table(TableName=name)["Table"]["TableStatus"]
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"].get("TimeToLiveStatus", "DISABLED")
    if status != "ACTIVE":
        return Check("table", FAIL, f"{name} is {status}", "wait for it, or see the stack's events")
    if ttl not in ("ENABLED", "ENABLING"):
        return Check("table", WARN, f"{name} is ACTIVE, its TTL {ttl}: nothing expires",
                     "enable TTL on expires_at (the template does; was the table re-attached by hand?)")
    return Check("table", OK, f"{name} is ACTIVE, TTL on expires_at {ttl}")


def check_bucket(stack: Stack, s3: Any, **_: Any) -> Check:
    bucket = stack.outputs["DataBucket"]
    s3.head_bucket(Bucket=bucket)
    return Check("bucket", OK, f"{bucket} is there and readable")


def _default_bus_rule(events: Any, physical_id: str) -> dict[str, Any] | None:
    """The rule as the default event bus describes it; None for a rule on another bus (the stack's own
    carries the retraining events), whose physical id is `bus|rule` or a name the default bus does not
    know. Schedules run only on the default bus."""
    if "|" in physical_id:
        return None
    try:
        return events.describe_rule(Name=physical_id)
    except events.exceptions.ResourceNotFoundException:
        return None


def check_schedule(stack: Stack, cloudformation: Any, events: Any, **_: Any) -> Check:
    rules = [r["PhysicalResourceId"] for r in _resources(cloudformation, stack.name) if r["ResourceType"] == "AWS::Events::Rule"]
    scheduled = [rule for rule in filter(None, (_default_bus_rule(events, name) for name in rules))
                 if rule.get("ScheduleExpression")]
    if not scheduled:
        return Check("schedule", FAIL, "no scheduled rule in the stack", "deploy the stack again")
    off = [r["Name"] for r in scheduled if r["State"] != "ENABLED"]
    expressions = ", ".join(r["ScheduleExpression"] for r in scheduled)
    if off:
        return Check("schedule", FAIL, f"{expressions}: disabled ({', '.join(off)})",
                     f"aws events enable-rule --name {off[0]}")
    return Check("schedule", OK, f"the weekly analysis runs {expressions} (UTC)")


def check_alarms(stack: Stack, sns: Any, **_: Any) -> Check:
    topic = stack.outputs["AlarmTopicArn"]
    subscriptions = [s for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic)
                     for s in page["Subscriptions"]]
    confirmed = [s["Endpoint"] for s in subscriptions if s["SubscriptionArn"].startswith("arn:")]
    pending = [s["Endpoint"] for s in subscriptions if s["SubscriptionArn"] == "PendingConfirmation"]
    if confirmed:
        return Check("alarms", OK, f"alarms reach {', '.join(confirmed)}")
    if pending:
        return Check("alarms", FAIL, f"nobody receives the alarms yet: {', '.join(pending)} has not confirmed",
                     "click the link in the email AWS sent (subject 'AWS Notification - Subscription Confirmation')")
    return Check("alarms", FAIL, "nobody receives the stack's alarms (AlarmEmail is empty)",
                 "sam deploy --parameter-overrides AlarmEmail=you@example.com, or subscribe to AlarmTopicArn")


def _quota(quotas: Any, name: str) -> float | None:
    """The account's value of a SageMaker quota named `name`, else AWS's default, else None."""
    for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
        for page in quotas.get_paginator(operation).paginate(ServiceCode="sagemaker"):
            for quota in page["Quotas"]:
                if quota["QuotaName"] == name:
                    return float(quota["Value"])
    return None


def _quota_check(quotas: Any, label: str, name: str, fix: str) -> Check:
    value = _quota(quotas, name)
    if value is None:
        return Check(label, WARN, f"Service Quotas knows no '{name}' in this region", fix)
    if value < 1:
        return Check(label, FAIL, f"'{name}' is {value:g}: the call will fail with ResourceLimitExceeded", fix)
    return Check(label, OK, f"'{name}' is {value:g}")


def check_training_quota(stack: Stack, quotas: Any, **_: Any) -> Check:
    instance = stack.parameters.get("TrainingInstanceType", "ml.g5.xlarge")
    return _quota_check(quotas, "training quota", f"{instance} for training job usage",
                        "ask for 1 in the Service Quotas console (Amazon SageMaker), or deploy with "
                        "EvaluatorTrainingMode=frozen TrainingInstanceType=ml.m5.xlarge (CPU)")


def check_endpoint_quota(stack: Stack, quotas: Any, **_: Any) -> Check:
    instance = stack.parameters.get("EndpointInstanceType", "ml.m5.large")
    return _quota_check(quotas, "endpoint quota", f"{instance} for endpoint usage",
                        "ask for 1 in the Service Quotas console (Amazon SageMaker), or choose another "
                        "EndpointInstanceType")


def check_images(stack: Stack, cloudformation: Any, **_: Any) -> Check:
    given = [p for p in ("TrainingImageUri", "InferenceImageUri") if stack.parameters.get(p)]
    if len(given) == 2:
        return Check("images", OK, "TrainingImageUri and InferenceImageUri are given")
    template = cloudformation.get_template(StackName=stack.name, TemplateStage="Processed")["TemplateBody"]
    mapped = template.get("Mappings", {}).get("EvaluatorImages", {}) if isinstance(template, dict) else {}
    if stack.region in mapped:
        return Check("images", OK, f"the evaluator's images are mapped for {stack.region}")
    return Check("images", FAIL, f"no evaluator image is mapped for {stack.region}",
                 "deploy with TrainingImageUri and InferenceImageUri (docs/DEPLOY.md, Regions and quotas)")


def check_base_model(stack: Stack, s3: Any, **_: Any) -> Check:
    from feedback_loop.evaluator import base_model

    name = stack.parameters.get("EvaluatorBaseModel") or base_model.DEFAULT_BASE_MODEL
    copy = base_model.staged(s3, stack.outputs["DataBucket"], name)
    if copy is None:
        return Check("base model", WARN, f"{name} is not staged in the bucket: each training job downloads it from "
                     "the Hugging Face hub, which fails without internet egress",
                     f"feedback-loop stage-model --stack {stack.name}")
    return Check("base model", OK, f"{name} is staged: {copy.uri} ({copy.files} files, {copy.bytes / 1e6:.1f} MB)")


def _resources(cloudformation: Any, stack: str) -> Iterator[dict[str, Any]]:
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack):
        yield from page["StackResourceSummaries"]


CHECKS: tuple[Callable[..., Check], ...] = (check_stack, check_table, check_bucket, check_schedule, check_alarms,
                                           check_training_quota, check_endpoint_quota, check_images, check_base_model)


def run_checks(stack: Stack, clients: dict[str, Any]) -> list[Check]:
    """Every check; one that cannot read what it needs is a FAIL that says why (e.g. a missing permission)."""
    results = []
    for check in CHECKS:
        label = check.__name__.removeprefix("check_").replace("_", " ")
        try:
            results.append(check(stack, **clients))
        except (ClientError, BotoCoreError, KeyError) as error:
            missing = f"the stack has no output {error}" if isinstance(error, KeyError) else str(error)
            results.append(Check(label, FAIL, f"could not be checked: {missing}",
                                 "the permissions doctor needs: docs/DEPLOY.md, Checking a deployed stack"))
    return results
