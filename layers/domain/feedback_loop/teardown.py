"""`feedback-loop teardown --stack NAME`: what the stack's functions created outside CloudFormation, which
`sam delete` therefore leaves behind: each deployed evaluator's endpoint (it bills every hour it is up),
its endpoint configs and models, and the alarms the deploy function put on it.

The list comes from the stack's own table (each deployment's recorded outcome), so another stack's
evaluators in the same account are never touched. Run it before `sam delete` (the table is retained,
but its name is read from the stack's outputs). Without `--yes` it only lists; the model packages in
the registry (free, and the evaluators' history) and the retained table and bucket are left.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from feedback_loop.registry.deploy import endpoint_name

PERMISSIONS = ("dynamodb:Scan", "sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig",
               "sagemaker:DescribeModel", "cloudwatch:DescribeAlarms", "sagemaker:DeleteEndpoint", "sagemaker:DeleteEndpointConfig", "sagemaker:DeleteModel",
               "cloudwatch:DeleteAlarms")


@dataclass
class Leftovers:
    """Names of what the stack's deployments created, by kind."""

    endpoints: set[str] = field(default_factory=set)
    endpoint_configs: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)
    alarms: set[str] = field(default_factory=set)

    def lines(self) -> list[str]:
        return [f"{kind.replace('_', ' ')[:-1]} {name}" for kind in ("endpoints", "endpoint_configs", "models", "alarms")
                for name in sorted(getattr(self, kind))]


def deployments(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    """The recorded outcome of every deployment in the table (registry/deploy.py writes them)."""
    outcomes = []
    for page in dynamodb.get_paginator("scan").paginate(
            TableName=table, FilterExpression="#entity = :d AND begins_with(sk, :p)",
            ExpressionAttributeValues={":d": {"S": "deployment"}, ":p": {"S": "PACKAGE#"}},
            ExpressionAttributeNames={"#entity": "entity", "#project": "project", "#outcome": "outcome"},
            ProjectionExpression="#project, #outcome"):
        for item in page["Items"]:
            if "outcome" in item:
                outcomes.append(json.loads(item["outcome"]["S"]))
            else:  # a deployment that did not finish: its project's endpoint may still be there
                outcomes.append({"project": item["project"]["S"]})
    return outcomes


def _missing(error: ClientError) -> bool:
    code, message = error.response["Error"]["Code"], error.response["Error"].get("Message", "")
    return code in ("ResourceNotFound", "ValidationException") and ("not found" in message.lower() or
                                                                   "could not find" in message.lower())


def find(dynamodb: Any, sagemaker: Any, cloudwatch: Any, table: str) -> Leftovers:
    """What is still there of what the stack's deployments created (an endpoint's current config and
    models are read from SageMaker: an update may have replaced them since the outcome was written)."""
    found = Leftovers()
    for outcome in deployments(dynamodb, table):
        found.models.update(filter(None, [outcome.get("model")]))
        found.endpoint_configs.update(filter(None, [outcome.get("endpoint_config")]))
        found.alarms.update(outcome.get("alarms", []))
        found.endpoints.add(outcome.get("endpoint") or endpoint_name(outcome["project"]))
    for endpoint in list(found.endpoints):
        described = _described(lambda: sagemaker.describe_endpoint(EndpointName=endpoint))
        if described is None:
            found.endpoints.discard(endpoint)
        else:
            found.endpoint_configs.add(described["EndpointConfigName"])
    for config in list(found.endpoint_configs):
        variants = _described(lambda: sagemaker.describe_endpoint_config(EndpointConfigName=config))
        if variants is None:
            found.endpoint_configs.discard(config)
        else:
            found.models.update(v["ModelName"] for v in variants["ProductionVariants"])
    found.models = {m for m in found.models if _described(lambda: sagemaker.describe_model(ModelName=m))}
    alarms = sorted(found.alarms)
    found.alarms = {a["AlarmName"] for start in range(0, len(alarms), 100)
                    for a in cloudwatch.describe_alarms(AlarmNames=alarms[start:start + 100])["MetricAlarms"]}
    return found


def _described(describe: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """SageMaker's description, or None where it is gone."""
    try:
        return describe()
    except ClientError as error:
        if _missing(error):
            return None
        raise


def remove(found: Leftovers, sagemaker: Any, cloudwatch: Any, say: Callable[[str], None] = print) -> int:
    """Deletes the endpoints first (then nothing uses the configs and models), then the rest; what is
    already gone is passed over. Returns how many were deleted."""
    steps = [(found.endpoints, lambda n: sagemaker.delete_endpoint(EndpointName=n), "endpoint"),
             (found.endpoint_configs, lambda n: sagemaker.delete_endpoint_config(EndpointConfigName=n), "endpoint config"),
             (found.models, lambda n: sagemaker.delete_model(ModelName=n), "model")]
    deleted = 0
    for names, delete, kind in steps:
        for name in sorted(names):
            try:
                delete(name)
            except ClientError as error:
                if not _missing(error):
                    raise
                say(f"already gone: {kind} {name}")
                continue
            deleted += 1
            say(f"deleted {kind} {name}")
    alarms = sorted(found.alarms)
    for start in range(0, len(alarms), 100):  # DeleteAlarms takes 100 names; unknown names are no error
        cloudwatch.delete_alarms(AlarmNames=alarms[start:start + 100])
    for name in alarms:
        say(f"deleted alarm {name}")
    return deleted + len(alarms)
