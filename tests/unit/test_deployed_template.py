"""The template as CloudFormation receives it (after the SAM transform): every failure is seen, every
log kept for a bounded time, the data bucket TLS-only with lifecycle rules, sizes every account accepts."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ..deployed_template import transformed

ASYNC_FUNCTIONS = ("AnalysisFunction", "RetrainFunction", "RegisterFunction", "DeployFunction", "AgentCoreFunction")
FUNCTIONS = ("ApiFunction", "AuthorizerFunction", "LogRoleFunction", *ASYNC_FUNCTIONS)
PUBLIC = {"/v1/health", "/v1/openapi.json", "/v1/docs"}


@pytest.fixture(scope="module")
def deployed() -> dict[str, Any]:
    return transformed()


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def refs(value: Any) -> set[str]:
    """Logical ids a value refers to (Ref, Fn::GetAtt, Fn::Sub variables)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                found |= {part.split("}")[0].split(".")[0] for part in text.split("${")[1:]}
                found |= refs(inner)
            else:
                found |= refs(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= refs(inner)
    return found


def test_every_scheduled_and_rule_target_retries_then_keeps_what_failed(deployed) -> None:
    rules = of_type(deployed, "AWS::Events::Rule")
    assert len(rules) == 4  # the weekly schedule and the three rules of the retraining loop
    for name, rule in rules.items():
        [target] = rule["Properties"]["Targets"]
        assert refs(target["DeadLetterConfig"]) == {"FailedEventsQueue"}, name
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0, name
    configs = of_type(deployed, "AWS::Lambda::EventInvokeConfig")
    invoked = {next(iter(refs(c["Properties"]["FunctionName"]))) for c in configs.values()}
    assert invoked == set(ASYNC_FUNCTIONS)
    for config in configs.values():
        properties = config["Properties"]
        assert refs(properties["DestinationConfig"]["OnFailure"]["Destination"]) == {"FailedEventsQueue"}
        assert properties["MaximumRetryAttempts"] == 2


def test_alarms_cover_the_api_every_function_failed_events_and_training(deployed) -> None:
    alarms = of_type(deployed, "AWS::CloudWatch::Alarm").values()
    watched = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]): a["Properties"] for a in alarms
               if "Namespace" in a["Properties"]}
    errors = [a["Properties"] for a in alarms if a["Properties"].get("MetricName") == "Errors"]
    # metric math: the weekly state machine's failed and timed-out executions, added
    stats = [m["MetricStat"]["Metric"] for a in alarms for m in a["Properties"].get("Metrics", []) if "MetricStat" in m]
    assert {(m["Namespace"], m["MetricName"]) for m in stats} == {("AWS/States", "ExecutionsFailed"),
                                                                  ("AWS/States", "ExecutionsTimedOut")}
    assert all(refs(m["Dimensions"]) == {"AnalysisStateMachine"} for m in stats)
    assert ("AWS/ApiGateway", "5XXError") in watched
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in watched
    assert ("FeedbackLoop", "TrainingJobsFailed") in watched
    assert {next(iter(refs(a["Dimensions"]))) for a in errors} == set(FUNCTIONS)
    for alarm in alarms:
        assert refs(alarm["Properties"]["AlarmActions"]) == {"AlarmTopic"}
    [subscription] = of_type(deployed, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlarmEmail" and subscription["Properties"]["Protocol"] == "email"
    # without AlarmEmail nobody is told: the deploy's outputs say so, loudly
    condition, emailed, nobody = deployed["Outputs"]["AlarmsGoTo"]["Value"]["Fn::If"]
    assert condition == "HasAlarmEmail" and nobody.startswith("NOBODY") and "AlarmEmail" in nobody
    assert deployed["Parameters"]["AlarmEmail"]["Description"].startswith("SET THIS")


def test_the_api_has_one_stage_with_access_logs_throttling_and_tracing(deployed) -> None:
    stages = of_type(deployed, "AWS::ApiGateway::Stage")
    assert [s["Properties"]["StageName"] for s in stages.values()] == ["prod"]  # no implicit "Stage" stage
    [stage] = stages.values()
    assert refs(stage["Properties"]["AccessLogSetting"]["DestinationArn"]) == {"ApiAccessLogGroup"}
    assert "$context.requestId" in stage["Properties"]["AccessLogSetting"]["Format"]
    assert stage["Properties"]["TracingEnabled"] is True
    assert stage["Properties"]["MethodSettings"][0]["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRateLimit"}
    # access logs need the region's CloudWatch role: the setting is made before the API, hence its stage
    [(api_id, api)] = of_type(deployed, "AWS::ApiGateway::RestApi").items()
    assert api["DependsOn"] == "ApiGatewayLogRoleSetting" or "ApiGatewayLogRoleSetting" in api["DependsOn"]
    assert api_id in refs(stage["Properties"]["RestApiId"])
    setting = deployed["Resources"]["ApiGatewayLogRoleSetting"]
    assert setting["Type"] == "Custom::ApiGatewayLogRole" and "Condition" not in setting
    assert refs(setting["Properties"]["ServiceToken"]) == {"LogRoleFunction"}
    assert not of_type(deployed, "AWS::ApiGateway::Account")  # it replaces other APIs' role, and stays after delete


def test_every_route_but_the_public_ones_passes_the_key_authorizer(deployed) -> None:
    [api] = of_type(deployed, "AWS::ApiGateway::RestApi").values()
    body = api["Properties"]["Body"]
    scheme = body["components"]["securitySchemes"]["ProjectKey"]["x-amazon-apigateway-authorizer"]
    assert scheme["type"] == "request" and scheme["authorizerResultTtlInSeconds"] == 0
    assert "AuthorizerFunction" in refs(scheme["authorizerUri"])
    methods = [(path, verb, op) for path, ops in body["paths"].items() for verb, op in ops.items()]
    assert len(methods) > 10
    for path, verb, operation in methods:
        expected = None if verb == "options" else [{"NONE": []}] if path in PUBLIC else [{"ProjectKey": []}]
        assert operation.get("security") == expected, (path, verb)  # preflights carry no key
    responses = body["x-amazon-apigateway-gateway-responses"]
    denied = responses["ACCESS_DENIED"]
    assert denied["statusCode"] == "401"
    assert "$context.authorizer.reason" in denied["responseTemplates"]["application/json"]
    assert "gatewayresponse.header.WWW-Authenticate" in denied["responseParameters"]
    assert responses["AUTHORIZER_FAILURE"]["statusCode"] == "503"
    assert responses["AUTHORIZER_FAILURE"]["responseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX", "ACCESS_DENIED", "AUTHORIZER_FAILURE"):
        assert "gatewayresponse.header.Access-Control-Allow-Origin" in responses[kind]["responseParameters"], kind
    permissions = of_type(deployed, "AWS::Lambda::Permission").values()
    assert any(refs(p["Properties"]["FunctionName"]) == {"AuthorizerFunction"}
               and p["Properties"]["Principal"] == "apigateway.amazonaws.com" for p in permissions)


def test_the_api_calls_a_published_alias_that_snapstart_can_snapshot(deployed) -> None:
    function = deployed["Resources"]["ApiFunction"]["Properties"]
    assert function["SnapStart"] == {"Fn::If": ["ApiSnapStartOn", {"ApplyOn": "PublishedVersions"},
                                                {"ApplyOn": "None"}]}
    assert deployed["Conditions"]["ApiSnapStartOn"] == {"Fn::Equals": [{"Ref": "ApiSnapStart"}, "true"]}
    assert deployed["Parameters"]["ApiSnapStart"]["Default"] == "false"
    [api] = of_type(deployed, "AWS::ApiGateway::RestApi").values()
    targets = {(path, verb): refs(op["x-amazon-apigateway-integration"]["uri"])
               for path, ops in api["Properties"]["Body"]["paths"].items() for verb, op in ops.items()
               if "x-amazon-apigateway-integration" in op and op["x-amazon-apigateway-integration"]["type"] == "aws_proxy"}
    assert len(targets) == 15 and all("ApiFunctionAliaslive" in t for t in targets.values()), targets
    # OTLP/HTTP protobuf exports reach the function unaltered (base64), not read as text
    assert api["Properties"]["Body"]["x-amazon-apigateway-binary-media-types"] == ["application/x-protobuf"]


def test_every_function_logs_to_a_group_with_retention(deployed) -> None:
    groups = of_type(deployed, "AWS::Logs::LogGroup")
    named = set().union(*(refs(g["Properties"]["LogGroupName"]) for g in groups.values()))
    assert set(FUNCTIONS) <= named
    assert all(g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())


def test_the_data_bucket_is_tls_only_and_expires_what_it_need_not_keep(deployed) -> None:
    [policy] = of_type(deployed, "AWS::S3::BucketPolicy").values()
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rules = {r["Id"]: r for r in deployed["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["eval-logs"]["Prefix"] == "eval-logs/"
    assert rules["eval-logs"]["ExpirationInDays"] == {"Ref": "EvalLogRetentionDays"}
    assert rules["reports"]["ExpirationInDays"] == {"Ref": "ReportRetentionDays"}
    assert "models/" not in {r.get("Prefix") for r in rules.values()}  # deployed evaluators' artifacts stay


def test_sizes_fit_a_new_account(deployed) -> None:
    parameters = deployed["Parameters"]
    assert int(parameters["AnalysisMemorySize"]["Default"]) <= 3008  # new accounts refuse more
    memory = {name: r["Properties"]["MemorySize"] for name, r in of_type(deployed, "AWS::Lambda::Function").items()}
    assert memory["AnalysisFunction"] == {"Ref": "AnalysisMemorySize"}
    assert all(isinstance(m, dict) or m <= 3008 for m in memory.values())


# actions that IAM cannot scope to a resource: "*" is their only possible Resource
UNSCOPABLE = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "xray:PutTraceSegments",
              "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
              # a state machine's log delivery (these actions take no resource: the Step Functions guide)
              "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
              "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
              "logs:DescribeLogGroups"}


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            found.append({**statement, "Action": actions})
    return found


def test_roles_have_least_privilege(deployed) -> None:
    roles = of_type(deployed, "AWS::IAM::Role")
    for name, role in roles.items():
        managed = " ".join(str(arn) for arn in role["Properties"].get("ManagedPolicyArns", []))
        assert "FullAccess" not in managed, name
        for statement in statements(role):
            if statement["Resource"] == "*":
                assert set(statement["Action"]) <= UNSCOPABLE, (name, statement["Action"])
            if "iam:PassRole" in statement["Action"]:
                service = "apigateway" if name == "LogRoleFunctionRole" else "sagemaker"
                assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": f"{service}.amazonaws.com"}}
    # training jobs and endpoints run under different roles, each passed by the function that needs it
    passed = {name: refs([s["Resource"] for s in statements(role) if "iam:PassRole" in s["Action"]])
              for name, role in roles.items()}
    assert passed["RetrainFunctionRole"] == {"TrainingRole"}
    assert passed["DeployFunctionRole"] == {"EndpointRole"}
    assert passed["LogRoleFunctionRole"] == {"ApiGatewayLogRole"}
    deploy_env = deployed["Resources"]["DeployFunction"]["Properties"]["Environment"]["Variables"]
    assert refs(deploy_env["MODEL_EXECUTION_ROLE_ARN"]) == {"EndpointRole"}
    endpoint_writes = [s for s in statements(roles["EndpointRole"]) if "s3:PutObject" in s["Action"]]
    assert endpoint_writes == []  # an endpoint only reads its model
    authorizer = {a for s in statements(roles["AuthorizerFunctionRole"]) for a in s["Action"]
                  if a.startswith("dynamodb:")}
    assert authorizer == {"dynamodb:GetItem"}  # the authorizer reads keys, nothing else


def test_the_schedule_starts_the_weekly_state_machine_which_retries_and_reports_failures(deployed) -> None:
    resources = deployed["Resources"]
    scheduled = [r for r in of_type(deployed, "AWS::Events::Rule").values() if "ScheduleExpression" in r["Properties"]]
    [schedule] = scheduled
    [target] = schedule["Properties"]["Targets"]
    assert refs(target["Arn"]) == {"AnalysisStateMachine"}
    machine = resources["AnalysisStateMachine"]["Properties"]
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert refs(machine["LoggingConfiguration"]) == {"AnalysisStateMachineLogGroup"}
    assert refs(machine["DefinitionSubstitutions"]) == {"AnalysisFunction"}
    assert "${AnalysisFunctionArn}" in str(machine["DefinitionString"])

    def states(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
        found = dict(node["States"])
        for state in node["States"].values():
            for inner in [state.get("ItemProcessor"), *state.get("Branches", [])]:
                if inner:
                    found.update(states(inner))
        return found

    from pathlib import Path
    import json

    every = states(json.loads((Path(__file__).parents[2] / "statemachine/weekly-analysis.asl.json").read_text()))
    tasks = {name: state for name, state in every.items() if state["Type"] == "Task"}
    assert {"Plan", "Embedded", "StartQueries", "Poll", "Stop", "Report"} == set(tasks)
    assert all(state.get("Retry") for state in tasks.values())  # every call retries what is transient
    assert every["Wait"]["Type"] == "Wait"  # Athena is polled from the state machine, no function waits
    assert every["OnAthena"]["Retry"][0]["ErrorEquals"] == ["AthenaQueryFailed"]
    assert {c["Next"] for c in every["Embedded"]["Catch"] + every["OnAthena"]["Catch"]} == {"ProjectFailed"}
    assert every["ProjectsFailed"]["Type"] == "Fail"  # a failed project fails the execution (the alarm)
    role = statements(resources["AnalysisStateMachineRole"])
    athena = [s for s in role if any(a.startswith("athena:") for a in s["Action"])]
    assert [sorted(s["Action"]) for s in athena] == [["athena:BatchGetQueryExecution", "athena:StopQueryExecution"]]
    assert {r for r in refs(athena[0]["Resource"]) if not r.startswith("AWS::")} == {"AnalysisWorkGroup"}


DATA_BUCKET = {"Fn::If": ["CreateBucket", {"Ref": "DataBucket"}, {"Ref": "ExistingBucketName"}]}


def bucket_sub(value: Any) -> str | None:
    """The text of an Fn::Sub whose one variable ${Bucket} is the data bucket (the stack's own, or
    the one ExistingBucketName attaches); None for any other value."""
    sub = value.get("Fn::Sub") if isinstance(value, dict) else None
    if isinstance(sub, list) and sub[1] == {"Bucket": DATA_BUCKET}:
        return sub[0]
    return None


def _guarded(value: Any, created: dict[str, str], holds: set[str], conditions: dict[str, Any]) -> set[str]:
    """Conditional resources (logical id -> its condition) that a value refers to where their condition
    is not known to hold (`holds`: the conditions of the enclosing resource and Fn::If branches, and
    what each of them implies through Fn::And)."""
    def implied(names: set[str]) -> set[str]:
        more = {inner["Condition"] for name in names for inner in conditions[name].get("Fn::And", [])
                if isinstance(inner, dict) and "Condition" in inner}
        return names if more <= names else implied(names | more)

    holds = implied(holds)
    if isinstance(value, list):
        return set().union(*(_guarded(v, created, holds, conditions) for v in value))
    if not isinstance(value, dict):
        return set()
    if set(value) == {"Fn::If"}:
        name, when_true, when_false = value["Fn::If"]
        return _guarded(when_true, created, holds | {name}, conditions) | _guarded(when_false, created, holds, conditions)
    if set(value) == {"Fn::Sub"}:
        text, variables = value["Fn::Sub"] if isinstance(value["Fn::Sub"], list) else (value["Fn::Sub"], {})
        named = {part.split("}")[0].split(".")[0] for part in text.split("${")[1:]} - set(variables)
        return {r for r in named if r in created and created[r] not in holds} | _guarded(
            list(variables.values()), created, holds, conditions)
    if set(value) <= {"Ref", "Fn::GetAtt"}:
        return {r for r in refs(value) if r in created and created[r] not in holds}
    return _guarded(list(value.values()), created, holds, conditions)


def test_a_conditional_resource_is_referred_to_only_where_its_condition_holds(deployed) -> None:
    """The table and the bucket exist only when no ExistingTableName/ExistingBucketName attaches a
    retained one (CreateTable, CreateBucket); CloudFormation rejects a template that refers to a
    resource its condition may leave out, so every reference sits in the true branch of an Fn::If on
    that condition (or in a resource with the same condition)."""
    resources = deployed["Resources"]
    assert resources["FeedbackTable"]["Condition"] == "CreateTable"
    assert resources["DataBucket"]["Condition"] == "CreateBucket"
    created = {k: v["Condition"] for k, v in resources.items() if "Condition" in v}
    outside = {}
    for where, item in [*resources.items(), *((f"Outputs.{k}", v) for k, v in deployed["Outputs"].items())]:
        holds = {item["Condition"]} if "Condition" in item else set()
        bad = _guarded({k: v for k, v in item.items() if k != "Condition"}, created, holds, deployed["Conditions"])
        if bad:
            outside[where] = bad
    assert outside == {}


def test_the_eval_log_stream_writes_where_the_analysis_reads(deployed) -> None:
    """POST /v1/evals's stream: partitioned by the keys the API adds (logic/evals.py), into
    eval-logs/<project>/dt=YYYY-MM-DD/, files named as the analysis reads them; its role writes only
    there; the API function may put records to this stream and no other."""
    from feedback_loop.analysis.evallogs import JSON_SUFFIXES
    from feedback_loop.local.firehose import parse_query
    from feedback_loop.logic import evals

    stream = deployed["Resources"]["EvalLogStream"]["Properties"]
    destination = stream["ExtendedS3DestinationConfiguration"]
    assert destination["Prefix"] == "eval-logs/!{partitionKeyFromQuery:project}/dt=!{partitionKeyFromQuery:dt}/"
    [processor] = destination["ProcessingConfiguration"]["Processors"]
    query = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}["MetadataExtractionQuery"]
    assert parse_query(query) == {"project": [evals.ROUTING, "project"], "dt": [evals.ROUTING, "dt"]}
    assert destination["CompressionFormat"] == "GZIP" and destination["FileExtension"] in JSON_SUFFIXES
    assert destination["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert stream["DeliveryStreamEncryptionConfigurationInput"]["KeyType"] == "AWS_OWNED_CMK"
    role = deployed["Resources"]["EvalLogStreamRole"]["Properties"]
    [policy] = role["Policies"]
    writes = next(s for s in policy["PolicyDocument"]["Statement"] if "s3:PutObject" in s["Action"])
    assert [bucket_sub(r) for r in writes["Resource"]] == ["arn:${AWS::Partition}:s3:::${Bucket}/eval-logs/*",
                                                            "arn:${AWS::Partition}:s3:::${Bucket}/eval-logs-errors/*"]
    api = deployed["Resources"]["ApiFunction"]["Properties"]
    assert api["Environment"]["Variables"]["EVAL_LOG_STREAM"] == {"Ref": "EvalLogStream"}
    role_policies = deployed["Resources"]["ApiFunctionRole"]["Properties"]["Policies"]
    firehose = [s for p in role_policies for s in p["PolicyDocument"]["Statement"]
                if any(str(a).startswith("firehose:") for a in (s["Action"] if isinstance(s["Action"], list)
                                                                 else [s["Action"]]))]
    assert firehose and all("EvalLogStream" in str(s["Resource"]) for s in firehose)


def test_the_agentcore_option_subscribes_its_function_to_the_two_log_groups_only(deployed) -> None:
    """AgentCoreProject set: the evaluation results' and the spans' log groups each deliver to the
    function, which logs may invoke for those log groups only; unset: none of it exists."""
    filters = of_type(deployed, "AWS::Logs::SubscriptionFilter")
    assert set(filters) == {"AgentCoreEvaluationSubscription", "AgentCoreSpanSubscription"}
    permissions = {k: v for k, v in of_type(deployed, "AWS::Lambda::Permission").items()
                   if v["Properties"].get("Principal") == "logs.amazonaws.com"}
    for name, subscription in filters.items():
        kind = name.removeprefix("AgentCore").removesuffix("Subscription")
        assert refs(subscription["Properties"]["DestinationArn"]) == {"AgentCoreFunction"}
        assert subscription["Properties"]["LogGroupName"] == {"Ref": f"AgentCore{kind}LogGroup"}
        assert subscription["Condition"] == f"AgentCore{kind}s" and f"AgentCore{kind}Permission" in str(
            subscription.get("DependsOn"))
        permission = permissions[f"AgentCore{kind}Permission"]["Properties"]
        assert f"AgentCore{kind}LogGroup" in refs(permission["SourceArn"])
    conditions = deployed["Conditions"]
    assert "AgentCoreOn" in str(conditions["AgentCoreEvaluations"]) and "AgentCoreOn" in str(conditions["AgentCoreSpans"])
    for name in ("AgentCoreFunction", "AgentCoreFunctionLogGroup", "AgentCoreFunctionErrorsAlarm"):
        assert deployed["Resources"][name]["Condition"] == "AgentCoreOn", name
    role = deployed["Resources"]["AgentCoreFunctionRole"]["Properties"]["Policies"]
    assert {"FeedbackTable", "EvalLogStream"} <= refs(role)
    assert deployed["Parameters"]["AgentCoreProject"]["Default"] == ""


def _s3_grants(role: dict[str, Any]) -> dict[str, set[str]]:
    """action -> the resources it is granted on (Fn::Sub text, ${Bucket} the data bucket)."""
    grants: dict[str, set[str]] = {}
    for statement in statements(role):
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        texts = {bucket_sub(r) or json.dumps(r, sort_keys=True) for r in resources}
        for action in statement["Action"]:
            if action.startswith("s3:"):
                grants.setdefault(action, set()).update(texts)
    return grants


def test_the_analysis_and_retrain_functions_touch_only_their_prefixes(deployed) -> None:
    bucket = "arn:${AWS::Partition}:s3:::${Bucket}"
    roles = of_type(deployed, "AWS::IAM::Role")
    analysis, retrain = _s3_grants(roles["AnalysisFunctionRole"]), _s3_grants(roles["RetrainFunctionRole"])
    for grants in (analysis, retrain):  # nothing deleted in the versioned bucket, its settings untouched
        assert not {a for a in grants if a.startswith(("s3:Delete", "s3:PutBucket", "s3:PutLifecycle"))}
        assert all(r == bucket or r.startswith(bucket + "/") for resources in grants.values() for r in resources)
    assert analysis["s3:GetObject"] == {f"{bucket}/{p}/*" for p in ("eval-logs", "reports", "feedback-export",
                                                                    "athena-results", "calibration")}
    assert analysis["s3:PutObject"] == {f"{bucket}/{p}/*" for p in ("reports", "feedback-export", "athena-results")}
    assert retrain == {"s3:ListBucket": {bucket}, "s3:GetObject": {f"{bucket}/reports/*", f"{bucket}/base-models/*"},
                       "s3:PutObject": {f"{bucket}/code/*", f"{bucket}/training/*"}}
    [listing] = [s for s in statements(roles["RetrainFunctionRole"]) if "s3:ListBucket" in s["Action"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["reports/*", "base-models/*"]}}


def test_the_agentcore_project_follows_the_project_name_rule(deployed) -> None:
    from feedback_loop.logic.keys import PROJECT_PATTERN

    allowed = re.compile(deployed["Parameters"]["AgentCoreProject"]["AllowedPattern"])
    for name in ("", "shop", "a-b_c9", "x" * 63):
        assert allowed.match(name) and (name == "" or PROJECT_PATTERN.match(name))
    for name in ("Shop", ".", "..", "a.b", "-a", "x" * 64, "a/b"):
        assert not allowed.match(name) and not PROJECT_PATTERN.match(name)
