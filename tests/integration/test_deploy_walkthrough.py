"""docs/DEPLOY.md's first deploy, end to end, in an emulated account (tests/emulated_account.py).

What `sam deploy` does, done here: the template is transformed (tests/deployed_template.py, the SAM
translator offline), each code folder zipped and uploaded with the template to a bucket, and the stack
created from the template's URL with the guided deploy's answers (AlarmEmail set, as the docs say).
Then the documented key command as written (only the package's core dependencies importable), and
feedback posted with that key through the API that CloudFormation created, whose functions run with
the environment CloudFormation gave them; `stage-model` and `doctor`; the documented teardown, `sam
delete` (the table and the bucket kept) and a deploy that re-attaches both. The stage's access-log
rule, the custom resource's waiting, the order of creation and the resource types moto's
CloudFormation lacks are emulated as tests/emulated_account.py says. Not run: `sam build` here (make
check-template builds), a real account.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from feedback_loop.local.state import local_aws_environment, local_client
from feedback_loop.local.template import Template
from tests.deployed_template import transformed
from tests.emulated_account import NO_LOG_ROLE
from tests.integration.test_deploy_docs import core_modules, documented_commands, documented_key_commands, run

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STACK = "feedback-loop"  # samconfig.toml's stack name, which the documented commands use
PACKAGED = "packaged"  # the bucket tests/deployed_template.py's code URIs name
ANSWERS = {"AlarmEmail": "ops@example.com"}


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    log = tmp_path_factory.mktemp("account") / "stderr.log"  # a file: a pipe nobody reads would fill and block it
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-c", "from tests.emulated_account import main; main()"],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        line = process.stdout.readline()
        assert line, log.read_text()[-5000:]
        yield json.loads(line)
    finally:
        process.terminate()
        process.wait(timeout=30)
        print(log.read_text()[-5000:])  # shown by pytest when a test of the module failed


def _zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(folder))
    return buffer.getvalue()


def deploy(endpoint: str, template: dict, parameters: dict[str, str]) -> dict:
    """`sam deploy`: the code and the template uploaded, the stack created from the template's URL."""
    s3 = local_client("s3", endpoint)
    if PACKAGED not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=PACKAGED)
    for resource in template["Resources"].values():
        for code in (resource.get("Properties", {}).get(key) for key in ("Code", "Content")):
            if isinstance(code, dict) and "S3Key" in code:
                s3.put_object(Bucket=code["S3Bucket"], Key=code["S3Key"],
                              Body=_zipped(ROOT / code["S3Key"].removesuffix(".zip")))
    # CloudFormation's order among resources that do not depend on each other is its own: the emulated
    # one creates them in the reverse of the template's, so that an order that only the template's
    # layout gave (an API stage before the logging role it needs) fails here
    reordered = {**template, "Resources": dict(reversed(template["Resources"].items()))}
    s3.put_object(Bucket=PACKAGED, Key="feedback-loop.template", Body=json.dumps(reordered).encode())
    cloudformation = local_client("cloudformation", endpoint)
    cloudformation.create_stack(StackName=STACK, TemplateURL=f"https://{PACKAGED}.s3.amazonaws.com/feedback-loop.template",
                                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
                                Capabilities=["CAPABILITY_IAM"])
    return cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]


