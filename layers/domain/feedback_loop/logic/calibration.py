"""A project's calibrator in service: the map (calibration/curves.py) stored in the data bucket,
the table pointing at the current one (boto3 only: the API function reads it, no numpy).

    s3://<bucket>/calibration/<project>/<map id>.json   every map deployed, by content
    CALIBRATION#<project> / CURRENT                      {map_id, key, deployed_at, deployed_by, gate}
    CALIBRATION#<project> / DEPLOYED#<time>#<map id>     the history

Deploying registers a change `calibrator-<map id>` (effective at once), so that the next weekly
report measures what the calibrated score did.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from feedback_loop.calibration.curves import CalibrationMap, map_id
from feedback_loop.dal.items import timestamp_text
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.logic import changes
from feedback_loop.models.changes import Change
from feedback_loop.models.errors import DuplicateChange

CURRENT = "CURRENT"


def pointer_key(project: str) -> dict[str, str]:
    return {"pk": f"CALIBRATION#{project}", "sk": CURRENT}


def object_key(project: str, identifier: str) -> str:
    return f"calibration/{project}/{identifier}.json"


class NotDeployable(ValueError):
    """A map the gate did not approve, deployed without saying so."""


def deploy(table: FeedbackTable, s3: Any, bucket: str, project: str, text: str, deployed_by: str,
           force: bool = False, now: datetime | None = None, package: dict[str, Any] | None = None) -> dict[str, Any]:
    """The map (its JSON text) as the project's calibrator in service: refused unless its gate
    approved it (`trained.gate.status`), or `force`, or `package` (the model registry's approved
    package it came from: {model_package_arn, model_package_version}; the registry's approval, which
    a person may have given, is what counts then). Returns the pointer item."""
    calibration_map = CalibrationMap.loads(text)  # ValueError: not a map
    status = "Approved in the model registry" if package is not None else \
        (calibration_map.trained.get("gate") or {}).get("status")
    approved = package is not None or status == "Approved"
    if not approved and not force:
        raise NotDeployable(f"the map's gate says {status or 'nothing (fitted without a held-out part)'}: "
                            "deploy it anyway with force, saying why")
    now = now or datetime.now(timezone.utc)
    identifier = map_id(calibration_map)
    key = object_key(project, identifier)
    s3.put_object(Bucket=bucket, Key=key, Body=calibration_map.dumps().encode(), ContentType="application/json")
    pointer = {**pointer_key(project), "entity": "calibration", "project": project, "map_id": identifier, "key": key,
               "deployed_at": timestamp_text(now), "deployed_by": deployed_by, "gate": status or "none",
               "forced": not approved, **(package or {})}
    history = {k: v for k, v in pointer.items() if k not in ("pk", "sk")}
    table.merge(pointer["pk"], f"DEPLOYED#{pointer['deployed_at']}#{identifier}", history)
    table.merge(pointer["pk"], CURRENT, history)
    try:
        changes.register_change(table, project, Change(
            name=f"calibrator-{identifier}", effective_at=now,
            description=f"calibrator {identifier} in service ({calibration_map.p_good.method}; gate {status or 'none'})"),
            now)
    except DuplicateChange:  # the same map deployed again
        pass
    return pointer


def retire(table: FeedbackTable, project: str, reason: str, now: datetime | None = None) -> dict[str, Any] | None:
    """Takes the project's calibrator out of service (its map stays in the bucket and the history):
    when a fine-tuned evaluator replaces the one whose scores it maps. Returns the pointer it removed."""
    current = table.get(**pointer_key(project))
    if current is None:
        return None
    now = now or datetime.now(timezone.utc)
    table.merge(current["pk"], f"RETIRED#{timestamp_text(now)}#{current['map_id']}",
                {"entity": "calibration", "project": project, "map_id": current["map_id"], "reason": reason,
                 "retired_at": timestamp_text(now)})
    table.delete(**pointer_key(project))
    return current


@dataclass(frozen=True)
class InService:
    """A project's calibrator in service: its id, its JSON as stored, and the map."""

    id: str
    text: str
    map: CalibrationMap


@dataclass
class CurrentMaps:
    """The project's current map, read through the table's pointer and kept while it stays
    current (one consistent GetItem a call, the S3 object once per map)."""

    table: FeedbackTable
    s3: Any
    bucket: str

    def __post_init__(self) -> None:
        self._maps: dict[str, InService] = {}  # project -> the map last read
        self._lock = threading.Lock()

    def get(self, project: str) -> InService | None:
        pointer = self.table.get(**pointer_key(project))
        if pointer is None:
            return None
        with self._lock:
            kept = self._maps.get(project)
        if kept is not None and kept.id == pointer["map_id"]:
            return kept
        text = self.s3.get_object(Bucket=self.bucket, Key=pointer["key"])["Body"].read().decode()
        found = InService(pointer["map_id"], text, CalibrationMap.loads(text))
        with self._lock:
            self._maps[project] = found
        return found
