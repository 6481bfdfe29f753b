"""The change contract (ARCHITECTURE.md, "Change", version 1): prompt and model changes to measure."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from feedback_loop.models.feedback import Label, Timestamp, _utc

ChangeName = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
SEGMENT_KEY = {"minLength": 1, "maxLength": 128, "pattern": r"^[A-Za-z0-9_.\-]+$"}
SEGMENT_VALUE = {"minLength": 1, "maxLength": 256}
MAX_SEGMENT_FIELDS = 16
SegmentKey = Annotated[StrictStr, Field(min_length=SEGMENT_KEY["minLength"], max_length=SEGMENT_KEY["maxLength"],
                                        pattern=SEGMENT_KEY["pattern"])]
SegmentValue = Annotated[StrictStr, Field(min_length=SEGMENT_VALUE["minLength"], max_length=SEGMENT_VALUE["maxLength"])]
# pydantic states the key rule as patternProperties, which leave other keys free: propertyNames binds them
Segment = Annotated[dict[SegmentKey, SegmentValue], Field(max_length=MAX_SEGMENT_FIELDS), WithJsonSchema({
    "type": "object", "maxProperties": MAX_SEGMENT_FIELDS, "propertyNames": {"type": "string", **SEGMENT_KEY},
    "additionalProperties": {"type": "string", **SEGMENT_VALUE}})]
AB_FIELDS = ("variant_field", "control", "treatment")
SEGMENT_TEXT = "segment_text"  # validation context key: segments may be written as text


class Change(BaseModel):
    """A registered prompt or model change.

    `segment` keys name eval-log fields, top-level (`model`) or under metadata, written either
    `query_type` or `metadata.query_type`. The A/B fields come all together or not at all, and
    `control` and `treatment` differ.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": [
        # each A/B field given (as text) needs the other two: the rule of _ab_fields_together
        {"if": {"properties": {field: {"type": "string"}}, "required": [field]},
         "then": {"properties": {other: {"type": "string"} for other in AB_FIELDS if other != field},
                  "required": [other for other in AB_FIELDS if other != field]}}
        for field in AB_FIELDS]})

    name: ChangeName
    description: Annotated[StrictStr, Field(max_length=2000)] | None = None
    effective_at: Annotated[Timestamp, AfterValidator(_utc)]
    segment: Segment | None = None
    variant_field: Label | None = None
    control: Label | None = None
    treatment: Label | None = None

    @field_validator("segment", mode="before")
    @classmethod
    def _segment_from_text(cls, segment: object, info: ValidationInfo) -> object:
        """In files (validated with the context SEGMENT_TEXT), also the filter form
        `metadata.query_type=code,model=m-2`; the API takes objects only, as its document says."""
        if not isinstance(segment, str) or not (info.context or {}).get(SEGMENT_TEXT):
            return segment
        pairs = [part.partition("=") for part in segment.split(",") if part.strip()]
        if not pairs or any(not sep or not k.strip() or not v.strip() for k, sep, v in pairs):
            raise ValueError("must be an object or 'field=value[,field=value]'")
        return {k.strip(): v.strip() for k, _, v in pairs}

    @model_validator(mode="after")
    def _ab_fields_together(self) -> Self:
        given = [f for f in AB_FIELDS if getattr(self, f) is not None]
        if given and len(given) != 3:
            missing = sorted(set(AB_FIELDS) - set(given))
            raise ValueError(f"an A/B change needs variant_field, control and treatment; missing {missing}")
        if given and self.control == self.treatment:
            raise ValueError("control and treatment must differ")
        return self

    @property
    def design(self) -> str:
        return "ab" if self.variant_field else "before_after"


class StoredChange(Change):
    created_at: datetime


class ChangeList(BaseModel):
    changes: list[StoredChange]
