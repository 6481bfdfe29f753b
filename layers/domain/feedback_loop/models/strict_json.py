"""A strict look at a request body before anything else parses it.

Python's json module takes what JSON numbers cannot carry (NaN, Infinity, 1e999) and fails with a
RecursionError or ValueError (not a JSON error) on deeply nested or very long input. This finds
those cases, so the API can answer 400 naming the body instead of crashing or storing infinities.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

# Python's own ceiling for reading an integer (sys.get_int_max_str_digits): JSON sets none, and the
# store keeps metadata as JSON text, so any integer short of it is taken as written.
MAX_INTEGER_DIGITS = 4300


def nesting_depth(value: Any, stop_above: int | None = None) -> int:
    """How deep objects and arrays nest in a parsed JSON value (a scalar is 0, `{}` and `[1]` are 1),
    without recursion: a value nested thousands of levels deep is measured, not a RecursionError.
    With `stop_above`, stops as soon as the depth passes it (and returns that depth)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if stop_above is not None and deepest > stop_above:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"an integer has more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def body_problem(body: str | None, base64_encoded: bool = False) -> str | None:
    """Why the body cannot be taken as JSON (a message for the `body` field), or None if it can."""
    if not body:
        return None
    if base64_encoded:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return "is not valid base64"
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "is not valid UTF-8"
    try:
        json.loads(body, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError:
        return "is not valid JSON: nested too deeply"
    except json.JSONDecodeError:
        return None  # the router reports these itself, with the position
    except ValueError as error:
        return f"is not valid JSON: {error}"
    return None
