"""An emulated AWS account to deploy the stack into, as docs/DEPLOY.md does in a real one
(tests/integration/test_deploy_walkthrough.py). It runs as a process of its own, since moto's state is
per process:

    .venv/bin/python -c 'from tests.emulated_account import main; main()'

prints `{"aws": <endpoint>, "execute_api": <url>}` on its first line once it listens, then serves
until it is stopped. In it:

- **the emulator** of the local stack (local/emulator.py: moto, with Athena, Firehose and Lambda's
  Invoke answered locally), empty;
- **CloudFormation**: moto's, completed here for the resource types that the transformed template
  uses and moto's CloudFormation skips with a warning, or makes wrongly (`MODELS`): each is created
  (and deleted with the stack) with its service's own API in the emulator, so that what the stack
  made can be read back as a user would. Resources are created after everything they depend on, by
  DependsOn or by reference, transitively (`dependency_order`; moto's own order skips the DependsOn
  of a resource it creates because another refers to it). An API
  stage with access logs is refused, as AWS refuses it, while the region's API Gateway CloudWatch
  role is not set ("CloudWatch Logs role ARN must be set in account settings to enable logging");
  a custom resource is run to its end before what depends on it is created (moto starts it on a
  thread and goes on), and a FAILED answer fails the stack. A CreateStack runs outside the
  emulator's one-request-at-a-time lock: the custom resource it waits for calls the emulator;
- **Lambda**: a function CloudFormation created runs in the local runtime (local/runtime.py) from
  the code zip CloudFormation was given (unzipped), with the handler, timeout and environment that
  CloudFormation set; its layers are this process's installed packages (moto runs code in Docker only);
- **execute-api**: the REST API that CloudFormation created (its resources, methods, Lambda proxy
  integrations, REQUEST authorizers and gateway responses, as the OpenAPI body defined them) served
  by the local gateway (local/gateway.py), with the functions its integrations name (their aliases'
  functions: the local runtime has no versions). Built at its first request, again for another API.

Not emulated: deleting a custom resource (moto sends no Delete event), stage settings beyond the
access-log rule and tracing, the functions' memory and concurrency, IAM enforcement, a bucket
policy's statements with a Condition (`BucketPolicy`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
import threading
import uuid
import zipfile
from html import escape
from pathlib import Path
from typing import Any

from moto.apigateway.models import apigateway_backends
from moto.athena.models import athena_backends
from moto.awslambda.models import lambda_backends
from moto.cloudformation import parsing
from moto.cloudformation.custom_model import CustomModel
from moto.core.common_models import CloudFormationModel
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from feedback_loop.local.authorizer import GatewayResponse
from feedback_loop.local.emulator import LocalEmulator
from feedback_loop.local.gateway import LocalGateway
from feedback_loop.local.protocols import signed_for
from feedback_loop.local.runtime import LocalFunction
from feedback_loop.local.stack import EMULATOR_HOST, free_port
from feedback_loop.local.state import REGION, local_aws_environment, local_client
from feedback_loop.local.template import ACCOUNT_ID, FunctionSpec, Route

NO_LOG_ROLE = "CloudWatch Logs role ARN must be set in account settings to enable logging"
_FUNCTION_ARN = re.compile(r"function:([^:/]+)")


class Account:
    """What the models and the runtime share: the emulator, the functions' unzipped code, the answers
    custom resources sent."""

    firehose: Any = None  # the emulator's local Firehose
    endpoint = ""
    code = Path(tempfile.mkdtemp(prefix="emulated-lambda-"))
    answers: dict[str, dict[str, Any]] = {}
    answer_url = ""
    failure = ""  # why the last resource could not be created: CreateStack's answer then says it

    @classmethod
    def client(cls, service: str) -> Any:
        return local_client(service, cls.endpoint)


# --- Lambda -------------------------------------------------------------------------------------------

def local_function(name: str) -> LocalFunction:
    """The function CloudFormation created, as the local runtime runs it: its zip unzipped once, its
    environment merged into this process's (functions share it, as in the local stack)."""
    function = lambda_backends[ACCOUNT_ID][REGION].get_function(name)
    folder = Account.code / function.function_name
    if not folder.exists():
        with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as archive:
            archive.extractall(folder)
    os.environ.update({k: str(v) for k, v in function.environment_vars.items()})
    return LocalFunction(FunctionSpec(logical_id=function.function_name, code_dir=folder,
                                      handler=function.handler, environment=dict(function.environment_vars),
                                      timeout=int(function.timeout)))


