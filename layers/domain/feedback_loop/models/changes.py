"""The change contract (ARCHITECTURE.md, "Change", version 1): prompt and model changes to measure."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

from feedback_loop.models.feedback import Label, _utc

ChangeName = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
SegmentKey = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")]
SegmentValue = Annotated[StrictStr, Field(min_length=1, max_length=256)]


class Change(BaseModel):
    """A registered prompt or model change.

    `segment` keys name eval-log fields, top-level (`model`) or under metadata, written either
    `query_type` or `metadata.query_type`. The A/B fields come all together or not at all.
    """

    model_config = ConfigDict(extra="forbid")

    name: ChangeName
    description: Annotated[StrictStr, Field(max_length=2000)] | None = None
    effective_at: Annotated[datetime, AfterValidator(_utc)]
    segment: Annotated[dict[SegmentKey, SegmentValue], Field(max_length=16)] | None = None
    variant_field: Label | None = None
    control: Label | None = None
    treatment: Label | None = None

    @field_validator("segment", mode="before")
    @classmethod
    def _segment_from_text(cls, segment: object) -> object:
        """Also takes the filter form `metadata.query_type=code,model=m-2`."""
        if not isinstance(segment, str):
            return segment
        pairs = [part.partition("=") for part in segment.split(",") if part.strip()]
        if not pairs or any(not sep or not k.strip() or not v.strip() for k, sep, v in pairs):
            raise ValueError("must be an object or 'field=value[,field=value]'")
        return {k.strip(): v.strip() for k, _, v in pairs}

    @model_validator(mode="after")
    def _ab_fields_together(self) -> Self:
        given = [f for f in ("variant_field", "control", "treatment") if getattr(self, f) is not None]
        if given and len(given) != 3:
            missing = sorted({"variant_field", "control", "treatment"} - set(given))
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
