"""The APIs the local stack answers itself (Athena, Firehose, Lambda's Invoke) answer a real botocore
client in each protocol botocore may speak for them: the one the installed service model names
(Athena: REST-JSON since botocore 1.44.18) and the JSON protocol with `X-Amz-Target` (what Athena's
model named before, made here from the same model), so that neither a newer nor an older botocore
falls through to moto's HTML 404."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError

from feedback_loop.local.stack import LocalStack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# the services whose botocore model named or names the JSON protocol, and Athena's target prefix then
JSON_PROTOCOL = {"athena": "AmazonAthena", "firehose": "Firehose_20150804"}


def _as_json_protocol(model: dict, service: str) -> dict:
    """The service model as a JSON-protocol client reads it: every member in the body, the
    operation in X-Amz-Target."""
    model = copy.deepcopy(model)
    metadata = model["metadata"]
    metadata.update(protocol="json", protocols=["json"], jsonVersion=metadata.get("jsonVersion", "1.1"),
                    targetPrefix=metadata.get("targetPrefix", JSON_PROTOCOL[service]))
    for operation in model["operations"].values():
        operation["http"] = {"method": "POST", "requestUri": "/"}
    for shape in model["shapes"].values():
        shape.pop("payload", None)
        for member in shape.get("members", {}).values():
            member.pop("location", None)
            member.pop("locationName", None)
    return model


def _native(service: str) -> str:
    return botocore.session.get_session().get_service_model(service).metadata["protocol"]


def protocols(service: str) -> list[str]:
    """The installed model's protocols, and the JSON protocol for the services that spoke it."""
    model = botocore.session.get_session().get_service_model(service)
    spoken = set(model.metadata.get("protocols", [model.metadata["protocol"]]))
    return sorted(spoken | {"json"} if service in JSON_PROTOCOL else spoken)


def client(stack: LocalStack, service: str, protocol: str, tmp_path: Path):
    session = botocore.session.get_session()
    if protocol != _native(service):
        installed = botocore.session.get_session().get_component("data_loader")
        version = installed.determine_latest_version(service, "service-2")
        model = _as_json_protocol(installed.load_service_model(service, "service-2"), service)
        folder = tmp_path / "models" / service / version
        folder.mkdir(parents=True)
        (folder / "service-2.json").write_text(json.dumps(model))
        session.get_component("data_loader").search_paths.insert(0, str(tmp_path / "models"))
    made = boto3.Session(botocore_session=session).client(service, endpoint_url=stack.aws_endpoint)
    assert made.meta.service_model.protocol == protocol
    return made


@pytest.mark.parametrize("protocol", protocols("athena"))
def test_athena_in_each_protocol(stack: LocalStack, protocol: str, tmp_path: Path) -> None:
    athena = client(stack, "athena", protocol, tmp_path)
    started = athena.start_query_execution(
        QueryString="SELECT 1 AS one, 'a/b' AS text",
        ResultConfiguration={"OutputLocation": f"s3://{stack.bucket}/protocol-test/{protocol}/"})
    execution_id = started["QueryExecutionId"]
    for _ in range(200):
        state = athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"]["State"]
        if state not in ("QUEUED", "RUNNING"):
            break
        time.sleep(0.05)
    assert state == "SUCCEEDED"
    # a path parameter and a query-string integer (REST-JSON), or both in the body (JSON)
    page = athena.get_query_results(QueryExecutionId=execution_id, MaxResults=1)
    assert [cell["VarCharValue"] for cell in page["ResultSet"]["Rows"][0]["Data"]] == ["one", "text"]
    assert page["NextToken"] == "1"
    rest = athena.get_query_results(QueryExecutionId=execution_id, NextToken=page["NextToken"])
    assert [cell["VarCharValue"] for cell in rest["ResultSet"]["Rows"][0]["Data"]] == ["1", "a/b"]
    batch = athena.batch_get_query_execution(QueryExecutionIds=[execution_id, "unknown"])
    assert [e["QueryExecutionId"] for e in batch["QueryExecutions"]] == [execution_id]
    assert [u["QueryExecutionId"] for u in batch["UnprocessedQueryExecutionIds"]] == ["unknown"]
    assert athena.stop_query_execution(QueryExecutionId=execution_id)["ResponseMetadata"]["HTTPStatusCode"] == 200
    # errors come back as botocore reads them in that protocol: their code and message
    with pytest.raises(ClientError) as refused:
        athena.get_query_execution(QueryExecutionId="no-such-execution")
    assert refused.value.response["Error"]["Code"] == "InvalidRequestException"
    assert "no-such-execution" in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as unserved:
        athena.list_work_groups()
    assert unserved.value.response["Error"]["Code"] == "InvalidRequestException"
    assert "not served locally" in unserved.value.response["Error"]["Message"]