class WaitedCustomResource(CustomModel):
    """A custom resource run to its end: its function invoked with CloudFormation's Create request,
    its answer PUT to this account's receiver; SUCCESS gives the resource its data, anything else
    fails the stack with the function's reason."""

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> CustomModel:
        properties = cloudformation_json["Properties"]
        request_id = str(uuid.uuid4())
        event = {"RequestType": "Create", "ServiceToken": properties["ServiceToken"],
                 "ResponseURL": f"{Account.answer_url}/{request_id}", "StackId": kwargs["StackId"],
                 "RequestId": request_id, "LogicalResourceId": kwargs["LogicalId"],
                 "ResourceType": kwargs["ResourceType"], "ResourceProperties": properties}
        local_function(_FUNCTION_ARN.search(properties["ServiceToken"]).group(1)).invoke(event)
        answer = Account.answers.pop(request_id, None)
        if answer is None or answer.get("Status") != "SUCCESS":
            reason = (answer or {}).get("Reason", "no answer was sent to the ResponseURL")
            Account.failure = f"{kwargs['LogicalId']} ({kwargs['ResourceType']}): {reason}"
            raise RuntimeError(Account.failure)
        resource = cls(region_name, request_id, kwargs["LogicalId"], answer.get("PhysicalResourceId", resource_name))
        resource.set_data(answer.get("Data") or {})
        return resource


# --- the resource types moto's CloudFormation lacks or gets wrong --------------------------------------------------

class Created(CloudFormationModel):
    """A resource made with its service's API: `make` returns its physical id and attributes."""

    TYPE = ""
    NAME = ""  # the property that names it, if any
    ATTRIBUTES: tuple[str, ...] = ()

    def __init__(self, physical_id: str, attributes: dict[str, Any]):
        self.physical_id = physical_id
        self.attributes = attributes

    @property
    def physical_resource_id(self) -> str:
        return self.physical_id

    @classmethod
    def cloudformation_type(cls) -> str:
        return cls.TYPE

    @classmethod
    def cloudformation_name_type(cls) -> str:
        return cls.NAME

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.ATTRIBUTES

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.attributes[attribute_name]

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> "Created":
        try:
            physical_id, attributes = cls.make(resource_name, cloudformation_json.get("Properties", {}))
        except Exception as error:
            Account.failure = f"{kwargs['LogicalId']} ({cls.TYPE}): {error}"
            raise
        return cls(physical_id, attributes)

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def delete(self, account_id: str, region_name: str) -> None:
        """When the stack goes (moto skips a resource whose DeletionPolicy is Retain)."""
        self.remove()

    def remove(self) -> None:
        """Nothing by default: what goes with its parent (an alias with its function, a stage with its API)."""


