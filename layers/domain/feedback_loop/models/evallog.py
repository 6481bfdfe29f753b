"""The eval log record contract (docs/CONTRACTS.md, "Eval log record", version 1).

One line of an eval log: an LLM request with the automated evaluator's scores. The analysis reads
eval logs in DuckDB with the same rules (analysis/columnar.py: a record it cannot use is counted
and skipped, never an error); this model states them for writers and for the JSON Schema users
validate against (docs/schemas/eval-record.schema.json).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from feedback_loop.models.feedback import FieldError, RequestId, Timestamp, in_time
from feedback_loop.models.strict_json import nesting_depth

# how deep a prompt, an output, the metadata or an unknown field may nest (chat messages with their
# parts nest 5 or 6 levels): deeper records stop JSON writers (orjson's limit is 255) and readers
MAX_FIELD_DEPTH = 32


def shallow_json(value: Any) -> Any:
    if nesting_depth(value, stop_above=MAX_FIELD_DEPTH) > MAX_FIELD_DEPTH:
        raise ValueError(f"must be nested at most {MAX_FIELD_DEPTH} levels deep")
    return value


# numbers as JSON has them: text and booleans are not scores (the analysis reads only numbers)
Score = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class EvalScores(BaseModel):
    """The evaluator's scores: `overall` in [0, 1], which every figure uses; any other named
    scores (numbers) are kept."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": {"type": "number"}})

    overall: Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False,
                                    description="the evaluator's score in [0, 1]; good above the threshold (0.7)")]
    __pydantic_extra__: dict[str, Score]


class EvalRecord(BaseModel):
    """One LLM request as its app logged it, with the evaluator's scores. Unknown fields are kept
    (a top-level text field can be a segment, like a metadata field)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})
    # unknown fields are checked one by one, so that a refusal names the field
    __pydantic_extra__: dict[str, Annotated[Any, BeforeValidator(shallow_json)]] = Field(init=False)

    request_id: RequestId = Field(description="the id the app's feedback refers to")
    timestamp: Timestamp = Field(description=(
        "when the request was served, ISO 8601 (read as UTC without an offset): the week it belongs to"))
    prompt: Any = Field(default=None, description="the prompt (text, or the messages as JSON)")
    output: Any = Field(default=None, description="the answer (text, or the messages as JSON)")
    eval_scores: EvalScores
    metadata: dict[str, Any] | None = Field(default=None, description=(
        "segment fields: user_cohort (who the user is: the feedback rates and weights), query_type, "
        "prompt_version, model, or any other; text values"))

    @field_validator("timestamp")
    @classmethod
    def _in_time(cls, moment: datetime) -> datetime:
        return in_time(moment)

    @field_validator("prompt", "output", "metadata", mode="before")
    @classmethod
    def _shallow(cls, value: Any) -> Any:
        return shallow_json(value)


MAX_BATCH_RECORDS = 500


class EvalBatchRequest(BaseModel):
    """POST /v1/evals: eval log records, each accepted or refused on its own (items stay raw here)."""

    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH_RECORDS)


class EvalItemResult(BaseModel):
    index: int
    status: int = Field(description="201 accepted, 200 already accepted, 409 the request_id came with another "
                                    "record, 422 invalid, 503 send it again")
    request_id: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


class EvalBatchResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EvalItemResult]

    @classmethod
    def of(cls, results: list[EvalItemResult]) -> "EvalBatchResult":
        return cls(accepted=sum(r.status == 201 for r in results), duplicates=sum(r.status == 200 for r in results),
                   rejected=sum(r.status not in (200, 201) for r in results), results=results)
