"""API Gateway's CloudWatch Logs role: one setting per account and region, which the API's access logs
need ("CloudWatch Logs role ARN must be set in account settings to enable logging" otherwise).

CloudFormation's `AWS::ApiGateway::Account` replaces whatever role the region had (other APIs' logging
may rely on it) and leaves the setting naming a deleted role when the stack goes. The stack's custom
resource does this instead, before the API's stage is created (template.yaml, ApiGatewayLogRoleSetting):

- mode "true" (the default): set the stack's role only where the region has none, or names a role
  that no longer exists; otherwise leave it;
- mode "replace": set the stack's role whatever was there;
- mode "false": never touch the setting (the region must have a working role already).

When the stack goes, a setting that still names the stack's role is put back to what was there before
(kept in the resource's physical id), or cleared where there was none.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass
from typing import Any

MODES = ("true", "replace", "false")
_PREFIX = "apigateway-log-role:"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogRoleSetting:
    role_arn: str  # the role the region's setting names afterwards ("" for none)
    previous: str  # what it named before the stack set its own ("" for none)
    set_by_stack: bool

    @property
    def physical_id(self) -> str:
        return _PREFIX + self.previous

    def as_data(self) -> dict[str, str]:
        return {"RoleArn": self.role_arn, "Previous": self.previous, "SetByStack": str(self.set_by_stack).lower()}


def current_role(apigateway: Any) -> str:
    return apigateway.get_account().get("cloudwatchRoleArn", "")


def _set(apigateway: Any, role_arn: str) -> None:
    apigateway.update_account(patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": role_arn}])


def role_exists(iam: Any, role_arn: str) -> bool:
    try:
        iam.get_role(RoleName=role_arn.rsplit("/", 1)[-1])
    except iam.exceptions.NoSuchEntityException:
        return False
    return True


def claim(apigateway: Any, iam: Any, ours: str, mode: str, previous: str | None = None,
          ours_before: str = "") -> LogRoleSetting:
    """Sets the stack's role as `mode` says. On an update, `previous` is what the first claim found and
    `ours_before` the stack's role until now (a replaced role is the stack's too, not another API's)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    current = current_role(apigateway)
    before = current if previous is None else previous
    if current == ours and ours:
        return LogRoleSetting(ours, before if before != ours else "", True)
    if current and current == ours_before and ours and mode != "false":
        _set(apigateway, ours)
        return LogRoleSetting(ours, before, True)
    if mode == "false" or not ours:
        return LogRoleSetting(current, current, False)
    if mode == "true" and current and role_exists(iam, current):
        log.info("the region's API Gateway logging role is kept: %s", current)
        return LogRoleSetting(current, current, False)
    _set(apigateway, ours)
    return LogRoleSetting(ours, before if previous is not None else current, True)


def release(apigateway: Any, iam: Any, ours: str, physical_id: str) -> str:
    """When the stack goes: a setting that still names its role gets back what it named before (if
    that role still exists), else is cleared. Returns what the setting names afterwards."""
    current = current_role(apigateway)
    if not ours or current != ours:
        return current  # not ours (never set by the stack, or replaced since): left as it is
    previous = physical_id.removeprefix(_PREFIX) if physical_id.startswith(_PREFIX) else ""
    restore = previous if previous and role_exists(iam, previous) else ""
    try:
        _set(apigateway, restore)
    except apigateway.exceptions.BadRequestException as refused:  # API Gateway may refuse an empty role
        log.warning("the API Gateway logging setting could not be cleared and still names %s: %s", ours, refused)
        return current
    return restore


def respond(event: dict[str, Any], status: str, physical_id: str, data: dict[str, str], reason: str = "") -> None:
    """CloudFormation's custom resource answer: a PUT of the outcome to the request's presigned URL."""
    body = json.dumps({"Status": status, "Reason": reason[:1000] or status, "PhysicalResourceId": physical_id,
                       "StackId": event["StackId"], "RequestId": event["RequestId"],
                       "LogicalResourceId": event["LogicalResourceId"], "Data": data}).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (CloudFormation's https URL)
        answer.read()


def handle(event: dict[str, Any], apigateway: Any, iam: Any) -> tuple[str, dict[str, str]]:
    """(physical id, data) for a Create, Update or Delete request of the custom resource."""
    properties = event.get("ResourceProperties", {})
    ours, mode = properties.get("RoleArn", ""), properties.get("Mode", "true")
    if event["RequestType"] == "Delete":
        physical_id = event.get("PhysicalResourceId", _PREFIX)
        return physical_id, {"RoleArn": release(apigateway, iam, ours, physical_id)}
    if event["RequestType"] == "Update":
        old = event.get("PhysicalResourceId", _PREFIX)
        setting = claim(apigateway, iam, ours, mode, previous=old.removeprefix(_PREFIX),
                        ours_before=event.get("OldResourceProperties", {}).get("RoleArn", ""))
        return old, setting.as_data()  # the same id: a new one would make CloudFormation delete the old
    setting = claim(apigateway, iam, ours, mode)
    return setting.physical_id, setting.as_data()