@pytest.mark.parametrize("protocol", protocols("firehose"))
def test_firehose_in_each_protocol(stack: LocalStack, protocol: str, tmp_path: Path) -> None:
    firehose = client(stack, "firehose", protocol, tmp_path)
    name = stack.name_of("EvalLogStream")
    described = firehose.describe_delivery_stream(DeliveryStreamName=name)
    assert described["DeliveryStreamDescription"]["DeliveryStreamName"] == name
    with pytest.raises(ClientError) as missing:
        firehose.put_record(DeliveryStreamName="no-such-stream", Record={"Data": b"{}"})
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


@pytest.mark.parametrize("protocol", protocols("lambda"))
def test_lambda_invoke_in_each_protocol(stack: LocalStack, protocol: str, tmp_path: Path) -> None:
    functions = client(stack, "lambda", protocol, tmp_path)
    # the authorizer's answer to a request without a key: a policy that denies the route
    event = json.loads((ROOT / "events" / "authorizer_request.json").read_text())
    event["headers"] = {}
    answer = functions.invoke(FunctionName=stack.name_of("AuthorizerFunction"), Payload=json.dumps(event).encode())
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    policy = json.loads(answer["Payload"].read())
    assert policy["principalId"] == "anonymous"
    assert [s["Effect"] for s in policy["policyDocument"]["Statement"]] == ["Deny"]


# What the suite runs each service the product calls in, through the local stack (moto answers the
# rest): a botocore that moves one to another protocol fails here by name, before a user sees it.
TESTED_PROTOCOLS = {"apigateway": {"rest-json"}, "athena": {"rest-json", "json"}, "cloudformation": {"query"},
                    "cloudwatch": {"smithy-rpc-v2-cbor"}, "iam": {"query"},
                    "dynamodb": {"json"}, "events": {"json"}, "firehose": {"json"}, "glue": {"json"},
                    "lambda": {"rest-json"}, "s3": {"rest-xml"}, "sagemaker": {"json"},
                    "sagemaker-runtime": {"rest-json"}, "sqs": {"json"}, "stepfunctions": {"json"}}


def test_every_service_the_product_calls_speaks_a_protocol_tested_here() -> None:
    sources = [*(ROOT / "layers/domain/feedback_loop").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    called = {name for source in sources for name in re.findall(r"boto3\.client\(\s*\"([a-z0-9-]+)\"", source.read_text())}
    called |= set(re.findall(r"arn:aws:states:::(?:aws-sdk:)?([a-z0-9-]+):", (ROOT / "statemachine").joinpath(
        "weekly-analysis.asl.json").read_text()))
    assert called - {"states"} <= set(TESTED_PROTOCOLS), f"not in TESTED_PROTOCOLS: {called - set(TESTED_PROTOCOLS)}"
    for service in sorted(called - {"states"}):
        spoken = boto3.client(service, region_name="us-east-1").meta.service_model.protocol
        assert spoken in TESTED_PROTOCOLS[service], f"botocore now speaks {spoken} to {service}"
