"""The `feedback-loop` command: the local stack, API keys, the OpenAPI document, the demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from feedback_loop.demo.settings import DemoSettings

DEFAULT_DATA_DIR = ".feedback-loop"
SERVE_KEY_FILE = "serve-key.json"  # the key serve printed, per project
# logic/keys.py's SCOPES, written here so that the parser imports nothing (a test holds them equal)
SCOPE_NAMES = ("feedback:write", "feedback:read", "evals:write", "changes:write", "changes:read", "retrain",
               "calibration:read")


def _parameters(pairs: list[str]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--param takes NAME=VALUE, got {pair!r}")
        parameters[name] = value
    return parameters


def stack_output(stack: str, output: str) -> str:
    """One output of a deployed stack (CloudFormation's DescribeStacks, in the configured account and region)."""
    import boto3

    described = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    found = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    if output not in found:
        raise SystemExit(f"stack {stack} ({described['StackStatus']}) has no output {output}: "
                         "is it a feedback-loop stack, and has its deploy finished?")
    return found[output]


def _table(args: argparse.Namespace):
    """The table to manage keys in: --table NAME, else the output TableName of --stack NAME (both in
    AWS, or wherever AWS_ENDPOINT_URL points), else the running local stack's. Imports nothing the
    package's core dependencies lack."""
    from feedback_loop.dal.store import CLIENT_CONFIG, FeedbackTable
    from feedback_loop.local.state import local_client, read_state

    if args.table and args.stack:
        raise SystemExit("give --table or --stack, not both")
    if args.table:
        return FeedbackTable(args.table)
    if args.stack:
        return FeedbackTable(stack_output(args.stack, "TableName"))
    state = read_state(args.data_dir)
    if state is None:
        raise SystemExit(f"no local stack is running (no {args.data_dir}/local.json): start "
                         "`feedback-loop serve`, or pass --stack NAME (or --table NAME) for a deployed stack")
    return FeedbackTable(state["table"], client=local_client("dynamodb", state["aws_endpoint"], config=CLIENT_CONFIG))


def cmd_serve(args: argparse.Namespace) -> int:
    from feedback_loop.dal.store import FeedbackTable
    from feedback_loop.local.stack import LocalStack
    from feedback_loop.logic.keys import reused_or_new_key

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.fresh:
        from feedback_loop.local.snapshots import forget

        forget(Path(args.data_dir))
    stack = LocalStack(template=args.template, parameters=_parameters(args.param), host=args.host,
                       api_port=args.port, data_dir=args.data_dir, metrics=args.metrics,
                       log_level="INFO" if args.verbose else "WARNING", persist=True,
                       snapshot_seconds=args.snapshot_seconds)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    stack.start()
    try:
        # the key printed at the last start while it is valid (kept in the data directory, the user's
        # alone), so apps configured with it keep working; else a new one, the earlier ones revoked
        saved = Path(args.data_dir) / SERVE_KEY_FILE
        known = json.loads(saved.read_text()) if saved.is_file() else {}
        key, new = reused_or_new_key(FeedbackTable(stack.table_name), args.project, "feedback-loop serve",
                                     known.get(args.project))
        if new:
            descriptor = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as out:
                json.dump({**known, args.project: key}, out)
        print(f"feedback-loop {stack.template.path.name} is up (emulated AWS at {stack.aws_endpoint})")
        print(f"  API:      {stack.api_url}/v1")
        print(f"  project:  {args.project}")
        print(f"  API key:  {key}" + (" (new)" if new else " (the one printed before)"))
        restored = ", ".join(f"{n:,} {what}" for what, n in stack.restored.items() if n)
        print(f"  data:     {Path(args.data_dir).resolve()} (saved every {args.snapshot_seconds:g} s and at Ctrl-C; "
              f"restored: {restored or 'nothing'})")
        print(f"  docs:     {stack.api_url}/v1/docs")
        print(f"  bucket:   s3://{stack.bucket}/ (eval logs under eval-logs/{args.project}/, at {stack.aws_endpoint})")
        print(f"  analyze:  feedback-loop analyze --eval-logs local --feedback local --project {args.project} "
              "--out ./report")
        print(f"  OTLP:     OTEL_EXPORTER_OTLP_ENDPOINT={stack.api_url} "
              f"OTEL_EXPORTER_OTLP_HEADERS=x-api-key={key} (docs/INTEROP.md)")
        print("  try:")
        print(f"    curl -s -X POST {stack.api_url}/v1/feedback -H 'Authorization: Bearer {key}' \\")
        print("      -H 'Content-Type: application/json' \\")
        print("      -d '{\"request_id\": \"req_1\", \"feedback_type\": \"explicit_rating\", \"value\": 4}'")
        print("Ctrl-C stops it.", flush=True)
        while not stopping.wait(0.5):  # a wait without timeout can miss a signal another thread received
            pass
    finally:
        stack.stop()
        print("stopped.")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from feedback_loop.logic import keys
    from feedback_loop.models.errors import StorageUnavailable

    try:
        table = _table(args)
        if args.keys_command == "create":
            issued = keys.create_key(table, args.project, args.label, args.scope)
            print(json.dumps({"project": issued.key.project, "key_id": issued.key.key_id,
                              "scopes": keys.scopes_text(issued.key.scopes).split(), "api_key": issued.plaintext}))
            print("Store the key now: only its hash is kept.", file=sys.stderr)
        elif args.keys_command == "revoke":
            try:
                revoked = keys.revoke_key(table, args.key_id)
            except KeyError as error:
                raise SystemExit(str(error.args[0]))
            print(json.dumps({"key_id": revoked.key_id, "project": revoked.project,
                              "revoked_at": revoked.revoked_at}))
        else:
            for key in keys.list_keys(table, args.project):
                print(json.dumps({**key.__dict__, "scopes": keys.scopes_text(key.scopes).split()}))
    except ValueError as error:  # a project name outside the rule
        raise SystemExit(f"feedback-loop keys: {error}")
    except (ClientError, BotoCoreError, StorageUnavailable) as error:  # credentials, region, permissions
        denied = isinstance(error, ClientError) and "AccessDenied" in error.response.get("Error", {}).get("Code", "")
        raise SystemExit(f"feedback-loop keys: {error}" +
                         (" (the permissions each command needs: docs/DEPLOY.md, API keys)" if denied else ""))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from feedback_loop import doctor

    session = boto3.session.Session()
    try:
        stack = doctor.describe(session.client("cloudformation"), args.stack)
    except (ClientError, BotoCoreError) as error:
        raise SystemExit(f"feedback-loop doctor: {error}")
    services = {"cloudformation": "cloudformation", "dynamodb": "dynamodb", "s3": "s3", "events": "events",
                "sns": "sns", "quotas": "service-quotas"}
    checks = doctor.run_checks(stack, {name: session.client(service) for name, service in services.items()})
    width = max(len(check.name) for check in checks)
    for check in checks:
        print(f"{check.status:<4}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != doctor.OK:
            print(f"{'':<4}  {'':<{width}}  -> {check.fix}")
    failed = [check.name for check in checks if check.status == doctor.FAIL]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def cmd_stage_model(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from feedback_loop.evaluator import base_model

    if not (args.stack or args.bucket):
        raise SystemExit("feedback-loop stage-model: give --stack NAME (or --bucket, the stack's DataBucket)")
    try:
        bucket = args.bucket or stack_output(args.stack, "DataBucket")
        name = args.base_model
        if name is None and args.stack:
            described = boto3.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
            name = {p["ParameterKey"]: p.get("ParameterValue", "") for p in described.get("Parameters", [])}.get(
                "EvaluatorBaseModel")
        name = name or base_model.DEFAULT_BASE_MODEL
        s3 = boto3.client("s3")
        existing = base_model.staged(s3, bucket, name)
        if existing is not None and not args.again:
            print(f"{name} is already staged: {existing.uri} ({existing.files} files, {existing.bytes / 1e6:.1f} MB); "
                  "--again copies it anew")
            return 0
        folder = Path(args.source) if args.source else base_model.local_copy(name, args.revision)
        copy = base_model.stage(s3, bucket, name, folder)
    except (ClientError, BotoCoreError) as error:
        raise SystemExit(f"feedback-loop stage-model: {error}")
    print(f"staged {name}: {copy.uri} ({copy.files} files, {copy.bytes / 1e6:.1f} MB); training jobs read it from there")
    return 0


def cmd_teardown(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from feedback_loop import teardown

    try:
        table = stack_output(args.stack, "TableName")
        sagemaker, cloudwatch = boto3.client("sagemaker"), boto3.client("cloudwatch")
        found = teardown.find(boto3.client("dynamodb"), sagemaker, cloudwatch, table)
        if not found.lines():
            print(f"nothing that {args.stack}'s functions created is left")
            return 0
        if not args.yes:
            print("\n".join(found.lines()))
            print(f"nothing deleted: run again with --yes to delete these {len(found.lines())}")
            return 0
        deleted = teardown.remove(found, sagemaker, cloudwatch)
    except (ClientError, BotoCoreError) as error:
        raise SystemExit(f"feedback-loop teardown: {error}")
    print(f"{deleted} deleted; now `sam delete --stack-name {args.stack}` (the table and the bucket are kept)")
    return 0


def api_module(template: str | None = None):
    """The API function's module, loaded from the template without touching AWS."""
    from feedback_loop.local.runtime import load_module
    from feedback_loop.local.stack import find_template
    from feedback_loop.local.template import REGION, Template

    spec = next(f for f in Template(find_template(template)).functions() if f.logical_id == "ApiFunction")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    os.environ.update({k: v for k, v in spec.environment.items() if k not in os.environ})
    return load_module(spec)


def openapi_document(template: str | None = None) -> dict:
    return json.loads(api_module(template).openapi_json())


def cmd_openapi(args: argparse.Namespace) -> int:
    print(json.dumps(openapi_document(args.template), indent=2, sort_keys=True))
    return 0


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _low_high(text: str) -> tuple[float, float]:
    from feedback_loop.interop.mapping import read_scale

    try:
        return read_scale(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def _memory_size(text: str) -> str:
    """A size as DuckDB reads it (512MB, 2GB, 1.5GiB)."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B)", text.strip(), re.IGNORECASE):
        raise argparse.ArgumentTypeError(f"not a size such as 512MB or 2GB: {text!r}")
    return text.strip()


def cmd_analyze(args: argparse.Namespace) -> int:
    import boto3

    from feedback_loop.analysis.model import AnalysisSettings
    from feedback_loop.analysis.evallogs import EvalLogSource
    from feedback_loop.analysis.feedback import FeedbackIndex
    from feedback_loop.analysis.run import (load_changes, print_progress, printable, run_analysis, write_local,
                                            write_s3)
    from feedback_loop.logic.changes import list_changes

    if "local" in (args.eval_logs, args.feedback):  # what the running local stack holds: its emulator and bucket
        from feedback_loop.local.state import local_aws_environment, read_state

        state = read_state(args.data_dir)
        if state is None:
            raise SystemExit(f"no local stack is running (no {args.data_dir}/local.json): start `feedback-loop serve`")
        if not args.project:
            raise SystemExit("--project is required with the local stack")
        os.environ.update(local_aws_environment(state["aws_endpoint"]))
        if args.eval_logs == "local":
            args.eval_logs = f"s3://{state['bucket']}/eval-logs/{args.project}/"
    until = _moment(args.until) if args.until else datetime.now(timezone.utc)
    since = _moment(args.since) if args.since else until - timedelta(days=7)
    if since >= until:
        raise SystemExit("--since must be before --until")
    settings = AnalysisSettings(
        threshold=args.threshold, min_segment_n=args.min_segment_n, target_feedback_rate=args.target_rate,
        trim_multiple=args.trim, impact_window=timedelta(days=args.impact_days),
        segment_fields=tuple(dict.fromkeys(["user_cohort", "query_type", "prompt_version", "model", *args.segment])),
        system_field=args.system_field or None, group_field=args.group_field or None,
    )
    progress = None if args.quiet else print_progress
    feedback = FeedbackIndex()
    changes = load_changes(args.changes) if args.changes else []
    if Path(args.feedback).is_file():
        feedback.add_export_file(args.feedback)
    else:
        table = _table(argparse.Namespace(table=None if args.feedback == "local" else args.feedback, stack=None,
                                          data_dir=args.data_dir))
        if not args.project:
            raise SystemExit("--project is required when feedback comes from a table")
        # from the start of the read range (changes reach back a week) to now: late feedback counts
        start = since - settings.impact_window
        feedback.add_items(table.feedback_in_window(args.project, start, datetime.now(timezone.utc),
                                                    int(os.environ.get("FEEDBACK_DAY_SHARDS", "8"))))
        if not args.changes:
            changes = list_changes(table, args.project)
    calibrator = None
    if args.calibration_map:  # the calibrator's figures beside the raw score's (report.json `calibration`)
        from feedback_loop.calibration.curves import CalibrationMap, map_id

        try:
            calibration_map = CalibrationMap.loads(Path(args.calibration_map).read_text())
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"--calibration-map {args.calibration_map}: not a calibration map: {error}")
        calibrator = (calibration_map, map_id(calibration_map))
    s3 = boto3.client("s3") if args.eval_logs.startswith("s3://") or args.out.startswith("s3://") else None
    analysis = run_analysis(args.project or "default", EvalLogSource(args.eval_logs, s3), feedback, changes,
                            since, until, settings, progress, memory_limit=args.memory_limit, calibrator=calibrator)
    if args.history:  # earlier runs kept as folders beside this one: the trends, and the index page
        if args.out.startswith("s3://"):
            raise SystemExit("--history reads folders: write --out to a folder too")
        from feedback_loop.analysis.html import INDEX_HTML, render_index
        from feedback_loop.analysis.report import change_marks, with_trends
        from feedback_loop.analysis.run import local_points

        previous = local_points(args.history, skip=args.out)
        with_trends(analysis.report, previous, change_marks(changes), run=Path(args.out).name)
    if args.out.startswith("s3://"):
        bucket, _, prefix = args.out.removeprefix("s3://").partition("/")
        written = write_s3(analysis, s3, bucket, prefix)
    else:
        written = write_local(analysis, args.out)
    if args.history:
        index = Path(args.history) / INDEX_HTML
        index.write_text(render_index(args.project or "default", [*previous, analysis.report["trends"]["weeks"][-1]],
                                      analysis.report["trends"]))
        written[INDEX_HTML] = index
    report = analysis.report
    print(f"analysed {report['counts']['eval_records']} eval records, "
          f"{report['counts']['requests_with_human_score']} with a human score, "
          f"{report['counts']['skipped_lines']} lines skipped")
    print(f"spearman {report['correlation']['overall']['spearman']['r']}, "
          f"disagreement rate {report['miscalibration']['rate']}, "
          f"flagged segments {[(f['field'], f['value']) for f in report['miscalibration']['flagged_segments']]}, "
          f"regressions {list(dict.fromkeys(r['change'] for r in report['regressions']))}")
    for name, where in written.items():
        print(printable(f"  {name}: {where}"))
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from feedback_loop.models.contracts import write

    for path in write(args.out):
        print(path)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from feedback_loop.interop import mapping, tools

    skipped: Counter[str] = Counter()
    annotations = tools.read(args.tool, args.file, skipped)
    if args.spans:  # the requests' and responses' texts, for the eval records
        try:
            annotations = tools.with_texts(annotations, tools.span_texts(args.spans))
        except OSError as error:
            raise SystemExit(f"--spans {args.spans}: {error.strerror or error}")
    imported = mapping.convert(annotations, args.request_id or ("span" if args.tool == "phoenix" else "trace"),
                               args.overall, args.human_range)
    imported.skipped.update(skipped)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("feedback.jsonl", imported.feedback), ("eval-records.jsonl", imported.eval_records)):
        (out / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"{len(annotations)} annotations: {len(imported.feedback)} feedback events, "
          f"{len(imported.eval_records)} eval records; skipped {dict(sorted(imported.skipped.items())) or 'none'}")
    if args.api_url:
        if not args.key:
            raise SystemExit("--api-url needs --key")
        from feedback_loop.client import FeedbackClient

        client = FeedbackClient(args.api_url, args.key)
        stored = refused = 0
        for start in range(0, len(imported.feedback), 500):
            result = client.send_batch(imported.feedback[start:start + 500])
            stored += result.stored + result.duplicates
            refused += result.rejected
        print(f"sent: {stored} stored or already there, {refused} refused")
        if refused:
            return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from feedback_loop.interop import export

    events = [json.loads(line) for line in Path(args.feedback).read_text().splitlines() if line.strip()]
    if args.format == "otel":
        text = export.otlp_json(events, args.service_name)
    elif args.format == "langfuse":
        text = json.dumps(export.langfuse_scores(events))
    elif args.format == "mlflow":
        text = "\n".join(json.dumps(assessment) for assessment in export.mlflow_assessments(events))
    else:
        text = json.dumps(export.span_annotations(events))
    Path(args.out).write_text(text + "\n")
    print(f"{len(events)} feedback events written to {args.out} ({args.format})")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import boto3

    from feedback_loop.local.state import local_client, read_state
    from feedback_loop.retraining.launch import request_retrain

    if args.bus:
        events, bus = boto3.client("events"), args.bus
    else:
        state = read_state(args.data_dir)
        if state is None:
            raise SystemExit(f"no local stack is running (no {args.data_dir}/local.json): start "
                             "`feedback-loop serve`, or pass --bus NAME for a deployed stack")
        events, bus = local_client("events", state["aws_endpoint"]), state["bus"]
    print(json.dumps(request_retrain(events, bus, args.project, "cli", args.kind)))
    return 0


def cmd_calibrate_fit(args: argparse.Namespace) -> int:
    from feedback_loop.calibration.fit import fit, fit_gated, read_labelled
    from feedback_loop.calibration.gate import CalibratorPolicy

    fields = tuple(dict.fromkeys(args.field))
    data, skipped = read_labelled(args.labelled, fields)
    decision = None
    try:
        if args.held_out_share > 0:
            fitted, decision = fit_gated(data, fields, args.min_segment_labels,
                                         CalibratorPolicy(held_out_share=args.held_out_share), args.alpha, args.delta)
        else:
            fitted = fit(data, fields, args.min_segment_labels)
    except ValueError as error:
        raise SystemExit(f"feedback-loop calibrate fit: {error}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(fitted.map.dumps() + "\n")
    figures = fitted.cross_validated["p_good"]
    print(json.dumps({"map": args.out, "labelled": len(data), "skipped": dict(skipped),
                      "p_good": {"chosen": figures["chosen"], "out_of_fold": figures["out_of_fold"]},
                      "expected_human": {"chosen": fitted.cross_validated["expected_human"]["chosen"]},
                      "gate": None if decision is None else {"status": decision.status, "reasons": decision.reasons},
                      "escalation": {k: v for k, v in fitted.map.escalation.items() if k != "method"} or None},
                     indent=1))
    return 0


def cmd_calibrate_apply(args: argparse.Namespace) -> int:
    import gzip
    from collections import Counter

    from feedback_loop.analysis.evallogs import JSON_SUFFIXES, PARQUET_SUFFIXES, EvalLogSource
    from feedback_loop.calibration.curves import CalibrationMap, calibrated_record, map_id

    try:
        calibration_map = CalibrationMap.loads(Path(args.map).read_text())
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"feedback-loop calibrate apply: {args.map} is not a calibration map: {error}")
    name = map_id(calibration_map)
    source, out = Path(args.eval_logs), Path(args.out)
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*")
                                                     if p.is_file() and p.name.endswith(JSON_SUFFIXES + PARQUET_SUFFIXES))
    reader, skipped, counts = EvalLogSource(str(source)), Counter(), Counter()
    for path in files:
        relative = Path(path.name) if source.is_file() else path.relative_to(source)
        if path.name.endswith(PARQUET_SUFFIXES):
            relative = relative.with_name(relative.name + ".jsonl.gz")  # beside a JSON file of the same stem
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with (gzip.open(target, "wt") if target.name.endswith(".gz") else open(target, "w")) as written:
            for record in reader.rows(str(path), skipped):
                done = calibrated_record(record, calibration_map, name) if isinstance(record, dict) else None
                counts["calibrated" if done is not None else "without_a_score_in_0_1"] += 1
                written.write(json.dumps(done if done is not None else record, ensure_ascii=False) + "\n")
    print(json.dumps({"map": name, "files": len(files), **counts, "skipped": dict(skipped)}))
    return 0


def cmd_calibrate_deploy(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from feedback_loop.local.state import local_client, read_state
    from feedback_loop.logic import calibration
    from feedback_loop.logic.keys import validate_project

    try:
        validate_project(args.project)
    except ValueError as error:
        raise SystemExit(f"feedback-loop calibrate deploy: {error}")
    table = _table(args)
    if args.stack:
        s3, bucket = boto3.client("s3"), stack_output(args.stack, "DataBucket")
    elif args.table:
        raise SystemExit("feedback-loop calibrate deploy: with --table, give --stack too (the map goes to its bucket)")
    else:
        state = read_state(args.data_dir)
        s3, bucket = local_client("s3", state["aws_endpoint"]), state["bucket"]
    try:
        pointer = calibration.deploy(table, s3, bucket, args.project, Path(args.map).read_text(),
                                     deployed_by=args.by, force=args.force)
    except calibration.NotDeployable as error:
        raise SystemExit(f"feedback-loop calibrate deploy: {error} (--force)")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"feedback-loop calibrate deploy: {args.map} is not a calibration map: {error}")
    except (ClientError, BotoCoreError) as error:
        raise SystemExit(f"feedback-loop calibrate deploy: {error}")
    print(json.dumps({k: v for k, v in pointer.items() if k not in ("pk", "sk")}))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from feedback_loop.demo.run import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = DemoSettings(requests_per_week=args.requests_per_week, seed=args.seed, project=args.project,
                            out=Path(args.out), data_dir=Path(args.data_dir), template=args.template, port=args.port,
                            keep_running=args.keep_running, open_report=args.open)
    return 0 if run_demo(settings).ok else 1


DEMO = DemoSettings()


def _where_keys_are(parser: argparse.ArgumentParser, argparse_default: object) -> None:
    parser.add_argument("--stack", default=argparse_default,
                        help="name of a deployed stack: its TableName output is the table (needs cloudformation:DescribeStacks)")
    parser.add_argument("--table", default=argparse_default,
                        help="DynamoDB table of a deployed stack (default: the running local stack)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feedback-loop", description=__doc__)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where the local stack keeps its state")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the local stack and its API")
    serve.add_argument("--host", default="127.0.0.1",
                       help="the API's address (0.0.0.0: every interface; anyone who reaches it with a key can "
                            "use the API); the AWS emulator behind it always stays on 127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="API port (0 picks a free one)")
    serve.add_argument("--project", default="default", help="project of the API key printed at start")
    serve.add_argument("--template", help="template.yaml to build from")
    serve.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="template parameter override, e.g. KeyCacheSeconds=0")
    serve.add_argument("--metrics", action="store_true", help="print the functions' EMF metrics")
    serve.add_argument("--verbose", action="store_true", help="print the functions' INFO logs (one per request)")
    serve.add_argument("--fresh", action="store_true", help="start empty: delete the saved tables and bucket first")
    serve.add_argument("--snapshot-seconds", type=float, default=30.0,
                       help="how often the tables and bucket are saved to --data-dir (and at Ctrl-C)")
    serve.set_defaults(run=cmd_serve)

    keys = commands.add_parser("keys", help="create, revoke and list per-project API keys")
    _where_keys_are(keys, argparse_default=None)
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key (printed once)")
    create.add_argument("--project", required=True)
    create.add_argument("--label")
    create.add_argument("--scope", action="append", choices=sorted(SCOPE_NAMES), metavar="SCOPE",
                        help="what the key may do, repeatable: " + ", ".join(sorted(SCOPE_NAMES)) + " (default: "
                             "everything, a server's key; a key in a web page: --scope feedback:write alone)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its key_id")
    revoke.add_argument("key_id")
    listing = key_commands.add_parser("list", help="list a project's keys (never the secrets)")
    listing.add_argument("--project", required=True)
    for command in (create, revoke, listing):  # before or after the command: `keys create --stack S ...`
        _where_keys_are(command, argparse_default=argparse.SUPPRESS)
    keys.set_defaults(run=cmd_keys)

    doctor = commands.add_parser("doctor", help="check what a deployed stack needs from its account "
                                                "(quotas, table, bucket, schedule, alarm subscription, images)")
    doctor.add_argument("--stack", required=True, help="the deployed stack's name (samconfig.toml: feedback-loop)")
    doctor.set_defaults(run=cmd_doctor)

    stage = commands.add_parser("stage-model", help="copy the evaluator's base model into the stack's bucket, "
                                                    "so that training jobs never download it")
    stage.add_argument("--stack", help="the deployed stack's name: its DataBucket output and EvaluatorBaseModel parameter")
    stage.add_argument("--bucket", help="the data bucket (instead of --stack)")
    stage.add_argument("--base-model", help="the model id the stack trains from (default: the stack's "
                                            "EvaluatorBaseModel, else sentence-transformers/all-MiniLM-L6-v2)")
    stage.add_argument("--from", dest="source", metavar="FOLDER",
                       help="a folder holding that model's files (default: the packaged copy of all-MiniLM-L6-v2 where "
                            "installed, else a snapshot from the Hugging Face hub, which needs huggingface_hub)")
    stage.add_argument("--revision", help="the hub revision (branch, tag or commit) to copy")
    stage.add_argument("--again", action="store_true", help="copy it even if it is already staged")
    stage.set_defaults(run=cmd_stage_model)

    teardown = commands.add_parser("teardown", help="delete what a stack's functions created outside "
                                                    "CloudFormation (evaluator endpoints, their configs, models, alarms)")
    teardown.add_argument("--stack", required=True, help="the deployed stack's name")
    teardown.add_argument("--yes", action="store_true", help="delete (without it: only list)")
    teardown.set_defaults(run=cmd_teardown)

    openapi = commands.add_parser("openapi", help="print the API's OpenAPI document")
    openapi.add_argument("--template")
    openapi.set_defaults(run=cmd_openapi)

    schemas = commands.add_parser("schemas", help="write the data contracts' JSON Schemas (docs/schemas)")
    schemas.add_argument("--out", default="docs/schemas", help="folder to write <contract>.schema.json into")
    schemas.set_defaults(run=cmd_schemas)

    imports = commands.add_parser("import", help="feedback and judge scores from a Langfuse, MLflow or Phoenix export")
    imports.add_argument("tool", choices=["langfuse", "mlflow", "phoenix"])
    imports.add_argument("file", help="the tool's export: a JSON array, an API page {'data': [...]} or JSON Lines")
    imports.add_argument("--out", required=True,
                         help="folder for feedback.jsonl (the export contract) and eval-records.jsonl")
    imports.add_argument("--request-id", choices=["trace", "span"],
                         help="which id your eval logs use as request_id (default: span for phoenix, else trace)")
    imports.add_argument("--overall", metavar="NAME",
                         help="the judge's score that is the evaluator's overall: its scores become eval records")
    imports.add_argument("--human-range", type=_low_high, metavar="LOW,HIGH",
                         help="the scale of people's numeric scores, e.g. 1,10 (default: integers 1-5 are "
                              "ratings, other numbers from 0 to 1 are 0-1 scores: docs/INTEROP.md)")
    imports.add_argument("--spans", metavar="FILE",
                         help="Phoenix: the spans export (REST page or get_spans_dataframe() as JSON) whose "
                              "requests and responses the eval records carry (docs/INTEROP.md)")
    imports.add_argument("--api-url", help="also send the feedback to this API (with --key)")
    imports.add_argument("--key", help="the project's API key, for --api-url")
    imports.set_defaults(run=cmd_import)

    exports = commands.add_parser("export", help="human feedback as OpenTelemetry events, Phoenix span annotations, "
                                                 "Langfuse scores or MLflow assessments")
    exports.add_argument("--feedback", required=True, help="a feedback export (JSON Lines, the export contract)")
    exports.add_argument("--format", required=True, choices=["otel", "openinference", "langfuse", "mlflow"],
                         help="otel: OTLP/JSON logs of gen_ai.evaluation.result events (POST to a collector's "
                         "/v1/logs); openinference: the body of Phoenix's POST /v1/span_annotations; langfuse: a "
                         "JSON array of Langfuse's POST /api/public/scores bodies; mlflow: JSON Lines of MLflow "
                         "assessments (Assessment.from_dictionary, then mlflow.log_assessment)")
    exports.add_argument("--out", required=True, help="the file to write")
    exports.add_argument("--service-name", default="feedback-loop", help="OTel resource service.name")
    exports.set_defaults(run=cmd_export)

    analyze = commands.add_parser("analyze", help="run the weekly analysis on files, S3 or a table")
    analyze.add_argument("--eval-logs", required=True, help="folder or s3://bucket/prefix of eval logs, or 'local': the running local stack's (with --project)")
    analyze.add_argument("--feedback", required=True,
                         help="JSON Lines export, a DynamoDB table name, or 'local' for the running local stack")
    analyze.add_argument("--project", help="project (needed with a table)")
    analyze.add_argument("--changes", help="JSON or YAML list of changes (default: the table's registry)")
    analyze.add_argument("--since", help="window start, ISO 8601 (default: --until minus 7 days)")
    analyze.add_argument("--until", help="window end, ISO 8601, exclusive (default: now)")
    analyze.add_argument("--out", required=True, help="folder or s3://bucket/prefix for the report")
    analyze.add_argument("--threshold", type=float, default=0.7, help="evaluator verdict: good above this")
    analyze.add_argument("--segment", action="append", default=[], metavar="FIELD",
                         help="another segment field (top-level or metadata), repeatable")
    analyze.add_argument("--min-segment-n", type=int, default=30)
    analyze.add_argument("--system-field", metavar="FIELD",
                         help="the model or system (top-level or metadata): system-level correlation")
    analyze.add_argument("--group-field", metavar="FIELD",
                         help="the source prompt or document: correlation within each group, averaged")
    analyze.add_argument("--target-rate", type=float, default=0.05, help="feedback rate a cohort should reach")
    analyze.add_argument("--trim", type=float, default=20.0, help="cap weights at this multiple of the mean")
    analyze.add_argument("--impact-days", type=float, default=7.0, help="before/after window on each side")
    analyze.add_argument("--calibration-map", metavar="FILE",
                         help="a calibration map (`calibrate fit`): the report gives its calibrated score's figures "
                              "beside the raw score's (report.json `calibration`)")
    analyze.add_argument("--history", metavar="FOLDER",
                         help="a folder of earlier runs' folders (each an --out of this command): the report's "
                         "trends read them, and FOLDER/index.html links every run; put --out inside it")
    analyze.add_argument("--memory-limit", type=_memory_size,
                         help="what DuckDB may hold before it spills to the temporary folder, such as 2GB "
                         "(default: 512MB; in Lambda half the function's memory)")
    analyze.add_argument("--quiet", action="store_true", help="no progress on stderr")
    analyze.set_defaults(run=cmd_analyze)

    retrain = commands.add_parser("retrain", help="ask for a project's evaluator to be retrained now")
    retrain.add_argument("--project", required=True)
    retrain.add_argument("--bus", help="the deployed stack's EventBusName (default: the running local stack's)")
    retrain.add_argument("--kind", choices=("finetune", "calibrate", "auto"),
                         help="what to train (EvaluatorKind, docs/RETRAINING.md; default: the stack's setting)")
    retrain.set_defaults(run=cmd_retrain)

    calibrate = commands.add_parser("calibrate", help="learn a calibration map of the evaluator's scores from "
                                                      "labelled datasets, or apply one to eval logs")
    calibrate_commands = calibrate.add_subparsers(dest="calibrate_command", required=True)
    calibrate_fit = calibrate_commands.add_parser("fit", help="labelled datasets in, the map and its "
                                                              "cross-validated figures out")
    calibrate_fit.add_argument("--labelled", nargs="+", required=True, metavar="PATH",
                               help="labelled.jsonl files, or folders holding them (a report folder, reports/<project>/)")
    calibrate_fit.add_argument("--out", required=True, help="where to write the map (JSON)")
    calibrate_fit.add_argument("--field", action="append", default=[], metavar="FIELD",
                               help="a segment field the map may depend on (repeatable), e.g. query_type")
    calibrate_fit.add_argument("--min-segment-labels", type=int, default=50,
                               help="labels a segment value needs for its own map (default 50)")
    calibrate_fit.add_argument("--held-out-share", type=float, default=0.2,
                               help="the latest labels by time kept out to judge the map and set its review "
                                    "thresholds (default 0.2; 0: fit on every label, no gate)")
    calibrate_fit.add_argument("--alpha", type=float, default=0.1,
                               help="trust or escalate: the disagreement rate allowed where the judge decides alone")
    calibrate_fit.add_argument("--delta", type=float, default=0.1,
                               help="trust or escalate: the chance that the guarantee fails")
    calibrate_fit.set_defaults(run=cmd_calibrate_fit)
    calibrate_apply = calibrate_commands.add_parser("apply", help="eval logs in, the same records with the "
                                                                  "calibrated score beside the raw one out")
    calibrate_apply.add_argument("--map", required=True, help="a map written by `calibrate fit`")
    calibrate_apply.add_argument("--eval-logs", required=True, help="an eval-log file or folder (JSON Lines, gzip, Parquet)")
    calibrate_apply.add_argument("--out", required=True, help="folder for the calibrated records (same layout)")
    calibrate_apply.set_defaults(run=cmd_calibrate_apply)
    calibrate_deploy = calibrate_commands.add_parser("deploy", help="put a map in service for a project: "
                                                                    "GET /v1/calibration, POST /v1/calibrate")
    calibrate_deploy.add_argument("--map", required=True, help="a map written by `calibrate fit`")
    calibrate_deploy.add_argument("--project", required=True)
    calibrate_deploy.add_argument("--by", default="cli", help="who deploys it (kept with the deployment)")
    calibrate_deploy.add_argument("--force", action="store_true",
                                  help="deploy a map its gate did not approve (or fitted without a held-out part)")
    _where_keys_are(calibrate_deploy, argparse_default=None)
    calibrate_deploy.set_defaults(run=cmd_calibrate_deploy)

    demo = commands.add_parser("demo", help="run the local demo")
    demo.add_argument("--template")
    demo.add_argument("--requests-per-week", type=int, default=DEMO.requests_per_week,
                      help="simulated LLM requests per week (two weeks)")
    demo.add_argument("--seed", type=int, default=DEMO.seed)
    demo.add_argument("--project", default=DEMO.project)
    demo.add_argument("--out", default=str(DEMO.out), help="where the reports and summary.json go")
    demo.add_argument("--port", type=int, default=0, help="the local API's port (default: a free one)")
    demo.add_argument("--keep-running", action="store_true",
                      help="leave the local API up afterwards with the demo's data (Ctrl-C stops it)")
    demo.add_argument("--open", action="store_true", help="open the first week's HTML report in a browser")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
