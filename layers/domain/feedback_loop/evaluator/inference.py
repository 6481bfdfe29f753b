"""The evaluator's inference handlers, in the Hugging Face inference toolkit's conventions.

The SageMaker endpoint runs them from code/inference.py in model.tar.gz; the local stack calls the
same functions in process. Request: {"inputs": [{"prompt": "...", "output": "..."}, ...]};
response: {"scores": [P(good), ...]}.
"""

from __future__ import annotations

import json
from typing import Any

from feedback_loop.evaluator.finetune import load_evaluator

MAX_ITEMS = 256


def model_fn(model_dir: str) -> Any:
    return load_evaluator(model_dir)


def input_fn(body: str | bytes, content_type: str = "application/json") -> list[dict[str, str]]:
    if not content_type.startswith("application/json"):
        raise ValueError(f"unsupported content type {content_type!r}: send application/json")
    data = json.loads(body)
    items = data.get("inputs") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items or len(items) > MAX_ITEMS:
        raise ValueError(f"'inputs' must be a list of 1 to {MAX_ITEMS} {{prompt, output}} objects")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("output"), str):
            raise ValueError("each input needs an 'output' string (and a 'prompt' string)")
    return items


def predict_fn(items: list[dict[str, str]], model: Any) -> dict[str, Any]:
    scores = model.predict([str(i.get("prompt") or "") for i in items], [i["output"] for i in items])
    return {"scores": [float(s) for s in scores]}


def output_fn(prediction: dict[str, Any], accept: str = "application/json") -> str:
    return json.dumps(prediction)
