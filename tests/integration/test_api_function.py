"""The API function invoked directly, as Lambda does: sample events, logs, metrics, imports."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from feedback_loop.local.authorizer import authorize
from feedback_loop.local.runtime import LambdaContext, load_module
from feedback_loop.local.template import Template
from feedback_loop.logic.keys import create_key
from feedback_loop.settings import api_settings

from ..conftest import ROOT

CONTEXT = lambda: LambdaContext("ApiFunction", timeout_seconds=28)  # noqa: E731  the template's Timeout
pytestmark = pytest.mark.integration
EXPECTED_STATUS = {
    "api_post_feedback.json": 201, "api_post_feedback_batch.json": 207, "api_get_request_feedback.json": 200,
    "api_post_change.json": 201, "api_get_changes.json": 200, "api_get_health.json": 200,
}


@pytest.fixture
def api(stack, monkeypatch):
    """A fresh container of the API function, with metrics on (the local stack turns them off)."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    api_settings.cache_clear()
    spec = next(f for f in stack.template.functions() if f.logical_id == "ApiFunction")
    module = load_module(spec)
    yield module
    api_settings.cache_clear()


@pytest.fixture
def authorizer(stack):
    """The stack's API authorizer, which API Gateway runs before the function (event in, answer out)."""
    return stack.functions["AuthorizerFunction"].invoke


def sample(name: str, key: str, authorizer) -> dict:
    """A sample event as API Gateway hands it over: with the authorizer's context for its key."""
    event = json.loads((ROOT / "events" / name).read_text().replace("REPLACE_WITH_API_KEY", key))
    if event["resource"] != "/v1/health":
        decision = authorize(authorizer, event)  # on ALLOW, puts its context on the event
        assert decision.outcome == "ALLOW", (name, decision)
    return event


def test_every_sample_event_is_handled(api, authorizer, table, project, capfd) -> None:
    key = create_key(table, project).plaintext
    assert sorted(p.name for p in (ROOT / "events").glob("api_*.json")) == sorted(EXPECTED_STATUS)
    for name, status in EXPECTED_STATUS.items():
        response = api.lambda_handler(sample(name, key, authorizer), CONTEXT())
        assert response["statusCode"] == status, (name, response["body"])


def test_the_authorizer_refuses_bad_keys_with_the_reason(authorizer, table, project) -> None:
    key = create_key(table, project).plaintext
    event = json.loads((ROOT / "events" / "api_post_feedback.json").read_text())
    for presented, reason in [(key[:-1] + ("A" if key[-1] != "A" else "B"), "unknown API key"),
                              ("", "missing or malformed API key"), ("flk_nope", "missing or malformed API key")]:
        event["headers"]["Authorization"] = f"Bearer {presented}"
        decision = authorize(authorizer, event)
        assert (decision.outcome, decision.context) == ("ACCESS_DENIED", {"reason": reason})
    event["headers"]["Authorization"] = f"Bearer {key}"
    allowed = authorize(authorizer, event)
    assert allowed.outcome == "ALLOW"
    assert allowed.context["project"] == project and allowed.context["key_id"] == key.split("_")[1]


def test_the_authorizer_sample_event_gets_a_policy_for_its_method_only(authorizer, table, project) -> None:
    issued = create_key(table, project)
    request = json.loads((ROOT / "events" / "authorizer_request.json").read_text()
                         .replace("REPLACE_WITH_API_KEY", issued.plaintext))
    answer = authorizer(request)
    assert answer["principalId"] == issued.key.key_id
    assert answer["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [request["methodArn"]]}]
    assert answer["context"] == {"project": project, "key_id": issued.key.key_id,  # a key without scopes: all
                                 "scopes": "calibration:read changes:read changes:write evals:write feedback:read "
                                           "feedback:write retrain"}
    browser = create_key(table, project, scopes=["feedback:write"])
    answer = authorizer(json.loads((ROOT / "events" / "authorizer_request.json").read_text()
                                   .replace("REPLACE_WITH_API_KEY", browser.plaintext)))
    assert answer["context"]["scopes"] == "feedback:write"


def test_logs_are_structured_correlated_and_free_of_keys(api, authorizer, table, project) -> None:
    # Powertools reuses the named logger across containers, so read its handler's stream directly.
    stream = io.StringIO()
    previous = api.logger.registered_handler.setStream(stream)
    level = api.logger.log_level
    api.logger.setLevel("INFO")  # the local stack runs functions at WARNING
    key = create_key(table, project).plaintext
    event = sample("api_post_feedback.json", key, authorizer)
    api.lambda_handler(event, CONTEXT())
    unauthorized = sample("api_post_feedback.json", key, authorizer)
    del unauthorized["requestContext"]["authorizer"]  # invoked other than through API Gateway's authorizer
    refused = api.lambda_handler(unauthorized, CONTEXT())
    assert refused["statusCode"] == 401 and "authorizer" in refused["body"]
    api.logger.registered_handler.setStream(previous)
    api.logger.setLevel(level)
    out = stream.getvalue()
    assert key not in out and key[:-1] not in out
    logs = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"level"' in line]
    handled = [line for line in logs if line["message"] == "handled"]
    assert [line["status"] for line in handled] == [201, 401]
    assert handled[0]["correlation_id"] == event["requestContext"]["requestId"]
    assert handled[0]["project"] == project and "project" not in handled[1]  # state cleared per request
    assert handled[0]["route"] == "/v1/feedback"


def test_accepted_and_rejected_events_are_counted_per_type_in_emf(api, authorizer, table, project, capfd) -> None:
    key = create_key(table, project).plaintext
    event = sample("api_post_feedback_batch.json", key, authorizer)
    body = json.loads(event["body"])
    body["events"].append({"request_id": "req_123", "feedback_type": "explicit_rating", "value": 9})
    event["body"] = json.dumps(body)
    api.lambda_handler(event, CONTEXT())
    api.lambda_handler(event, CONTEXT())  # the same batch again: duplicates
    metrics = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    counted: dict[tuple[str, str], float] = {}
    for blob in metrics:
        assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "FeedbackLoop"
        for definition in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            name = definition["Name"]
            key_ = (name, blob["feedback_type"])
            counted[key_] = counted.get(key_, 0) + sum(blob[name] if isinstance(blob[name], list) else [blob[name]])
    assert counted == {
        ("FeedbackAccepted", "explicit_thumbs_up"): 1, ("FeedbackAccepted", "implicit_edit"): 1,
        ("FeedbackRejected", "explicit_rating"): 2,
        ("FeedbackDuplicate", "explicit_thumbs_up"): 1, ("FeedbackDuplicate", "implicit_edit"): 1,
    }


def test_a_refused_items_own_text_never_becomes_a_metric_dimension(api, authorizer, table, project, capfd) -> None:
    key = create_key(table, project).plaintext
    event = sample("api_post_feedback_batch.json", key, authorizer)
    event["body"] = json.dumps({"events": [{"request_id": "r", "feedback_type": f"made-up-{i}", "value": True}
                                           for i in range(500)]})
    assert api.lambda_handler(event, CONTEXT())["statusCode"] == 207
    metrics = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    assert {(m["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], m["feedback_type"]) for m in metrics} == {
        ("FeedbackRejected", "other")}


FORBIDDEN = {  # cold start and bundle size: what each function must never import
    # the X-Ray SDK only with ApiDetailedTracing=true (feedback_loop/tracing.py): 0.2 s of cold start
    # protobuf (google) and the OTLP messages on the first OpenTelemetry export, not at cold start
    "ApiFunction": {"numpy", "scipy", "sagemaker", "pandas", "torch", "transformers", "sentence_transformers",
                    "aws_xray_sdk", "google", "opentelemetry"},
    "AuthorizerFunction": {"numpy", "scipy", "sagemaker", "pandas", "torch", "transformers", "sentence_transformers"},
    "AnalysisFunction": {"sagemaker", "torch", "transformers", "sentence_transformers"},
    "RetrainFunction": {"numpy", "scipy", "sagemaker", "torch", "transformers", "sentence_transformers"},
    "RegisterFunction": {"sagemaker", "torch", "transformers", "sentence_transformers"},
    "DeployFunction": {"numpy", "scipy", "sagemaker", "torch", "transformers", "sentence_transformers"},
    "LogRoleFunction": {"numpy", "scipy", "sagemaker", "pandas", "torch", "transformers", "sentence_transformers"},
}


@pytest.mark.parametrize("function", sorted(FORBIDDEN))
def test_functions_import_nothing_heavy(function: str) -> None:
    code = (
        "import sys, os\n"
        "os.environ.update(TABLE_NAME='t', AWS_DEFAULT_REGION='us-east-1', DATA_BUCKET='b', EVENT_BUS_NAME='e',\n"
        "    TRAINING_ROLE_ARN='r', TRAINING_IMAGE_URI='i', INFERENCE_IMAGE_URI='i', MODEL_EXECUTION_ROLE_ARN='r')\n"
        "from feedback_loop.local.runtime import load_module\n"
        "from feedback_loop.local.stack import find_template\n"
        "from feedback_loop.local.template import Template\n"
        "before = set(sys.modules)\n"
        f"spec = next(f for f in Template(find_template()).functions() if f.logical_id == {function!r})\n"
        "load_module(spec)\n"
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    imported = set(json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"')))
    assert imported & FORBIDDEN[function] == set()
    assert set(FORBIDDEN) == {f.logical_id for f in Template(ROOT / "template.yaml").functions()}


def test_the_api_function_builds_its_openapi_document_on_first_request_not_at_cold_start() -> None:
    code = (
        "import importlib.util, json, os, sys\n"
        "os.environ.update(TABLE_NAME='t', AWS_DEFAULT_REGION='us-east-1')\n"
        "spec = importlib.util.spec_from_file_location('app', 'functions/api/app.py')\n"
        "module = importlib.util.module_from_spec(spec); sys.modules['app'] = module\n"
        "spec.loader.exec_module(module)\n"
        "models = 'aws_lambda_powertools.event_handler.openapi.models'\n"
        "at_start = models in sys.modules\n"
        "document = json.loads(module.openapi_json())\n"
        "print(json.dumps([at_start, models in sys.modules, sorted(document['paths'])]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    at_start, after, paths = json.loads(result.stdout.strip().splitlines()[-1])
    assert (at_start, after) == (False, True)
    assert "/v1/feedback" in paths and "/v1/docs" not in paths and "/v1/openapi.json" not in paths


def test_containers_in_one_process_keep_their_own_request(stack, authorizer, table, project) -> None:
    """Powertools keeps the current event on a class shared by every resolver in the process; the
    local stack runs containers as threads of one process. Each container must keep its own request,
    or a request can be resolved with another's body (seen as 422s and mixed answers under load)."""
    spec = next(f for f in stack.template.functions() if f.logical_id == "ApiFunction")
    first, second = load_module(spec), load_module(spec)
    key = create_key(table, project).plaintext
    single = sample("api_post_feedback.json", key, authorizer)
    batch = sample("api_post_feedback_batch.json", key, authorizer)
    assert first.lambda_handler(single, CONTEXT())["statusCode"] in (200, 201)
    assert second.lambda_handler(batch, CONTEXT())["statusCode"] == 207
    assert first.app.current_event.path == "/v1/feedback" and second.app.current_event.path == "/v1/feedback/batch"
