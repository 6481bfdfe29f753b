"""Reads template.yaml the way CloudFormation would, for the local stack.

The local stack creates its tables, buckets, functions and routes from here, so what runs locally is
what `sam deploy` creates. Intrinsic functions are resolved against the template's parameters and
local physical names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from feedback_loop.local.state import REGION

ACCOUNT_ID = "123456789012"
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway form, e.g. /v1/requests/{request_id}/feedback
    function: str  # logical id
    authorizer: str | None = None  # logical id of the Lambda authorizer's function; None for a public route


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: int
    events: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    name: str
    definition: str  # the Amazon States Language document, its substitutions made
    events: dict[str, dict[str, Any]] = field(default_factory=dict)


class Template:
    def __init__(self, path: Path, stack_name: str = "feedback-loop-local",
                 parameters: dict[str, str] | None = None):
        self.path = path.resolve()
        self.root = self.path.parent
        self.stack_name = stack_name
        body, problems = decode(str(self.path))
        if problems or body is None:
            raise ValueError(f"cannot read {path}: {[str(p) for p in problems]}")
        self.body: dict[str, Any] = body
        self.resources: dict[str, dict[str, Any]] = body.get("Resources", {})
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in body.get("Parameters", {}).items()
        }
        unknown = set(parameters or {}) - set(self.parameters)
        if unknown:
            raise ValueError(f"unknown template parameters: {sorted(unknown)}")
        self.parameters.update(parameters or {})

    # --- names ----------------------------------------------------------------------------------

    def physical_name(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        if resource["Type"] == "AWS::Glue::Database":  # Glue keeps names in lower case
            return str(self.resolve(resource["Properties"]["DatabaseInput"]["Name"])).lower()
        explicit = resource.get("Properties", {}).get(
            {"AWS::DynamoDB::Table": "TableName", "AWS::S3::Bucket": "BucketName",
             "AWS::Events::EventBus": "Name", "AWS::Athena::WorkGroup": "Name",
             "AWS::Serverless::StateMachine": "Name",
             "AWS::KinesisFirehose::DeliveryStream": "DeliveryStreamName"}.get(resource["Type"], ""), None)
        if explicit is not None:
            return str(self.resolve(explicit))
        return f"{self.stack_name}-{logical_id}".lower() if resource["Type"] == "AWS::S3::Bucket" \
            else f"{self.stack_name}-{logical_id}"

    def arn(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = self.physical_name(logical_id)
        if kind == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{name}"
        if kind == "AWS::Events::EventBus":
            return f"arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/{name}"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{name}"
        if kind == "AWS::KinesisFirehose::DeliveryStream":
            return f"arn:aws:firehose:{REGION}:{ACCOUNT_ID}:deliverystream/{name}"
        if kind == "AWS::Serverless::StateMachine":
            return f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{self.physical_name(logical_id)}"
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"

    # --- intrinsics -----------------------------------------------------------------------------

    def _pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID, "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com", "AWS::Partition": "aws",
        }.get(name)

    def _ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        pseudo = self._pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.resources:  # what CloudFormation's Ref returns: a topic's ARN, other resources' names
            arn_types = ("AWS::SNS::Topic", "AWS::Serverless::StateMachine")
            return self.arn(name) if self.resources[name]["Type"] in arn_types else self.physical_name(name)
        raise KeyError(f"!Ref {name}: no such parameter or resource")

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute in ("Name", "StreamArn"):
            return self.physical_name(logical_id)
        raise KeyError(f"!GetAtt {logical_id}.{attribute} is not emulated")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                return self._get_att(logical_id, attribute)
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                substituted = _SUB_VARIABLE.sub(lambda m: self._sub_variable(m.group(1), extra), text)
                return substituted.replace("${!", "${")  # ${!x} is a literal ${x}
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(p) for p in self.resolve(parts))
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::FindInMap":
                mapping, first, second = self.resolve(arg)
                return self.body["Mappings"][mapping][first][second]
            if key.startswith("Fn::"):
                raise KeyError(f"{key} is not emulated by the local stack")
        return {k: self.resolve(v) for k, v in value.items()}

    def output(self, name: str) -> str:
        """An output's value, as `aws cloudformation describe-stacks` would give it."""
        return str(self.resolve(self.body["Outputs"][name]["Value"]))

    def condition(self, name: str) -> bool:
        return self._holds(self.body.get("Conditions", {})[name])

    def _holds(self, expression: Any) -> bool:
        (key, arg), = expression.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
        if key == "Fn::Not":
            return not self._holds(arg[0])
        if key == "Fn::And":
            return all(self._holds(a) for a in arg)
        if key == "Fn::Or":
            return any(self._holds(a) for a in arg)
        raise KeyError(f"condition function {key} is not emulated by the local stack")

    def _sub_variable(self, name: str, extra: dict[str, Any]) -> str:
        if name in extra:
            return str(extra[name])
        if "." in name:
            return self._get_att(*name.split(".", 1))
        return str(self._ref(name))

    # --- what the local stack builds --------------------------------------------------------------

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        """The resources of that type that this stack's parameters create (their Condition holds)."""
        return {k: v for k, v in self.resources.items()
                if v["Type"] == kind and ("Condition" not in v or self.condition(v["Condition"]))}

    def functions(self) -> list[FunctionSpec]:
        defaults = self.body.get("Globals", {}).get("Function", {})
        specs = []
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            props = {**defaults, **resource["Properties"]}
            environment = {
                **defaults.get("Environment", {}).get("Variables", {}),
                **resource["Properties"].get("Environment", {}).get("Variables", {}),
            }
            specs.append(FunctionSpec(
                logical_id=logical_id,
                code_dir=self.root / props["CodeUri"],
                handler=props["Handler"],
                environment={k: str(self.resolve(v)) for k, v in environment.items()},
                timeout=int(props.get("Timeout", 3)),
                events=props.get("Events", {}),
            ))
        return specs

    def state_machines(self) -> list[StateMachineSpec]:
        """The Serverless::StateMachines, each definition read from its DefinitionUri (or inline) with
        its DefinitionSubstitutions made, as SAM makes them."""
        specs = []
        for logical_id, resource in self.of_type("AWS::Serverless::StateMachine").items():
            props = resource["Properties"]
            if "DefinitionUri" in props:
                definition = (self.root / props["DefinitionUri"]).read_text()
            else:
                definition = json.dumps(props["Definition"])
            for name, value in self.resolve(props.get("DefinitionSubstitutions", {})).items():
                definition = definition.replace("${" + name + "}", str(value))
            specs.append(StateMachineSpec(logical_id, self.physical_name(logical_id), definition,
                                          props.get("Events", {})))
        return specs

    def api_properties(self) -> dict[str, Any]:
        """The (single) Serverless::Api's properties, resolved; empty if the template has none."""
        apis = list(self.of_type("AWS::Serverless::Api").values())
        return self.resolve(apis[0]["Properties"]) if apis else {}

    def routes(self) -> list[Route]:
        auth = self.api_properties().get("Auth") or {}
        default = auth.get("DefaultAuthorizer")
        specs = self.functions()
        by_physical_name = {self.physical_name(spec.logical_id): spec.logical_id for spec in specs}
        routes = []
        for spec in specs:
            for event in spec.events.values():
                if event.get("Type") == "Api":
                    props = event["Properties"]
                    name = (props.get("Auth") or {}).get("Authorizer", default)
                    authorizer = (None if name in (None, "NONE")
                                  else _authorizer_function(auth, name, by_physical_name))
                    routes.append(Route(props["Method"].upper(), props["Path"], spec.logical_id, authorizer))
        return routes


def _authorizer_function(auth: dict[str, Any], name: str, by_physical_name: dict[str, str]) -> str:
    """The logical id of the function behind the Api's authorizer `name` (its ARN is resolved)."""
    spec = (auth.get("Authorizers") or {}).get(name) or {}
    if spec.get("FunctionPayloadType") != "REQUEST":
        raise KeyError(f"authorizer {name}: only Lambda REQUEST authorizers are emulated")
    return by_physical_name[str(spec["FunctionArn"]).rpartition(":")[2]]  # ...:function:<physical name>
