"""docs/DEPLOY.md's key commands work as written, from a light install, against a stack found by name.

The `feedback-loop keys` lines of its "API keys" block are run as they are printed there (the
`<key_id>` filled in from `create`'s answer), in a process where only the package's core dependencies
(pyproject's `dependencies`, and theirs) can be imported: moto, numpy, torch and the other extras are
refused at import, as on a machine that ran `pip install .`. The stack is a CloudFormation stack in
the emulator whose `TableName` output is the local stack's table, so the key then authenticates
through the API. Not run: the block's `pip install` line (it needs the network), and a real account.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from feedback_loop.local.stack import LocalStack
from feedback_loop.local.state import local_aws_environment, local_client

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STACK = "feedback-loop"

# runs the command-line tool with the given top-level modules (those of installed distributions that
# are not core dependencies) refused at import
LIGHT = """
import importlib.abc, json, sys
refused = set(json.loads(sys.argv[1]))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in refused:
            raise ModuleNotFoundError(f"{name} is not a core dependency", name=name)
sys.meta_path.insert(0, Refuse())
from feedback_loop.cli import main
sys.exit(main(sys.argv[2:]))
"""


def core_modules() -> set[str]:
    """Top-level modules of feedback-loop's core dependencies, with their dependencies (extras named
    in a requirement followed, extras of feedback-loop itself not)."""
    wanted = [Requirement(r) for r in metadata.requires("feedback-loop") if "extra ==" not in r]
    seen: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(requirement.name) or []:
            inner = Requirement(line)
            environments = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
            if inner.marker is None or any(inner.marker.evaluate(env) for env in environments):
                wanted.append(inner)
    modules = {"feedback_loop", "_distutils_hack", "_cffi_backend"}
    for module, distributions in metadata.packages_distributions().items():
        if any(canonicalize_name(d) in seen for d in distributions):
            modules.add(module)
    return modules


def documented_commands(section: str, command: str) -> list[list[str]]:
    """The `feedback-loop <command>` lines of the bash blocks under DEPLOY.md's `## <section>`, as
    arguments (the program and a trailing comment left out)."""
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0], re.S)
    return [shlex.split(line.split("#")[0])[1:] for block in blocks for line in map(str.strip, block.splitlines())
            if re.match(rf"^\S*feedback-loop {command} ", line)]


def documented_key_commands() -> list[list[str]]:
    return documented_commands("API keys", "keys")


def run(argv: list[str], endpoint: str, allowed: set[str]) -> subprocess.CompletedProcess:
    """The command-line tool, with only `allowed` top-level modules importable, against `endpoint`."""
    env = {"PATH": "/usr/bin:/bin", **local_aws_environment(endpoint)}
    refused = set(metadata.packages_distributions()) - allowed
    return subprocess.run([sys.executable, "-c", LIGHT, json.dumps(sorted(refused)), *argv], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_the_documented_key_commands_run_as_written_from_a_light_install(stack: LocalStack, tmp_path) -> None:
    commands = documented_key_commands()
    assert [c[1] for c in commands] == ["create", "list", "revoke"]
    cloudformation = local_client("cloudformation", stack.aws_endpoint)
    cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps({
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"TableName": {"Value": stack.table_name}}}))
    allowed = core_modules()
    assert not allowed & {"moto", "numpy", "scipy", "duckdb", "torch", "orjson", "werkzeug", "cfnlint"}
    try:
        created = run(commands[0], stack.aws_endpoint, allowed)
        assert created.returncode == 0, created.stderr
        issued = json.loads(created.stdout)
        project = commands[0][commands[0].index("--project") + 1]
        assert issued["project"] == project and issued["api_key"].startswith("flk_")

        listed = run(commands[1], stack.aws_endpoint, allowed)
        assert listed.returncode == 0, listed.stderr
        assert issued["key_id"] in [json.loads(line)["key_id"] for line in listed.stdout.splitlines()]
        assert issued["api_key"] not in listed.stdout

        feedback = {"request_id": "req-docs", "feedback_type": "explicit_thumbs_up", "value": True}
        headers = {"x-api-key": issued["api_key"]}
        assert requests.post(f"{stack.api_url}/v1/feedback", json=feedback, headers=headers, timeout=10).status_code == 201

        revoke = [issued["key_id"] if arg == "<key_id>" else arg for arg in commands[2]]
        revoked = run(revoke, stack.aws_endpoint, allowed)
        assert revoked.returncode == 0, revoked.stderr
        assert json.loads(revoked.stdout)["key_id"] == issued["key_id"]
        assert requests.post(f"{stack.api_url}/v1/feedback", json=feedback, headers=headers, timeout=10).status_code == 401

        # a stack that is not there, or without the output: said, exit 1, no traceback
        missing = run(["keys", "list", "--project", project, "--stack", "no-such-stack"], stack.aws_endpoint, allowed)
        assert missing.returncode == 1 and "no-such-stack" in missing.stderr and "Traceback" not in missing.stderr
    finally:
        cloudformation.delete_stack(StackName=STACK)


def test_keys_take_the_table_before_or_after_the_command(stack: LocalStack) -> None:
    allowed = core_modules()
    for argv in (["keys", "--table", stack.table_name, "create", "--project", "p-before"],
                 ["keys", "create", "--project", "p-after", "--table", stack.table_name]):
        created = run(argv, stack.aws_endpoint, allowed)
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["project"] == argv[argv.index("--project") + 1]
    both = run(["keys", "list", "--project", "p", "--table", "t", "--stack", "s"], stack.aws_endpoint, allowed)
    assert both.returncode == 1 and "not both" in both.stderr


def test_a_browser_key_is_made_with_its_scope_and_listed_with_it(stack) -> None:
    from feedback_loop.cli import SCOPE_NAMES
    from feedback_loop.logic.keys import SCOPES

    assert set(SCOPE_NAMES) == set(SCOPES)
    allowed = core_modules()
    created = run(["keys", "create", "--project", "site", "--label", "website", "--scope", "feedback:write",
                   "--table", stack.table_name], stack.aws_endpoint, allowed)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["scopes"] == ["feedback:write"]
    listed = run(["keys", "list", "--project", "site", "--table", stack.table_name], stack.aws_endpoint, allowed)
    assert [json.loads(line)["scopes"] for line in listed.stdout.splitlines()] == [["feedback:write"]]
    wrong = run(["keys", "create", "--project", "site", "--scope", "admin", "--table", stack.table_name], stack.aws_endpoint, allowed)
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr
