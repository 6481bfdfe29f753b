"""The feedback API: API Gateway proxy events in, JSON out. Routes parse, call the domain, shape."""


import base64
import functools
import json
import re
import time
from collections import Counter
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParameter
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
import boto3
from botocore.exceptions import BotoCoreError, ClientError

import feedback_loop
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.logic import changes, evals, ingest, summary
from feedback_loop.logic.calibration import CurrentMaps
from feedback_loop.models.calibration import Calibrated, CalibrateRequest, CalibrateResult
from feedback_loop.logic.keys import ROUTE_SCOPES, SCOPES, read_scopes
from feedback_loop.logic.ratelimit import RateLimiter
from feedback_loop.retraining.launch import request_retrain
from feedback_loop.models.changes import Change, ChangeList, ChangeName, StoredChange
from feedback_loop.models.evallog import EvalBatchRequest, EvalBatchResult
from feedback_loop.models.errors import (
    ChangeNotFound,
    DuplicateChange,
    EventConflict,
    NoCalibrator,
    RateLimited,
    StorageUnavailable,
    Unauthorized,
    field_errors,
)
from feedback_loop.models.feedback import (
    BatchRequest,
    BatchResult,
    FeedbackEvent,
    FeedbackEventIn,
    FeedbackType,
    FieldError,
    RequestId,
)
from feedback_loop.models.openapi_errors import with_error_responses
from feedback_loop.models.strict_json import body_problem
from feedback_loop.models.summary import RequestSummary
from feedback_loop.settings import api_settings
from feedback_loop.tracing import optional_tracer

logger = Logger()
tracer = optional_tracer()  # the X-Ray SDK only where detailed tracing is on: it costs ~0.2 s of cold start
settings = api_settings()
# browsers (the widget) call from other origins; preflights are answered without a key
cors = CORSConfig(allow_origin=settings.cors_allow_origin, allow_headers=["Authorization", "x-api-key", "Content-Type"],
                  expose_headers=["Retry-After"], max_age=600)


