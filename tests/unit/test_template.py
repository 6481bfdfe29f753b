"""template.yaml: valid for CloudFormation, and the single source of what the local stack builds."""

from __future__ import annotations

import json

import cfnlint.api
import pytest

from feedback_loop.cli import api_module, openapi_document
from feedback_loop.local.template import Template

from ..conftest import ROOT


@pytest.fixture(scope="module")
def template() -> Template:
    return Template(ROOT / "template.yaml")


def test_template_passes_cfn_lint() -> None:
    matches = cfnlint.api.lint_file(ROOT / "template.yaml")
    assert [str(m) for m in matches] == []


def test_every_route_of_the_template_is_served_by_the_function_and_back(template: Template) -> None:
    declared = {(r.method, r.path) for r in template.routes()}
    app = api_module(str(ROOT / "template.yaml")).app
    served = set()
    for route_key in app._static_routes + app._dynamic_routes:  # Powertools' compiled routes
        for method in route_key.method.split("|"):
            path = route_key.openapi_path
            served.add((method.upper(), path))
    assert declared == served


def test_intrinsics_resolve_to_local_names(template: Template) -> None:
    api = next(f for f in template.functions() if f.logical_id == "ApiFunction")
    assert api.environment["TABLE_NAME"] == template.physical_name("FeedbackTable")
    assert api.environment["RETENTION_DAYS"] == "730"  # the parameter's default
    assert api.environment["POWERTOOLS_SERVICE_NAME"] == "feedback-loop"  # from Globals
    assert api.code_dir == ROOT / "functions/api"
    assert template.resolve({"Fn::Sub": "${AWS::StackName}-${FeedbackTable}"}) == \
        f"feedback-loop-local-{template.physical_name('FeedbackTable')}"
    overridden = Template(ROOT / "template.yaml", parameters={"RetentionDays": "30"})
    assert next(f for f in overridden.functions() if f.logical_id == "ApiFunction").environment["RETENTION_DAYS"] == "30"
    with pytest.raises(ValueError, match="unknown template parameters"):
        Template(ROOT / "template.yaml", parameters={"Nope": "1"})


def test_local_table_is_built_from_the_template_properties(stack, template: Template) -> None:
    import boto3

    described = boto3.client("dynamodb").describe_table(TableName=stack.table_name)["Table"]
    props = template.resources["FeedbackTable"]["Properties"]
    assert described["KeySchema"] == props["KeySchema"]
    assert [g["IndexName"] for g in described["GlobalSecondaryIndexes"]] == \
        [g["IndexName"] for g in props["GlobalSecondaryIndexes"]]
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName=stack.table_name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]


def test_committed_openapi_document_is_current() -> None:
    committed = json.loads((ROOT / "docs/openapi.json").read_text())
    assert committed == openapi_document(str(ROOT / "template.yaml")), "run `make openapi` and commit docs/openapi.json"


def test_the_athena_tables_of_the_template_are_those_the_analysis_reads(stack, template: Template) -> None:
    """The Glue tables in template.yaml are analysis/athena.py's (written twice: in the template for
    CloudFormation, in the code for the queries and the local Athena), and the local stack builds them."""
    import boto3

    from feedback_loop.analysis import athena

    bucket = template.physical_name("DataBucket")
    declared = [template.resolve(r["Properties"]["TableInput"]) for r in template.of_type("AWS::Glue::Table").values()]
    assert sorted(declared, key=lambda t: t["Name"]) == sorted(athena.tables(bucket), key=lambda t: t["Name"])
    database = template.physical_name("AnalysisDatabase")
    assert database == "feedback_loop_local"  # the stack's name, as Athena takes it: lower case, no hyphen
    glue = boto3.client("glue")
    stored = {t["Name"]: t for t in glue.get_tables(DatabaseName=database)["TableList"]}
    assert set(stored) == {athena.EVAL_LOGS, athena.EVAL_LOGS_PARQUET, athena.FEEDBACK}
    assert stored["eval_logs"]["Parameters"]["storage.location.template"] == \
        f"s3://{stack.bucket}/eval-logs/${{project}}/dt=${{dt}}/"
    workgroup = template.resolve(template.resources["AnalysisWorkGroup"]["Properties"])
    assert workgroup["WorkGroupConfiguration"]["ResultConfiguration"]["OutputLocation"] == \
        f"s3://{bucket}/athena-results/"


def test_a_retained_table_and_bucket_are_attached_by_name(template: Template) -> None:
    """ExistingTableName/ExistingBucketName: no table or bucket is created, and every function,
    policy, Glue table and output names the attached ones (what `sam delete` retained)."""
    attached = Template(ROOT / "template.yaml", parameters={"ExistingTableName": "feedback-loop-old-table",
                                                            "ExistingBucketName": "feedback-loop-old-bucket"})
    assert attached.of_type("AWS::DynamoDB::Table") == {} and attached.of_type("AWS::S3::Bucket") == {}
    assert (attached.output("TableName"), attached.output("DataBucket")) == \
        ("feedback-loop-old-table", "feedback-loop-old-bucket")
    for function in attached.functions():
        assert function.environment["TABLE_NAME"] == "feedback-loop-old-table", function.logical_id
        assert function.environment["DATA_BUCKET"] == "feedback-loop-old-bucket", function.logical_id
    kinds = ("AWS::Serverless::Function", "AWS::IAM::Role", "AWS::Glue::Table", "AWS::S3::BucketPolicy",
             "AWS::Athena::WorkGroup", "AWS::KinesisFirehose::DeliveryStream")
    resolved = json.dumps([attached.resolve(r.get("Properties", {}).get("Policies", r.get("Properties")))
                           for kind in kinds for r in attached.of_type(kind).values()])
    own = (template.physical_name("FeedbackTable"), template.physical_name("DataBucket"))
    assert not [name for name in own if name in resolved]
    assert "arn:aws:s3:::feedback-loop-old-bucket/eval-logs/*" in resolved
    assert "s3://feedback-loop-old-bucket/eval-logs/" in resolved
    assert ":table/feedback-loop-old-table" in resolved
    own_stack = json.dumps([template.resolve(r.get("Properties", {}).get("Policies", r.get("Properties")))
                            for kind in kinds for r in template.of_type(kind).values()])
    assert f"arn:aws:s3:::{own[1]}/eval-logs/*" in own_stack and "old-bucket" not in own_stack
