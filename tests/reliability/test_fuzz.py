"""The API fuzzed from its own OpenAPI document (docs/openapi.json) by schemathesis, every phase
(coverage, fuzzing, stateful) and every check it has but `ignored_auth` (which expects /v1/health
to need a key): no 5xx, every status and header documented, every response matching its schema,
everything the document calls valid accepted, everything it calls invalid refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis.checks

from ..conftest import ROOT

pytestmark = pytest.mark.integration
DOCUMENT = ROOT / "docs" / "openapi.json"
EXAMPLES = 100  # per operation and phase: about 1,700 requests, under a minute here
SEED = 20261128


def test_every_check_schemathesis_has_passes(stack, table, project: str, api_key: str, tmp_path: Path) -> None:
    import boto3

    from feedback_loop.calibration.fit import fit, labelled
    from feedback_loop.logic.calibration import deploy

    from ..unit.test_calibration import judged

    # a calibrator in service, so that its routes answer from their core logic, not 404
    deploy(table, boto3.client("s3"), stack.bucket, project, fit(labelled(judged(600))).map.dumps(), "fuzz", force=True)
    schemathesis.checks.load_all_checks()
    checks = set(schemathesis.checks.CHECKS.get_all_names())
    assert {"positive_data_acceptance", "negative_data_rejection", "unsupported_method"} <= checks
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", str(DOCUMENT), "--url", stack.api_url.removesuffix("/v1"),
        "--header", f"x-api-key: {api_key}", "--checks", "all", "--exclude-checks", "ignored_auth",
        "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(EXAMPLES), "--seed", str(SEED),
        "--generation-database", "none", "--continue-on-failure", "--request-timeout", "30",
        "--report", "ndjson", "--report-dir", str(tmp_path), "--no-color",
    ]
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.reliability.fuzz_hooks",
                   "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=900)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-12000:]
    assert "No issues found" in output
    tested = [line for line in output.splitlines() if "generated" in line and "passed" in line]
    assert tested and int(tested[-1].split()[0]) > 1000, output[-3000:]  # it really ran


def test_the_rules_the_fuzzer_is_taught_are_in_the_document() -> None:
    """tests/reliability/fuzz_hooks.py brings requests within three rules that JSON Schema cannot
    state; each must be stated in words where a reader of the document looks for it."""
    schemas = json.loads(DOCUMENT.read_text())["components"]["schemas"]
    event = schemas["RatingEvent"]["properties"]
    assert "5 minutes after the API receives it" in event["timestamp"]["description"]
    assert "from 2000-01-01" in event["timestamp"]["description"]
    assert "4096 bytes" in event["metadata"]["description"] and "8 levels" in event["metadata"]["description"]
    assert "`control` and `treatment` differ" in " ".join(schemas["Change"]["description"].split())
