"""POST /v1/calibrate's body and answer: raw evaluator scores in, the project's calibrator's figures out."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from feedback_loop.models.changes import Segment

MAX_CALIBRATE_ITEMS = 500
# strict: a number (an integer too), never a bool or a numeric string
Score = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]


class CalibrateItem(BaseModel):
    """One raw score (the evaluator's `overall`, 0-1) and the request's segment values (`metadata`,
    as text: `query_type`, `user_cohort`, ...; a field left out reads `unknown`)."""

    model_config = ConfigDict(extra="forbid")

    score: Score
    metadata: Segment = {}


class CalibrateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[CalibrateItem], Field(min_length=1, max_length=MAX_CALIBRATE_ITEMS)]


class Calibrated(BaseModel):
    p_good: float = Field(description="P(users call the answer good | the score and the segment values)")
    expected_human: float = Field(description="the expected human score (0-1)")
    needs_review: bool | None = Field(None, description="the judge is not confident enough to decide alone "
                                                        "(None: the map has no review thresholds)")


class CalibrateResult(BaseModel):
    calibration_map: str = Field(description="the id of the map that answered (GET /v1/calibration's ETag)")
    results: list[Calibrated]
