"""The data contracts as JSON Schemas, generated from the models that enforce them
(docs/schemas/, described in docs/CONTRACTS.md; `feedback-loop schemas --out docs/schemas`
writes them, and a test keeps the files equal to what the models generate).

- `feedback-event`: a feedback event as the API takes it (POST /v1/feedback, each item of a batch);
- `feedback-export-line`: a line of a feedback export (`feedback-loop analyze --feedback FILE`):
  the same, with `timestamp` required;
- `eval-record`: a line of an eval log;
- `change`: a registered change (POST /v1/changes, an element of `--changes FILE`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from feedback_loop.models.changes import Change
from feedback_loop.models.evallog import EvalRecord
from feedback_loop.models.feedback import FeedbackEventIn

DIALECT = "https://json-schema.org/draft/2020-12/schema"
VERSION = 1


def _document(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """The schema as a document of its own: its dialect, id, title and what it describes (the
    model's docstring, else `description`) first."""
    told = " ".join(schema.get("description", "").split()) or f"{description}."
    return {"$schema": DIALECT, "$id": f"{name}.schema.json", "title": name,
            "description": f"{told} feedback-loop data contract, version {VERSION}.",
            **{key: value for key, value in schema.items() if key not in ("title", "description")}}


def _timestamp_required(schema: dict[str, Any]) -> dict[str, Any]:
    """The event schema with `timestamp` required in every feedback type."""
    schema = copy.deepcopy(schema)
    for definition in schema["$defs"].values():
        if "timestamp" in definition.get("properties", {}):
            definition["required"] = sorted({*definition.get("required", []), "timestamp"})
    return schema


def schemas() -> dict[str, dict[str, Any]]:
    """Every contract's JSON Schema, by name."""
    event = TypeAdapter(FeedbackEventIn).json_schema()
    return {
        "feedback-event": _document("feedback-event", event, "A feedback event as the API takes it"),
        "feedback-export-line": _document("feedback-export-line", _timestamp_required(event),
                                          "A line of a feedback export: a feedback event, its timestamp required"),
        "eval-record": _document("eval-record", EvalRecord.model_json_schema(), "A line of an eval log"),
        "change": _document("change", Change.model_json_schema(), "A registered prompt or model change"),
    }


def text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write(folder: str | Path) -> list[Path]:
    """Each schema as <folder>/<name>.schema.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = folder / f"{name}.schema.json"
        path.write_text(text(schema))
        written.append(path)
    return written
