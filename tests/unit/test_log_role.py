"""The region's API Gateway logging role (logic/log_role.py), against the emulator's API Gateway and IAM
(the session's local stack: moto's in-process mock would reset the backends that stack runs on): set
only where none works, another API's role never replaced unless asked, put back when the stack goes;
and the custom resource's answer as CloudFormation reads it (a PUT to its URL)."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import boto3
import pytest
from feedback_loop.logic import log_role

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


@pytest.fixture
def aws(stack: Any) -> Any:
    apigateway, iam = boto3.client("apigateway"), boto3.client("iam")
    log_role._set(apigateway, "")  # the region as a new account has it
    yield apigateway, iam
    log_role._set(apigateway, "")


def role(iam: Any, name: str) -> str:
    return iam.create_role(RoleName=f"{name}-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]


def event(kind: str, ours: str, mode: str = "true", **extra: Any) -> dict[str, Any]:
    return {"RequestType": kind, "ResourceProperties": {"RoleArn": ours, "Mode": mode}, "StackId": "stack",
            "RequestId": "r", "LogicalResourceId": "ApiGatewayLogRoleSetting", **extra}


def test_a_new_region_gets_the_stacks_role_and_loses_it_with_the_stack(aws) -> None:
    apigateway, iam = aws
    ours = role(iam, "stack-log-role")
    physical_id, data = log_role.handle(event("Create", ours), apigateway, iam)
    assert log_role.current_role(apigateway) == ours and data["SetByStack"] == "true"
    log_role.handle(event("Delete", ours, PhysicalResourceId=physical_id), apigateway, iam)
    assert log_role.current_role(apigateway) == ""


def test_another_apis_working_role_is_kept_unless_replace_is_asked(aws) -> None:
    apigateway, iam = aws
    theirs, ours = role(iam, "their-log-role"), role(iam, "stack-log-role")
    log_role._set(apigateway, theirs)
    physical_id, data = log_role.handle(event("Create", ours, "true"), apigateway, iam)
    assert log_role.current_role(apigateway) == theirs and data == {"RoleArn": theirs, "Previous": theirs,
                                                                      "SetByStack": "false"}
    log_role.handle(event("Delete", ours, PhysicalResourceId=physical_id), apigateway, iam)
    assert log_role.current_role(apigateway) == theirs
    # replace: the stack's role while it lives, theirs again after
    physical_id, data = log_role.handle(event("Create", ours, "replace"), apigateway, iam)
    assert log_role.current_role(apigateway) == ours and data["Previous"] == theirs
    log_role.handle(event("Delete", ours, PhysicalResourceId=physical_id), apigateway, iam)
    assert log_role.current_role(apigateway) == theirs


def test_a_setting_naming_a_deleted_role_is_taken_over_and_not_restored(aws) -> None:
    apigateway, iam = aws
    ours = role(iam, "stack-log-role")
    log_role._set(apigateway, "arn:aws:iam::123456789012:role/deleted-by-an-earlier-stack")
    physical_id, data = log_role.handle(event("Create", ours), apigateway, iam)
    assert log_role.current_role(apigateway) == ours
    log_role.handle(event("Delete", ours, PhysicalResourceId=physical_id), apigateway, iam)
    assert log_role.current_role(apigateway) == ""  # not back to a role that does not exist


def test_false_never_touches_the_setting_and_a_later_change_is_left_alone(aws) -> None:
    apigateway, iam = aws
    ours = role(iam, "stack-log-role")
    physical_id, data = log_role.handle(event("Create", "", "false"), apigateway, iam)
    assert log_role.current_role(apigateway) == "" and data["SetByStack"] == "false"
    # the stack set its role, then someone set theirs: the stack's delete leaves theirs
    physical_id, _ = log_role.handle(event("Create", ours), apigateway, iam)
    theirs = role(iam, "their-log-role")
    log_role._set(apigateway, theirs)
    log_role.handle(event("Delete", ours, PhysicalResourceId=physical_id), apigateway, iam)
    assert log_role.current_role(apigateway) == theirs


def test_an_update_keeps_the_id_and_follows_a_replaced_role(aws) -> None:
    apigateway, iam = aws
    theirs, old, new = role(iam, "their-log-role"), role(iam, "stack-log-role-1"), role(iam, "stack-log-role-2")
    log_role._set(apigateway, theirs)
    physical_id, _ = log_role.handle(event("Create", old, "replace"), apigateway, iam)
    updated = event("Update", new, "true", PhysicalResourceId=physical_id, OldResourceProperties={"RoleArn": old})
    same_id, data = log_role.handle(updated, apigateway, iam)
    assert same_id == physical_id  # a new id would make CloudFormation delete the old resource
    assert log_role.current_role(apigateway) == new and data["Previous"] == theirs
    log_role.handle(event("Delete", new, PhysicalResourceId=same_id), apigateway, iam)
    assert log_role.current_role(apigateway) == theirs
    with pytest.raises(ValueError, match="mode"):
        log_role.handle(event("Create", new, "sometimes"), apigateway, iam)


def test_the_answer_is_put_to_cloudformations_url() -> None:
    received: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        request = event("Create", "arn", ResponseURL=f"http://127.0.0.1:{server.server_port}/presigned?sig=1")
        log_role.respond(request, "FAILED", "apigateway-log-role:", {}, "why " * 400)
    finally:
        server.shutdown()
    [(path, headers, body)] = received
    assert path == "/presigned?sig=1" and headers["Content-Type"] == ""  # the presigned URL signs no type
    assert body["Status"] == "FAILED" and len(body["Reason"]) == 1000
    assert {k: body[k] for k in ("StackId", "RequestId", "LogicalResourceId", "PhysicalResourceId")} == {
        "StackId": "stack", "RequestId": "r", "LogicalResourceId": "ApiGatewayLogRoleSetting",
        "PhysicalResourceId": "apigateway-log-role:"}