class FeedbackResolver(APIGatewayRestResolver):
    """The Powertools resolver, whose OpenAPI document describes refusals as the API sends them, and
    which keeps the request it is resolving to itself."""

    def resolve(self, event: dict, context: Any) -> dict[str, Any]:
        # Powertools keeps the current event on its BaseRouter class, shared by every resolver in the
        # process. One Lambda container is one process, but the local stack runs several containers of
        # this function as threads of one process: without this, a request could be resolved with
        # another's body. The instance's own attributes shadow the class's.
        self.current_event = self._to_proxy_event(event)
        self.lambda_context = context
        return super().resolve(event, context)

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "^{}/*$") -> re.Pattern[str]:
        # A path parameter is one whole path segment, whatever it holds (Powertools matches only word
        # characters and some punctuation): each route's parameter model says what it takes, so a
        # request_id that POST stored is always found by GET, and a refusal names the parameter.
        return re.compile(base_regex.format(re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", rule)))

    def get_openapi_schema(self, **kwargs: Any) -> "OpenAPI":  # noqa: F821  imported when first built
        from aws_lambda_powertools.event_handler.openapi.models import OpenAPI

        document = super().get_openapi_schema(**kwargs).model_dump(by_alias=True, exclude_none=True, mode="json")
        return OpenAPI.model_validate(with_error_responses(document))


app = FeedbackResolver(enable_validation=True, cors=cors)


def openapi_settings() -> dict[str, Any]:
    """The document's title, version and security schemes (Powertools' OpenAPI models are imported
    here, on the first request that needs them, not at cold start)."""
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer

    return {
        "title": "feedback-loop API",
        "version": feedback_loop.__version__,
        "security_schemes": {"bearer": HTTPBearer(description="Authorization: Bearer <project API key>"),
                             "apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)},
        "security": [{"bearer": []}, {"apiKey": []}],
    }


table = FeedbackTable(settings.table_name)


@functools.cache
def calibrators() -> CurrentMaps:
    """The calibrator in service per project, read on the first calibration request (not at cold start)."""
    return CurrentMaps(table, boto3.client("s3"), settings.data_bucket)


@functools.cache
def events() -> Any:
    """The EventBridge client, made on the first /v1/retrain (a client costs tens of ms at cold start)."""
    return boto3.client("events")


limiter = RateLimiter(table, settings.rate_limit_per_minute, batch=settings.rate_limit_batch or None)
policy = ingest.IngestPolicy(day_shards=settings.day_shards, retention_days=settings.retention_days,
                               eval_dedup_days=settings.eval_dedup_days)
PUBLIC_PATHS = {"/v1/health", "/v1/openapi.json", "/v1/docs"}
OTLP_PATHS = {"/v1/traces", "/v1/logs"}  # OpenTelemetry exporters' paths: protobuf or JSON, maybe compressed
OTLP_MEDIA = ("application/x-protobuf", "application/json")
RETRY_AFTER_SECONDS = "1"
DEADLINE_MARGIN_SECONDS = 1.0


def _error(status: HTTPStatus, message: str, fields: list[FieldError] | None = None,
           headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"status": status.value, "type": status.phrase, "message": message,
                      "fields": [f.model_dump() for f in fields or []]}}
    return Response(status_code=status.value, content_type="application/json", body=json.dumps(body),
                    headers=headers)


def _proxy_response(response: Response, event: dict) -> dict:
    """A refusal made before the router, with the CORS headers the router adds to its own answers."""
    origin = next((v for k, v in (event.get("headers") or {}).items() if k.lower() == "origin"), None)
    return {"statusCode": response.status_code, "headers": {**response.headers, **cors.to_dict(origin)},
            "body": response.body, "isBase64Encoded": False}


def _gatekeeper(event: dict) -> Response | None:
    """Rate and size checks, before the router reads the body. The key was checked by the API's
    authorizer (functions/authorizer), which hands over its project and key_id. Returns the refusal,
    or None with the project in the app context."""
    if event.get("resource") not in PUBLIC_PATHS and event.get("httpMethod") != "OPTIONS":
        try:
            project, key_id, scopes = _authorized(event)
            logger.append_keys(project=project)
            needed = ROUTE_SCOPES.get((event.get("httpMethod", ""), event.get("resource", "")))
            if needed is not None and needed not in scopes:
                return _error(HTTPStatus.FORBIDDEN, f"this key may not {SCOPES[needed]} (scope {needed}; its scopes: "
                              f"{' '.join(sorted(scopes)) or 'none'})",
                              [FieldError(field="authorization", message=f"needs the scope {needed}")])
            limiter.check(key_id)
        except Unauthorized as error:
            return unauthorized(error)
        except RateLimited as error:
            return _error(HTTPStatus.TOO_MANY_REQUESTS, f"{error}: retry after {error.retry_after} s",
                          [FieldError(field="authorization", message=str(error))],
                          headers={"Retry-After": str(error.retry_after)})
        except (StorageUnavailable, ClientError, BotoCoreError) as error:  # the count could not be kept
            return storage_unavailable(error)
        app.append_context(project=project)
    if len((event.get("body") or "").encode()) > settings.max_body_bytes:
        limit = settings.max_body_bytes
        return _error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body is larger than {limit} bytes",
                      [FieldError(field="body", message=f"must be at most {limit} bytes")])
    kind = next((v for k, v in (event.get("headers") or {}).items() if k.lower() == "content-type"), "")
    media = kind.split(";")[0].strip().lower()
    if event.get("resource") in OTLP_PATHS:  # read by interop/otlp.py, which names what it cannot read
        if media not in OTLP_MEDIA:
            expected = " or ".join(OTLP_MEDIA)
            return _error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"content-type {media!r} is not supported: send OTLP "
                          f"as {expected}", [FieldError(field="content-type", message=f"must be {expected}")])
        return None
    if event.get("body") and media and media != "application/json" and not media.endswith("+json"):
        return _error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"content-type {media!r} is not supported: send JSON",
                      [FieldError(field="content-type", message="must be application/json")])
    problem = body_problem(event.get("body"), bool(event.get("isBase64Encoded")))
    if problem is not None:
        return _error(HTTPStatus.BAD_REQUEST, f"body: {problem}", [FieldError(field="body", message=problem)])
    return None


def _authorized(event: dict) -> tuple[str, str, frozenset[str]]:
    """(project, key_id, scopes) as the authorizer passed them; a request that did not pass it is refused."""
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    if not context.get("project") or not context.get("key_id"):
        raise Unauthorized("the request did not pass the API's authorizer")
    return context["project"], context["key_id"], read_scopes(context.get("scopes"))


FEEDBACK_TYPES = frozenset(kind.value for kind in FeedbackType)


def _count(outcomes: Counter[tuple[str, str]]) -> None:
    if settings.metrics_disabled:
        return
    for (outcome, feedback_type), n in outcomes.items():
        with single_metric(name=f"Feedback{outcome}", unit=MetricUnit.Count, value=n) as metric:
            metric.add_dimension(name="feedback_type", value=feedback_type)


@app.get("/v1/health", security=[])
def health() -> dict[str, str]:
    return {"status": "ok", "version": feedback_loop.__version__}


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi():  # unannotated: the document does not describe itself
    return Response(status_code=200, content_type="application/json", body=openapi_json())


@functools.cache
def openapi_json() -> str:
    """The OpenAPI document, built on its first request and kept by the warm container."""
    return app.get_openapi_json_schema(**openapi_settings())


@app.get("/v1/docs", include_in_schema=False)
def docs():  # Swagger UI over the same document, built on first request (Powertools' enable_swagger builds at import)
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    if (app.current_event.query_string_parameters or {}).get("format") == "json":
        return Response(status_code=200, content_type="application/json", body=openapi_json())
    return Response(status_code=200, content_type="text/html",
                    body=generate_swagger_html(openapi_json().replace("</", "<\\/"), *_swagger_assets(), "", None))


@functools.cache
def _swagger_assets() -> tuple[str, str]:
    """Swagger UI's script and style sheet, as Powertools ships them (served inline: no CDN)."""
    from aws_lambda_powertools.event_handler.openapi import swagger_ui

    folder = Path(swagger_ui.__file__).parent
    return ((folder / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
            (folder / "swagger-ui.min.css").read_text(encoding="utf-8"))


@app.post("/v1/feedback", summary="Record one feedback event",
          responses={200: {"description": "Already stored (same event_id): the original"},
                     201: {"description": "Stored"}, 409: {"description": "event_id reused with another body"}})
@tracer.capture_method
def post_feedback(event: Annotated[FeedbackEventIn, Body()]) -> Response[FeedbackEvent]:
    recorded = ingest.record_event(table, app.context["project"], event, policy)
    _count(Counter({("Accepted" if recorded.created else "Duplicate", event.feedback_type.value): 1}))
    status = HTTPStatus.CREATED if recorded.created else HTTPStatus.OK
    return Response(status_code=status.value, content_type="application/json",
                    body=recorded.event)


@app.post("/v1/feedback/batch", summary="Record up to 500 feedback events, each accepted or rejected on its own",
          responses={207: {"description": "Per-item results"}})
@tracer.capture_method
def post_feedback_batch(batch: Annotated[BatchRequest, Body()]) -> Response[BatchResult]:
    result = ingest.record_batch(table, app.context["project"], batch.events, policy)
    outcomes: Counter[tuple[str, str]] = Counter()
    for item, raw in zip(result.results, batch.events):
        outcome = {201: "Accepted", 200: "Duplicate"}.get(item.status, "Rejected")
        # a dimension only for the contract's types: a refused item's own text would make a new metric
        kind = raw.get("feedback_type")
        outcomes[(outcome, kind if kind in FEEDBACK_TYPES else "other")] += 1
    _count(outcomes)
    return Response(status_code=HTTPStatus.MULTI_STATUS.value, content_type="application/json",
                    body=result)


@functools.cache
def eval_stream() -> evals.EvalStream:
    """The eval-log delivery stream's client, made on the first /v1/evals."""
    if not settings.eval_log_stream:
        raise StorageUnavailable("no eval-log stream is configured (EVAL_LOG_STREAM)")
    return evals.EvalStream(boto3.client("firehose"), settings.eval_log_stream)


@app.post("/v1/evals", summary="Log up to 500 eval log records (the eval log contract), each accepted or "
          "refused on its own; the stack writes them to eval-logs/<project>/dt=YYYY-MM-DD/",
          responses={207: {"description": "Per-item results"}})
@tracer.capture_method
def post_evals(batch: Annotated[EvalBatchRequest, Body()]) -> Response[EvalBatchResult]:
    result = evals.record_evals(table, eval_stream(), app.context["project"], batch.records, policy)
    _count(Counter({(outcome, "eval_record"): n for outcome, n in (
        ("Accepted", result.accepted), ("Duplicate", result.duplicates), ("Rejected", result.rejected)) if n}))
    return Response(status_code=HTTPStatus.MULTI_STATUS.value, content_type="application/json", body=result)


def _otlp(kind: str) -> Response:
    """An OTLP/HTTP export (interop/otlp.py reads it, logic/otlp.py keeps it): 200 with the
    export's partial success, 400 naming what cannot be read, 503 when something was not kept
    (exporters resend on 503; every step is idempotent). Its modules are imported on the first
    export, not at cold start."""
    from feedback_loop.interop import otlp
    from feedback_loop.logic import otlp as telemetry

    request = app.current_event
    headers = {k.lower(): v for k, v in (request.headers or {}).items()}
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    body = request.body or ""
    try:
        raw = base64.b64decode(body) if request.is_base64_encoded else body.encode("utf-8")
        export = otlp.decode(kind, raw, media, headers.get("content-encoding"))
        mapping = otlp.Mapping.from_headers(headers)
    except otlp.OtlpError as error:
        status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE if isinstance(error, otlp.OtlpTooLarge) else HTTPStatus.BAD_REQUEST
        return _error(status, str(error), [FieldError(field=error.field, message=error.message)])
    except ValueError:  # binascii.Error: the body API Gateway passed as base64 is not
        return _error(HTTPStatus.BAD_REQUEST, "body: is not valid base64",
                      [FieldError(field="body", message="is not valid base64")])
    project = app.context["project"]
    if kind == "traces":
        spans, unreadable = otlp.spans(export)
        outcome = telemetry.receive_spans(table, eval_stream(), project, spans, mapping, policy,
                                          calibrator=calibrators().get(project))
    else:
        found, unreadable = otlp.log_evaluations(export)
        outcome = telemetry.receive_evaluations(table, eval_stream(), project, found, mapping, policy,
                                                calibrator=calibrators().get(project))
    outcome.rejected.update(unreadable)
    _count(Counter({key: n for key, n in ((("Accepted", "otlp_record"), outcome.records),
                                          (("Accepted", "otlp_feedback"), outcome.feedback),
                                          (("Rejected", f"otlp_{kind}"), sum(outcome.rejected.values()))) if n}))
    logger.info("otlp export", extra={"kind": kind, **outcome.counts()})
    if outcome.retry:
        raise StorageUnavailable("part of the export was not kept")
    return Response(status_code=HTTPStatus.OK.value, content_type=media,
                    body=otlp.response(kind, media, sum(outcome.rejected.values()), outcome.message()))


@app.post("/v1/traces", include_in_schema=False)  # OTLP/HTTP: described in docs/INTEROP.md, not JSON bodies
@tracer.capture_method
def post_traces():  # unannotated: the body is OTLP, read by the route itself
    return _otlp("traces")


@app.post("/v1/logs", include_in_schema=False)
@tracer.capture_method
def post_logs():
    return _otlp("logs")


@app.get("/v1/requests/<request_id>/feedback", summary="Feedback summary of one LLM request",
         responses={200: {"description": "The summary (all counts 0 when nothing was recorded)"},
                    404: {"description": "No route: the path's request_id holds a character outside the pattern"}})
@tracer.capture_method
def get_request_feedback(request_id: Annotated[RequestId, PathParameter()]) -> RequestSummary:
    events = summary.request_events(table, app.context["project"], request_id)
    return summary.summarise(request_id, events)


@app.post("/v1/changes", summary="Register a prompt or model change to measure",
          responses={201: {"description": "Registered"}, 409: {"description": "Name already registered"}})
@tracer.capture_method
def post_change(change: Annotated[Change, Body()]) -> Response[StoredChange]:
    stored = changes.register_change(table, app.context["project"], change)
    return Response(status_code=HTTPStatus.CREATED.value, content_type="application/json",
                    body=stored)


@app.get("/v1/changes", summary="List the project's registered changes")
def get_changes() -> ChangeList:
    return ChangeList(changes=changes.list_changes(table, app.context["project"]))


@app.get("/v1/changes/<name>", summary="One registered change",
         responses={200: {"description": "The change"}, 404: {"description": "No change of that name in this project"}})
def get_change(name: Annotated[ChangeName, PathParameter()]) -> StoredChange:
    return changes.get_change(table, app.context["project"], name)


@app.post("/v1/retrain", summary="Ask for the project's evaluator to be retrained on its latest analysed window",
          responses={202: {"description": "Requested: the retrain function decides (label minimum applies)"}})
def post_retrain(kind: Annotated[Literal["finetune", "calibrate", "auto"] | None, Query(
        description="what to train (EvaluatorKind, docs/RETRAINING.md); the stack's setting when absent")] = None
                 ) -> Response[dict]:
    detail = request_retrain(events(), settings.event_bus_name, app.context["project"], "api", kind)
    return Response(status_code=HTTPStatus.ACCEPTED.value, content_type="application/json",
                    body={**detail, "status": "requested"})


@app.get("/v1/calibration", summary="The project's calibrator in service: its map (JSON), with the map id as ETag",
         responses={200: {"description": "The map (docs/RETRAINING.md, the calibrator)"},
                    304: {"description": "Not modified: If-None-Match named the map in service"},
                    404: {"description": "No calibrator in service"}})
def get_calibration():  # unannotated: the map's own JSON, and a 304 without a body, are not validated
    found = calibrators().get(app.context["project"])
    if found is None:
        raise NoCalibrator()
    etag = f'"{found.id}"'
    asked = next((v for k, v in (app.current_event.headers or {}).items() if k.lower() == "if-none-match"), None)
    if asked is not None and etag in [tag.strip() for tag in asked.split(",")]:
        return Response(status_code=HTTPStatus.NOT_MODIFIED.value, headers={"ETag": etag})
    return Response(status_code=200, content_type="application/json", body=found.text, headers={"ETag": etag})


@app.post("/v1/calibrate", summary="Calibrate up to 500 raw evaluator scores with the project's calibrator in service",
          responses={200: {"description": "Each score's calibrated figures, in the order sent"},
                     404: {"description": "No calibrator in service"}})
def post_calibrate(request: Annotated[CalibrateRequest, Body()]) -> CalibrateResult:
    found = calibrators().get(app.context["project"])
    if found is None:
        raise NoCalibrator()
    return CalibrateResult(calibration_map=found.id, results=[
        Calibrated(**found.map.apply(item.score, item.metadata)) for item in request.items])


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response:
    fields = field_errors(list(error.errors()))
    malformed = any(f.field == "body" and f.message.startswith("is not valid JSON") for f in fields)
    status = HTTPStatus.BAD_REQUEST if malformed else HTTPStatus.UNPROCESSABLE_ENTITY
    return _error(status, "; ".join(f"{f.field}: {f.message}" for f in fields), fields)


@app.exception_handler(Unauthorized)
def unauthorized(error: Unauthorized) -> Response:
    return _error(HTTPStatus.UNAUTHORIZED, f"{error}: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                  [FieldError(field="authorization", message=str(error))],
                  headers={"WWW-Authenticate": 'Bearer realm="feedback-loop"'})


@app.exception_handler(EventConflict)
def conflict(error: EventConflict) -> Response:
    return _error(HTTPStatus.CONFLICT, str(error), [FieldError(field="event_id", message=str(error))])


@app.exception_handler(DuplicateChange)
def duplicate_change(error: DuplicateChange) -> Response:
    return _error(HTTPStatus.CONFLICT, str(error), [FieldError(field="name", message=str(error))])


@app.exception_handler(ChangeNotFound)
def change_not_found(error: ChangeNotFound) -> Response:
    return _error(HTTPStatus.NOT_FOUND, str(error), [FieldError(field="name", message=str(error))])


@app.exception_handler(NoCalibrator)
def no_calibrator(error: NoCalibrator) -> Response:
    return _error(HTTPStatus.NOT_FOUND, str(error), [FieldError(field="project", message=str(error))])


@app.exception_handler(StorageUnavailable)
@app.exception_handler(ClientError)
@app.exception_handler(BotoCoreError)
def storage_unavailable(error: Exception) -> Response:
    logger.warning("storage unavailable", extra={"error": type(error).__name__})
    return _error(HTTPStatus.SERVICE_UNAVAILABLE, "storage is unavailable, nothing was stored: retry later",
                  headers={"Retry-After": RETRY_AFTER_SECONDS})


@app.not_found
def not_found(_: Exception) -> Response:
    return _error(HTTPStatus.NOT_FOUND, f"no route {app.current_event.http_method} {app.current_event.path}")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: Any) -> dict:
    # storage calls that could not finish before the function's timeout are not started
    table.deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
    refusal = _gatekeeper(event)
    response = _proxy_response(refusal, event) if refusal is not None else app.resolve(event, context)
    # One access line per request; headers (and so keys) are never logged.
    logger.info("handled", extra={"method": event.get("httpMethod"), "route": event.get("resource"),
                                  "status": response["statusCode"]})
    return response