class RestApi(Created):
    """The API from its OpenAPI body: moto's own model ignores the body, and its import takes neither
    authorizers nor a method's security."""

    TYPE, NAME, ATTRIBUTES = "AWS::ApiGateway::RestApi", "Name", ("RootResourceId",)

    def remove(self) -> None:
        Account.client("apigateway").delete_rest_api(restApiId=self.physical_id)

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        api, body = Account.client("apigateway"), props.get("Body") or {}
        rest = api.create_rest_api(name=props.get("Name", name),
                                   binaryMediaTypes=body.get("x-amazon-apigateway-binary-media-types", []))
        api_id, root = rest["id"], rest["rootResourceId"]
        authorizers = {}
        for scheme, spec in (body.get("components") or {}).get("securitySchemes", {}).items():
            lambda_authorizer = spec["x-amazon-apigateway-authorizer"]
            authorizers[scheme] = api.create_authorizer(
                restApiId=api_id, name=scheme, type=lambda_authorizer["type"].upper(),
                authorizerUri=lambda_authorizer["authorizerUri"],
                identitySource=lambda_authorizer.get("identitySource", ""),
                authorizerResultTtlInSeconds=int(lambda_authorizer.get("authorizerResultTtlInSeconds", 300)))["id"]
        resources = {"/": root}
        for path, methods in sorted(body.get("paths", {}).items()):
            parent = "/"
            for part in path.strip("/").split("/"):
                here = f"{parent.rstrip('/')}/{part}"
                if here not in resources:
                    resources[here] = api.create_resource(restApiId=api_id, parentId=resources[parent],
                                                          pathPart=part)["id"]
                parent = here
            for method, spec in methods.items():
                scheme = next(iter((spec.get("security") or [{"NONE": []}])[0]))
                custom = scheme in authorizers
                api.put_method(restApiId=api_id, resourceId=resources[path], httpMethod=method.upper(),
                               authorizationType="CUSTOM" if custom else "NONE",
                               **({"authorizerId": authorizers[scheme]} if custom else {}))
                integration = spec.get("x-amazon-apigateway-integration") or {}
                api.put_integration(restApiId=api_id, resourceId=resources[path], httpMethod=method.upper(),
                                    type=integration.get("type", "mock").upper(),
                                    integrationHttpMethod=integration.get("httpMethod", method.upper()),
                                    uri=integration.get("uri", ""))
        for kind, spec in (body.get("x-amazon-apigateway-gateway-responses") or {}).items():
            api.put_gateway_response(restApiId=api_id, responseType=kind,
                                     **({"statusCode": spec["statusCode"]} if "statusCode" in spec else {}),
                                     responseParameters=spec.get("responseParameters") or {},
                                     responseTemplates=spec.get("responseTemplates") or {})
        return api_id, {"RootResourceId": root}


class Deployment(Created):
    """moto's own has no physical id."""

    TYPE = "AWS::ApiGateway::Deployment"

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        deployment = Account.client("apigateway").create_deployment(
            restApiId=props["RestApiId"], description=props.get("Description", ""),
            **({"stageName": props["StageName"]} if "StageName" in props else {}))
        return deployment["id"], {}


class Stage(Created):
    TYPE, NAME = "AWS::ApiGateway::Stage", "StageName"

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        api = Account.client("apigateway")
        if props.get("AccessLogSetting") and not api.get_account().get("cloudwatchRoleArn"):
            raise RuntimeError(NO_LOG_ROLE)  # what AWS answers (BadRequestException)
        api.create_stage(restApiId=props["RestApiId"], stageName=props["StageName"],
                         deploymentId=props["DeploymentId"], tracingEnabled=bool(props.get("TracingEnabled")))
        return props["StageName"], {}


class WorkGroup(Created):
    """In moto's Athena (the local Athena that runs the queries has no work groups)."""

    TYPE, NAME = "AWS::Athena::WorkGroup", "Name"

    def remove(self) -> None:
        athena_backends[ACCOUNT_ID][REGION].delete_work_group(self.physical_id)

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        athena_backends[ACCOUNT_ID][REGION].create_work_group(
            props["Name"], props.get("WorkGroupConfiguration", {}), props.get("Description", ""), [])
        return props["Name"], {}


class Alarm(Created):
    TYPE, NAME, ATTRIBUTES = "AWS::CloudWatch::Alarm", "AlarmName", ("Arn",)

    def remove(self) -> None:
        Account.client("cloudwatch").delete_alarms(AlarmNames=[self.physical_id])

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        cloudwatch = Account.client("cloudwatch")
        cloudwatch.put_metric_alarm(**{"AlarmName": name, **props})
        alarm = cloudwatch.describe_alarms(AlarmNames=[props.get("AlarmName", name)])["MetricAlarms"][0]
        return alarm["AlarmName"], {"Arn": alarm["AlarmArn"]}


class GlueDatabase(Created):
    TYPE = "AWS::Glue::Database"

    def remove(self) -> None:
        Account.client("glue").delete_database(Name=self.physical_id)

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        Account.client("glue").create_database(DatabaseInput=props["DatabaseInput"])
        return props["DatabaseInput"]["Name"], {}


class GlueTable(Created):
    TYPE = "AWS::Glue::Table"

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        Account.client("glue").create_table(DatabaseName=props["DatabaseName"], TableInput=props["TableInput"])
        return props["TableInput"]["Name"], {}


class DeliveryStream(Created):
    """In the local Firehose, which the emulator answers PutRecord with."""

    TYPE, NAME, ATTRIBUTES = "AWS::KinesisFirehose::DeliveryStream", "DeliveryStreamName", ("Arn",)

    def remove(self) -> None:
        Account.firehose.streams.pop(self.physical_id, None)

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        stream = props.get("DeliveryStreamName", name)
        Account.firehose.create(stream, props["ExtendedS3DestinationConfiguration"])
        return stream, {"Arn": f"arn:aws:firehose:{REGION}:{ACCOUNT_ID}:deliverystream/{stream}"}


class Table(Created):
    """moto's own leaves out the table's TTL and point-in-time recovery."""

    TYPE, NAME, ATTRIBUTES = "AWS::DynamoDB::Table", "TableName", ("Arn", "StreamArn")
    CREATE = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "BillingMode",
              "ProvisionedThroughput", "StreamSpecification", "Tags")

    def remove(self) -> None:
        Account.client("dynamodb").delete_table(TableName=self.physical_id)

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        dynamodb, table = Account.client("dynamodb"), props.get("TableName", name)
        encryption = props.get("SSESpecification") or {}  # CloudFormation's SSEEnabled is the API's Enabled
        sse = {"SSESpecification": {"Enabled": encryption["SSEEnabled"], **{k: v for k, v in encryption.items()
                                                                             if k != "SSEEnabled"}}} if encryption else {}
        created = dynamodb.create_table(TableName=table, **{k: props[k] for k in cls.CREATE if k in props}, **sse)
        if "TimeToLiveSpecification" in props:
            dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification=props["TimeToLiveSpecification"])
        if "PointInTimeRecoverySpecification" in props:
            dynamodb.update_continuous_backups(
                TableName=table, PointInTimeRecoverySpecification=props["PointInTimeRecoverySpecification"])
        description = created["TableDescription"]
        return table, {"Arn": description["TableArn"], "StreamArn": description.get("LatestStreamArn", "")}


class EventBus(Created):
    """moto's own has no physical id: `!Ref EventBus` gave the model object itself."""

    TYPE, NAME, ATTRIBUTES = "AWS::Events::EventBus", "Name", ("Arn", "Name")

    def remove(self) -> None:
        Account.client("events").delete_event_bus(Name=self.physical_id)

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        arn = Account.client("events").create_event_bus(Name=props.get("Name", name))["EventBusArn"]
        return props.get("Name", name), {"Arn": arn, "Name": props.get("Name", name)}


class Version(Created):
    """moto's own has no attributes (`!GetAtt Version.Version`)."""

    TYPE, ATTRIBUTES = "AWS::Lambda::Version", ("Version",)

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        published = Account.client("lambda").publish_version(FunctionName=props["FunctionName"])
        return published["FunctionArn"], {"Version": published["Version"]}


class Alias(Created):
    TYPE, ATTRIBUTES = "AWS::Lambda::Alias", ("AliasArn",)

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        alias = Account.client("lambda").create_alias(FunctionName=props["FunctionName"], Name=props["Name"],
                                                      FunctionVersion=props["FunctionVersion"])
        return alias["AliasArn"], {"AliasArn": alias["AliasArn"]}


class EventInvokeConfig(Created):
    TYPE = "AWS::Lambda::EventInvokeConfig"

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        Account.client("lambda").put_function_event_invoke_config(**props)
        return f"{props['FunctionName']}:{props['Qualifier']}", {}


class LogStream(Created):
    TYPE, NAME = "AWS::Logs::LogStream", "LogStreamName"

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        stream = props.get("LogStreamName", name)
        Account.client("logs").create_log_stream(logGroupName=props["LogGroupName"], logStreamName=stream)
        return stream, {}


