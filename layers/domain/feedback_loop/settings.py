"""Typed settings, one object per function, read from the environment once."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    table_name: str = Field(validation_alias="TABLE_NAME")
    retention_days: int = Field(default=0, ge=0, validation_alias="RETENTION_DAYS")
    day_shards: int = Field(default=8, ge=1, le=64, validation_alias="FEEDBACK_DAY_SHARDS")
    key_cache_seconds: float = Field(default=60, ge=0, validation_alias="KEY_CACHE_SECONDS")
    max_body_bytes: int = Field(default=5_000_000, ge=1024, validation_alias="MAX_BODY_BYTES")
    # Powertools' own switch; its single_metric ignores it, so the function checks it too.
    metrics_disabled: bool = Field(default=False, validation_alias="POWERTOOLS_METRICS_DISABLED")


@lru_cache(maxsize=1)
def api_settings() -> ApiSettings:
    return ApiSettings()