def test_the_first_deploy_as_documented_creates_every_resource_and_takes_feedback(account) -> None:
    endpoint, api = account["aws"], account["execute_api"]
    light = core_modules()  # the command-line tool runs with nothing else importable (test_deploy_docs.py)
    template = transformed()
    stack = deploy(endpoint, template, ANSWERS)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")

    # every resource the template creates with these answers, and none that its conditions leave out
    conditions = Template(ROOT / "template.yaml", parameters=ANSWERS)
    expected = {name for name, resource in template["Resources"].items()
                if "Condition" not in resource or conditions.condition(resource["Condition"])}
    created = {r["LogicalResourceId"]: r for r in local_client("cloudformation", endpoint)
               .list_stack_resources(StackName=STACK)["StackResourceSummaries"]
               if r["LogicalResourceId"]}  # moto lists the template's Mappings too, without an id
    assert set(created) == expected, [r for r in created.values() if r["LogicalResourceId"] not in expected]
    assert {r["ResourceStatus"] for r in created.values()} == {"CREATE_COMPLETE"}
    assert any(t["Type"] == "Custom::ApiGatewayLogRole" for t in template["Resources"].values())

    # the custom resource set the region's logging role (a new account has none) before the stage,
    # which AWS refuses otherwise, was created
    role = local_client("iam", endpoint).get_role(RoleName=created["ApiGatewayLogRole"]["PhysicalResourceId"])
    assert local_client("apigateway", endpoint).get_account()["cloudwatchRoleArn"] == role["Role"]["Arn"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    (rest_api,) = local_client("apigateway", endpoint).get_rest_apis()["items"]
    assert outputs["ApiUrl"] == f"https://{rest_api['id']}.execute-api.us-east-1.amazonaws.com/prod"
    assert outputs["AlarmsGoTo"].startswith("ops@example.com")
    # the deployed API has the template's routes, each behind the key authorizer where the template says
    deployed = {(verb, resource["path"], method.get("authorizationType"))
                for resource in local_client("apigateway", endpoint).get_resources(
                    restApiId=rest_api["id"], embed=["methods"], limit=500)["items"]
                for verb, method in resource.get("resourceMethods", {}).items() if verb != "OPTIONS"}
    assert deployed == {(r.method, r.path, "CUSTOM" if r.authorizer else "NONE") for r in conditions.routes()}

    # DEPLOY.md's key commands as written, against the stack by its name
    create, listing, revoke = documented_key_commands()
    created_key = run(create, endpoint, light)
    assert created_key.returncode == 0, created_key.stderr
    issued = json.loads(created_key.stdout)
    assert issued["api_key"].startswith("flk_")

    # through the API CloudFormation made: the key's project, into the stack's table
    headers = {"x-api-key": issued["api_key"]}
    feedback = {"request_id": "req-first-deploy", "feedback_type": "explicit_rating", "value": 4}
    assert requests.get(f"{api}/v1/health", timeout=30).status_code == 200
    assert requests.post(f"{api}/v1/feedback", json=feedback, timeout=30).status_code == 401
    stored = requests.post(f"{api}/v1/feedback", json=feedback, headers=headers, timeout=30)
    assert stored.status_code == 201, stored.text
    read = requests.get(f"{api}/v1/requests/req-first-deploy/feedback", headers=headers, timeout=30)
    assert read.status_code == 200, read.text
    assert (read.json()["events"], read.json()["mean_rating"]) == (1, 4.0)
    items = local_client("dynamodb", endpoint).scan(TableName=outputs["TableName"])["Items"]
    assert any("req-first-deploy" in json.dumps(item) and issued["project"] in json.dumps(item) for item in items)

    # the base model staged (the development install: the packaged copy of the encoder is one of its
    # extras), then `doctor` as written: everything holds but the SageMaker quotas, which the emulator
    # cannot answer
    staged = subprocess.run([str(Path(sys.executable).parent / "feedback-loop"), "stage-model", "--stack", STACK],
                            env={**os.environ, **local_aws_environment(endpoint)}, capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert staged.returncode == 0, staged.stderr
    (doctor_command,) = documented_commands("Checking a deployed stack: `feedback-loop doctor`", "doctor")
    checked = run(doctor_command, endpoint, light)
    said = dict((name, status) for status, name in re.findall(r"^(ok|warn|FAIL) +(\S+(?: \S+)?) {2,}",
                                                                 checked.stdout, re.M))
    assert said == {"stack": "ok", "table": "ok", "bucket": "ok", "schedule": "ok", "alarms": "ok",
                    "training quota": "FAIL", "endpoint quota": "FAIL", "images": "ok", "base model": "ok"}, checked.stdout
    assert checked.returncode == 1 and checked.stdout.count("could not be checked") == 2

    listed = run(listing, endpoint, light)
    assert listed.returncode == 0 and issued["key_id"] in listed.stdout, listed.stderr
    revoked = run([issued["key_id"] if arg == "<key_id>" else arg for arg in revoke], endpoint, light)
    assert revoked.returncode == 0, revoked.stderr

    # torn down as documented: `teardown` (no evaluator was deployed: nothing to delete), then `sam
    # delete`; the table and the bucket are kept, with the keys and the feedback
    teardown = documented_commands("Deploy, upgrade, roll back, tear down", "teardown")
    assert [c[-1] for c in teardown] == [STACK, "--yes"]
    for command in teardown:
        torn = run(command, endpoint, light)
        assert torn.returncode == 0, torn.stderr
    cloudformation = local_client("cloudformation", endpoint)
    cloudformation.delete_stack(StackName=STACK)
    with pytest.raises(ClientError, match="does not exist"):
        cloudformation.describe_stacks(StackName=STACK)
    assert local_client("lambda", endpoint).list_functions()["Functions"] == []
    assert local_client("apigateway", endpoint).get_rest_apis()["items"] == []
    kept = run(["keys", "list", "--project", issued["project"], "--table", outputs["TableName"]], endpoint, light)
    assert kept.returncode == 0 and issued["key_id"] in kept.stdout, kept.stderr
    local_client("s3", endpoint).head_bucket(Bucket=outputs["DataBucket"])

    # deployed again with both re-attached (DEPLOY.md's ExistingTableName, ExistingBucketName): the
    # feedback sent before is read through the new API, with a key the same documented command makes
    again = deploy(endpoint, template, {**ANSWERS, "ExistingTableName": outputs["TableName"],
                                        "ExistingBucketName": outputs["DataBucket"]})
    assert again["StackStatus"] == "CREATE_COMPLETE", again.get("StackStatusReason")
    attached = {o["OutputKey"]: o["OutputValue"] for o in again["Outputs"]}
    assert (attached["TableName"], attached["DataBucket"]) == (outputs["TableName"], outputs["DataBucket"])
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in local_client("cloudformation", endpoint)
                 .list_stack_resources(StackName=STACK)["StackResourceSummaries"] if r["LogicalResourceId"]}
    assert "FeedbackTable" not in resources and "DataBucket" not in resources
    # the region's logging role still named the deleted stack's role (moto sends no Delete to the custom
    # resource): the new stack's resource finds that role gone and sets its own
    role = local_client("iam", endpoint).get_role(RoleName=resources["ApiGatewayLogRole"])["Role"]["Arn"]
    assert local_client("apigateway", endpoint).get_account()["cloudwatchRoleArn"] == role
    second = run(create, endpoint, light)
    assert second.returncode == 0, second.stderr
    headers = {"x-api-key": json.loads(second.stdout)["api_key"]}
    read = requests.get(f"{api}/v1/requests/req-first-deploy/feedback", headers=headers, timeout=30)
    assert read.status_code == 200 and (read.json()["events"], read.json()["mean_rating"]) == (1, 4.0), read.text


def test_a_stage_with_access_logs_is_refused_while_the_region_has_no_logging_role(account) -> None:
    """The emulated account holds AWS's rule, so the ordering of the walk-through above means
    something: the same API stage, without the custom resource before it, fails. (Last in this file:
    the half-made API stays in the account.)"""
    endpoint = account["aws"]
    apigateway = local_client("apigateway", endpoint)
    apigateway.update_account(patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": ""}])
    template = {"Resources": {
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "ordering", "Body": {
            "openapi": "3.0.1", "info": {"title": "ordering"},
            "paths": {"/ping": {"get": {"x-amazon-apigateway-integration": {"type": "mock"}}}}}}},
        "Deployment": {"Type": "AWS::ApiGateway::Deployment", "Properties": {"RestApiId": {"Ref": "Api"}}},
        "Logs": {"Type": "AWS::Logs::LogGroup"},
        "Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {
            "RestApiId": {"Ref": "Api"}, "DeploymentId": {"Ref": "Deployment"}, "StageName": "prod",
            "AccessLogSetting": {"DestinationArn": {"Fn::GetAtt": ["Logs", "Arn"]}, "Format": "$context.requestId"}}}}}
    cloudformation = local_client("cloudformation", endpoint)
    with pytest.raises(ClientError) as refused:
        cloudformation.create_stack(StackName="unordered", TemplateBody=json.dumps(template))
    assert f"Stage (AWS::ApiGateway::Stage): {NO_LOG_ROLE}" in str(refused.value)
