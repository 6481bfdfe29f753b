"""The local stack's Step Functions: the template's state machines, executed by moto's interpreter
of the Amazon States Language (the emulator turns it on), which calls Lambda and Athena over HTTP
on the emulator's port as Step Functions calls them in AWS. The emulator answers its Lambda calls
with the local stack's functions (`invoker`); schedules fire when asked, as for functions.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from datetime import datetime
from typing import Any

import boto3

from feedback_loop.local.eventbus import scheduled_event
from feedback_loop.local.runtime import LocalFunction
from feedback_loop.local.template import ACCOUNT_ID, Template

log = logging.getLogger("feedback_loop.local.states")
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/feedback-loop-local-states"


class LocalStateMachines:
    def __init__(self, template: Template, functions: dict[str, LocalFunction]):
        self.template = template
        self.specs = {spec.logical_id: spec for spec in template.state_machines()}
        self.arns: dict[str, str] = {}
        self._functions = {template.physical_name(name): function for name, function in functions.items()}
        self._functions.update(functions)
        # the interpreter logs each failed state as an error; an execution's failure is its own answer
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)

    def create(self) -> None:
        client = boto3.client("stepfunctions")
        for logical_id, spec in self.specs.items():
            self.arns[logical_id] = client.create_state_machine(
                name=spec.name, definition=spec.definition, roleArn=ROLE)["stateMachineArn"]

    def invoker(self, name: str, payload: bytes) -> tuple[bytes, str | None]:
        """Lambda's Invoke for the emulator: the function by name or ARN, run here; a raised error is
        answered as Lambda answers it (FunctionError Unhandled, errorType and errorMessage)."""
        function = self._functions.get(name.rpartition(":function:")[2].partition(":")[0] or name)
        if function is None:
            body = {"errorType": "ResourceNotFoundException", "errorMessage": f"Function not found: {name}"}
            return json.dumps(body).encode(), "Unhandled"
        try:
            return json.dumps(function.invoke(json.loads(payload or b"{}")), default=str).encode(), None
        except Exception as error:  # the function's failure is the caller's answer
            log.exception("function %s failed", function.spec.logical_id)
            body = {"errorType": type(error).__name__, "errorMessage": str(error),
                    "stackTrace": traceback.format_tb(error.__traceback__)}
            return json.dumps(body).encode(), "Unhandled"

    def fire_schedule(self, at: datetime, which: str | None = None, timeout: float = 900.0) -> dict[str, Any]:
        """Starts each state machine with a Schedule event (or the one named) as EventBridge would at
        `at`, and waits for each execution: {logical id: {status, output, error, cause, arn}}."""
        started = {logical_id: self.start(logical_id, scheduled_event(self.template, name, at))
                   for logical_id, spec in self.specs.items() if which in (None, logical_id)
                   for name, event in spec.events.items() if event.get("Type") == "Schedule"}
        return {logical_id: wait(arn, timeout) for logical_id, arn in started.items()}

    def start(self, logical_id: str, execution_input: dict[str, Any]) -> str:
        """An execution started: its ARN."""
        return boto3.client("stepfunctions").start_execution(
            stateMachineArn=self.arns[logical_id], name=str(uuid.uuid4()),
            input=json.dumps(execution_input))["executionArn"]

    def execute(self, logical_id: str, execution_input: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
        """An execution started and waited for (wait)."""
        return wait(self.start(logical_id, execution_input), timeout)


def wait(execution: str, timeout: float) -> dict[str, Any]:
    """An execution once it has ended: {arn, status, output, error, cause}."""
    client = boto3.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while True:
        described = client.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            output = described.get("output")
            return {"arn": execution, "status": described["status"], "output": json.loads(output) if output else None,
                    "error": described.get("error"), "cause": described.get("cause")}
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {execution} still running after {timeout:.0f} s")
        time.sleep(0.1)