class SubscriptionFilter(Created):
    TYPE, NAME = "AWS::Logs::SubscriptionFilter", "FilterName"

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        filter_name = props.get("FilterName", name)
        Account.client("logs").put_subscription_filter(
            logGroupName=props["LogGroupName"], filterName=filter_name, filterPattern=props["FilterPattern"],
            destinationArn=props["DestinationArn"], **({"roleArn": props["RoleArn"]} if "RoleArn" in props else {}))
        return filter_name, {}


class BucketPolicy(Created):
    """Only the statements without a Condition are put: moto enforces a Deny whatever its condition,
    and the emulator is reached over plain HTTP, so the template's TLS-only statement would refuse
    every call. The bucket must exist."""

    TYPE = "AWS::S3::BucketPolicy"

    def remove(self) -> None:
        Account.client("s3").delete_bucket_policy(Bucket=self.physical_id)

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        s3 = Account.client("s3")
        s3.head_bucket(Bucket=props["Bucket"])
        unconditional = [s for s in props["PolicyDocument"]["Statement"] if "Condition" not in s]
        if unconditional:
            s3.put_bucket_policy(Bucket=props["Bucket"],
                                 Policy=json.dumps({**props["PolicyDocument"], "Statement": unconditional}))
        return props["Bucket"], {}


class Subscription(Created):
    TYPE = "AWS::SNS::Subscription"

    def remove(self) -> None:
        Account.client("sns").unsubscribe(SubscriptionArn=self.physical_id)

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        subscribed = Account.client("sns").subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"],
                                                     Endpoint=props["Endpoint"], ReturnSubscriptionArn=True)
        return subscribed["SubscriptionArn"], {}


class QueuePolicy(Created):
    TYPE = "AWS::SQS::QueuePolicy"

    @classmethod
    def make(cls, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        sqs = Account.client("sqs")
        for queue_url in props["Queues"]:
            sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
        return name, {}


MODELS = (RestApi, Deployment, Stage, WorkGroup, Alarm, GlueDatabase, GlueTable, DeliveryStream, Table, EventBus,
          Version, Alias, EventInvokeConfig, LogStream, SubscriptionFilter, BucketPolicy, Subscription, QueuePolicy)


_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9]+)[.}]")


def _referenced(value: Any, names: set[str]) -> set[str]:
    """The resources a property value refers to (Ref, GetAtt, Sub)."""
    if isinstance(value, list):
        return set().union(*(_referenced(v, names) for v in value))
    if not isinstance(value, dict):
        return set()
    found = set()
    for key, arg in value.items():
        if key == "Ref" and arg in names:
            found.add(arg)
        elif key == "Fn::GetAtt":
            found.add((arg.split(".")[0] if isinstance(arg, str) else arg[0]))
        elif key == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            found |= {name for name in _SUB_NAME.findall(text) if name in names}
        found |= _referenced(arg, names)
    return found & names


def dependency_order(resource_map: Any) -> list[str]:
    """Every resource after what it depends on, by DependsOn or by reference, transitively, as
    CloudFormation orders them; otherwise in the template's order. moto's own order follows DependsOn
    only for resources it reaches first: one created because another refers to it skips its DependsOn."""
    resources = resource_map._resource_json_map
    names = set(resources)
    ordered: list[str] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name in placed:
            return
        placed.add(name)
        spec = resources[name]
        depends = spec.get("DependsOn", [])
        for dependency in sorted(({depends} if isinstance(depends, str) else set(depends)) | _referenced(spec, names)):
            place(dependency)
        ordered.append(name)

    for name in resources:
        place(name)
    return ordered


def install_models() -> None:
    """Puts MODELS into moto's CloudFormation (in place of its own RestApi), custom resources waited
    for, and resources created in dependency order."""
    parsing.ResourceMap._ResourceMap__get_resources_in_dependency_order = dependency_order
    model_map = parsing.get_model_map()
    for model in MODELS:
        model_map[model.cloudformation_type()] = model
    parsing.get_name_type_map().update({m.cloudformation_type(): m.NAME for m in MODELS if m.NAME})
    parsing.CustomModel = WaitedCustomResource


# --- execute-api --------------------------------------------------------------------------------------

def _function_of(uri: str) -> str:
    """The function an integration or authorizer URI names (arn:...:function:NAME[:alias]/invocations)."""
    return _FUNCTION_ARN.search(uri).group(1)


def deployed_gateway() -> LocalGateway:
    """The local gateway for the REST API that CloudFormation created (the account's only one)."""
    backend = apigateway_backends[ACCOUNT_ID][REGION]
    (api,) = backend.apis.values()
    functions: dict[str, LocalFunction] = {}
    routes = []
    for resource in api.resources.values():
        for verb, method in resource.resource_methods.items():
            integration = method.method_integration
            if integration is None or integration.integration_type != "AWS_PROXY":
                continue  # the CORS preflight's MOCK: not served locally
            function = _function_of(integration.uri)
            authorizer = None
            if method.authorization_type == "CUSTOM":
                authorizer = _function_of(api.authorizers[method.authorizer_id].authorizer_uri)
            for name in filter(None, (function, authorizer)):
                functions.setdefault(name, local_function(name))
            routes.append(Route(verb, resource.get_path(), function, authorizer))
    responses = {
        kind: GatewayResponse(
            status=int(response.status_code) if response.status_code else None,
            headers={header.removeprefix("gatewayresponse.header."): str(value).strip("'")
                     for header, value in (response.response_parameters or {}).items()},
            template=(response.response_templates or {}).get("application/json"))
        for kind, response in api.gateway_responses.items()}
    for function in functions.values():
        function.warm()
    return LocalGateway(routes, functions, responses=responses, binary_media_types=api.binaryMediaTypes)


class ExecuteApi:
    """The deployed API's gateway, built at the first request; custom resources' answers on /answers/."""

    def __init__(self) -> None:
        self.gateways: dict[str, LocalGateway] = {}
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path.startswith("/answers/"):
            Account.answers[request.path.rsplit("/", 1)[1]] = json.loads(request.get_data())
            return Response("")(environ, start_response)
        with self.lock:  # a stack deleted and deployed again has another API
            (api_id,) = apigateway_backends[ACCOUNT_ID][REGION].apis
            if api_id not in self.gateways:
                self.gateways[api_id] = deployed_gateway()
        return self.gateways[api_id](environ, start_response)


def account_front(front: Any, moto_app: Any) -> Any:
    """CloudFormation's calls go to moto without the emulator's lock (see the module's docstring). A
    resource that fails makes CreateStack answer a ValidationError naming it and why (moto answers a
    bare 500; AWS would say it in the stack's events)."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        scope = signed_for(environ)
        if scope is None or scope[1] != "cloudformation":
            return front(environ, start_response)
        Account.failure = ""
        answer: dict[str, Any] = {}
        try:
            content = b"".join(moto_app(environ, lambda status, headers, exc_info=None: answer.update(
                status=status, headers=headers)))
        except Exception:
            if not Account.failure:
                raise
        else:
            if not (answer["status"].startswith("500") and Account.failure):
                start_response(answer["status"], answer["headers"])
                return [content]
        return Response(f"<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code>"
                        f"<Message>{escape(Account.failure)}</Message></Error></ErrorResponse>",
                        status=400, content_type="text/xml")(environ, start_response)

    return app


def main() -> None:
    """(Not `python -m`: moto's models read the name of the module that defines them, never __main__.)"""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # errors with their tracebacks, no access log
    emulator = LocalEmulator(EMULATOR_HOST, free_port(EMULATOR_HOST))
    serialized = emulator.front
    emulator.front = account_front(serialized, serialized.app)  # what LocalEmulator.start serves
    emulator.start()
    Account.firehose, Account.endpoint = serialized.firehose, f"http://{EMULATOR_HOST}:{emulator.port}"
    os.environ.update(local_aws_environment(Account.endpoint))
    install_models()
    execute_api = ExecuteApi()
    server = make_server(EMULATOR_HOST, 0, execute_api, threaded=True)
    url = f"http://{EMULATOR_HOST}:{server.server_port}"
    Account.answer_url = f"{url}/answers"
    print(json.dumps({"aws": Account.endpoint, "execute_api": url}), flush=True)
    server.serve_forever()
