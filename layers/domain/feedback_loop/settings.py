"""Typed settings, one object per function, read from the environment once."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from feedback_loop.analysis.model import AnalysisSettings
    from feedback_loop.calibration.gate import CalibratorPolicy
    from feedback_loop.registry.deploy import DeploySetup
    from feedback_loop.registry.gate import GatePolicy
    from feedback_loop.retraining.launch import TrainingSetup
    from feedback_loop.retraining.policy import RetrainPolicy


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    table_name: str = Field(validation_alias="TABLE_NAME")
    retention_days: int = Field(default=0, ge=0, validation_alias="RETENTION_DAYS")
    eval_dedup_days: int = Field(default=14, ge=1, validation_alias="EVAL_DEDUP_DAYS")
    day_shards: int = Field(default=8, ge=1, le=64, validation_alias="FEEDBACK_DAY_SHARDS")
    max_body_bytes: int = Field(default=5_000_000, ge=1024, validation_alias="MAX_BODY_BYTES")
    event_bus_name: str = Field(default="default", validation_alias="EVENT_BUS_NAME")
    # the data bucket: the calibrator in service is kept there (logic/calibration.py)
    data_bucket: str = Field(default="", validation_alias="DATA_BUCKET")
    # requests per API key and minute (0: no limit), counted across containers in the table
    rate_limit_per_minute: int = Field(default=0, ge=0, validation_alias="KEY_RATE_LIMIT_PER_MINUTE")
    # admitted requests per counter write (0: 1% of the limit, between 1 and 50); logic/ratelimit.py
    rate_limit_batch: int = Field(default=0, ge=0, validation_alias="KEY_RATE_LIMIT_BATCH")
    # the browser origin allowed to call the API (the widget), "*" for any: keys, not cookies, authenticate
    cors_allow_origin: str = Field(default="*", min_length=1, validation_alias="CORS_ALLOW_ORIGIN")
    # the delivery stream POST /v1/evals sends eval log records to (template.yaml, EvalLogStream)
    eval_log_stream: str = Field(default="", validation_alias="EVAL_LOG_STREAM")
    # Powertools' own switch; its single_metric ignores it, so the function checks it too.
    metrics_disabled: bool = Field(default=False, validation_alias="POWERTOOLS_METRICS_DISABLED")


@lru_cache(maxsize=1)
def api_settings() -> ApiSettings:
    return ApiSettings()


class AuthorizerSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    table_name: str = Field(validation_alias="TABLE_NAME")
    # a revoked key still passes for up to this long on a warm authorizer
    key_cache_seconds: float = Field(default=60, ge=0, validation_alias="KEY_CACHE_SECONDS")


@lru_cache(maxsize=1)
def authorizer_settings() -> AuthorizerSettings:
    return AuthorizerSettings()


class AnalysisFunctionSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    table_name: str = Field(validation_alias="TABLE_NAME")
    data_bucket: str = Field(validation_alias="DATA_BUCKET")
    event_bus_name: str = Field(validation_alias="EVENT_BUS_NAME")
    day_shards: int = Field(default=8, ge=1, le=64, validation_alias="FEEDBACK_DAY_SHARDS")
    window_days: float = Field(default=7, gt=0, validation_alias="ANALYSIS_WINDOW_DAYS")
    # a schedule's run analyses the window that ended this long before it: eval records still in the
    # eval-log stream's buffer at the window's end (EvalLogBufferSeconds) are in S3 by then
    lag_minutes: int = Field(default=0, ge=0, le=1440, validation_alias="ANALYSIS_LAG_MINUTES")
    projects_csv: str = Field(default="", validation_alias="ANALYSIS_PROJECTS")
    threshold: float = Field(default=0.7, ge=0, le=1, validation_alias="EVALUATOR_THRESHOLD")
    min_segment_n: int = Field(default=30, ge=2, validation_alias="MIN_SEGMENT_N")
    segment_fields_csv: str = Field(default="", validation_alias="EXTRA_SEGMENT_FIELDS")
    system_field: str = Field(default="", validation_alias="SYSTEM_FIELD")
    group_field: str = Field(default="", validation_alias="GROUP_FIELD")
    target_feedback_rate: float = Field(default=0.05, ge=0, le=1, validation_alias="TARGET_FEEDBACK_RATE")
    trim_multiple: float = Field(default=20, gt=1, validation_alias="WEIGHT_TRIM_MULTIPLE")
    impact_days: float = Field(default=7, gt=0, validation_alias="IMPACT_WINDOW_DAYS")
    # which engine runs a project's pass (analysis/weekly.py: plan); auto: Athena from this many bytes of eval logs
    engine: Literal["embedded", "athena", "auto"] = Field(default="auto", validation_alias="ANALYSIS_ENGINE")
    athena_threshold_bytes: int = Field(default=4 << 30, ge=0, validation_alias="ATHENA_THRESHOLD_BYTES")
    athena_database: str = Field(default="", validation_alias="ATHENA_DATABASE")
    athena_workgroup: str = Field(default="", validation_alias="ATHENA_WORKGROUP")
    # how often the state machine asks Athena, and for how long before it stops the statements
    athena_poll_seconds: int = Field(default=15, ge=1, validation_alias="ATHENA_POLL_SECONDS")
    athena_max_wait_seconds: int = Field(default=3600, ge=1, validation_alias="ATHENA_MAX_WAIT_SECONDS")

    @property
    def projects(self) -> list[str]:
        return [p.strip() for p in self.projects_csv.split(",") if p.strip()]

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.window_days)

    def analysis(self) -> "AnalysisSettings":
        from feedback_loop.analysis.model import AnalysisSettings

        extra = [f.strip() for f in self.segment_fields_csv.split(",") if f.strip()]
        return AnalysisSettings(
            threshold=self.threshold, min_segment_n=self.min_segment_n,
            segment_fields=tuple(dict.fromkeys(["user_cohort", "query_type", "prompt_version", "model", *extra])),
            system_field=self.system_field.strip() or None, group_field=self.group_field.strip() or None,
            target_feedback_rate=self.target_feedback_rate, trim_multiple=self.trim_multiple,
            impact_window=timedelta(days=self.impact_days),
        )


@lru_cache(maxsize=1)
def analysis_settings() -> AnalysisFunctionSettings:
    return AnalysisFunctionSettings()


class CalibratorGateSettings(BaseSettings):
    """The calibrator's gate, as the retrain function gives it to the job and the register function
    applies it again (one template parameter for both)."""

    model_config = SettingsConfigDict(extra="ignore")

    calibrator_min_held_out: int = Field(default=200, ge=2, validation_alias="CALIBRATOR_MIN_HELD_OUT")
    calibrator_max_auroc_drop: float = Field(default=0.01, ge=0, validation_alias="CALIBRATOR_MAX_AUROC_DROP")

    def calibrator_policy(self) -> "CalibratorPolicy":
        from feedback_loop.calibration.gate import CalibratorPolicy

        return CalibratorPolicy(min_held_out=self.calibrator_min_held_out, max_auroc_drop=self.calibrator_max_auroc_drop)


class RetrainFunctionSettings(CalibratorGateSettings):
    model_config = SettingsConfigDict(extra="ignore")

    table_name: str = Field(validation_alias="TABLE_NAME")
    data_bucket: str = Field(validation_alias="DATA_BUCKET")
    role_arn: str = Field(validation_alias="TRAINING_ROLE_ARN")
    image_uri: str = Field(validation_alias="TRAINING_IMAGE_URI")
    instance_type: str = Field(default="ml.g5.xlarge", validation_alias="TRAINING_INSTANCE_TYPE")
    base_model: str = Field(default="all-MiniLM-L6-v2", validation_alias="EVALUATOR_BASE_MODEL")
    mode: str = Field(default="finetune", pattern="^(finetune|frozen)$", validation_alias="EVALUATOR_TRAINING_MODE")
    accumulation_days: float = Field(default=14, gt=0, validation_alias="ACCUMULATION_DAYS")
    min_labels: int = Field(default=200, ge=1, validation_alias="RETRAIN_MIN_LABELS")
    max_disagreement_rate: float = Field(default=0.2, ge=0, le=1, validation_alias="RETRAIN_MAX_DISAGREEMENT_RATE")
    min_spearman: float = Field(default=0.5, ge=-1, le=1, validation_alias="RETRAIN_MIN_SPEARMAN")
    cadence_days: float = Field(default=7, ge=0, validation_alias="RETRAIN_CADENCE_DAYS")
    kind: str = Field(default="finetune", pattern="^(finetune|calibrate|auto)$", validation_alias="EVALUATOR_KIND")
    calibration_image_uri: str = Field(default="", validation_alias="CALIBRATION_IMAGE_URI")
    calibration_instance_type: str = Field(default="ml.m5.large", validation_alias="CALIBRATION_INSTANCE_TYPE")
    calibration_fields: str = Field(default="query_type,user_cohort", validation_alias="CALIBRATION_FIELDS")

    def setup(self) -> "TrainingSetup":
        from feedback_loop.retraining.launch import TrainingSetup

        return TrainingSetup(bucket=self.data_bucket, role_arn=self.role_arn, image_uri=self.image_uri,
                             instance_type=self.instance_type, hyperparameters={"base-model": self.base_model, "mode": self.mode},
                             accumulation=timedelta(days=self.accumulation_days), kind=self.kind,
                             calibration_image_uri=self.calibration_image_uri,
                             calibration_instance_type=self.calibration_instance_type,
                             calibration_hyperparameters={"fields": self.calibration_fields,
                                                          "min-held-out": str(self.calibrator_min_held_out),
                                                          "max-auroc-drop": str(self.calibrator_max_auroc_drop)})

    def policy(self) -> "RetrainPolicy":
        from feedback_loop.retraining.policy import RetrainPolicy

        return RetrainPolicy(min_new_labels=self.min_labels, max_disagreement_rate=self.max_disagreement_rate,
                             min_spearman=self.min_spearman, cadence=timedelta(days=self.cadence_days))


@lru_cache(maxsize=1)
def retrain_settings() -> RetrainFunctionSettings:
    return RetrainFunctionSettings()


class RegisterFunctionSettings(CalibratorGateSettings):
    model_config = SettingsConfigDict(extra="ignore")

    table_name: str = Field(validation_alias="TABLE_NAME")
    event_bus_name: str = Field(validation_alias="EVENT_BUS_NAME")
    inference_cpu_image: str = Field(validation_alias="INFERENCE_IMAGE_URI")
    # the GPU build of the same image, for GPU endpoint instances; the CPU image where unset
    inference_gpu_image: str = Field(default="", validation_alias="INFERENCE_GPU_IMAGE_URI")
    endpoint_instance_type: str = Field(default="ml.m5.large", validation_alias="ENDPOINT_INSTANCE_TYPE")
    min_auroc_gain: float = Field(default=0.02, ge=0, validation_alias="GATE_MIN_AUROC_GAIN")
    max_ece_increase: float = Field(default=0.0, ge=0, validation_alias="GATE_MAX_ECE_INCREASE")
    min_validation: int = Field(default=30, ge=2, validation_alias="GATE_MIN_VALIDATION")
    calibration_image: str = Field(default="", validation_alias="CALIBRATION_IMAGE_URI")

    @property
    def inference_image(self) -> str:
        """The image the endpoint's instances can use: the GPU build on GPU instances (ml.g*, ml.p*),
        so that the model runs on CUDA there."""
        family = self.endpoint_instance_type.removeprefix("ml.")
        gpu = family[:1] in ("g", "p") and self.inference_gpu_image
        return self.inference_gpu_image if gpu else self.inference_cpu_image

    def gate_policy(self) -> "GatePolicy":
        from feedback_loop.registry.gate import GatePolicy

        return GatePolicy(min_auroc_gain=self.min_auroc_gain, max_ece_increase=self.max_ece_increase,
                          min_validation=self.min_validation)


@lru_cache(maxsize=1)
def register_settings() -> RegisterFunctionSettings:
    return RegisterFunctionSettings()


class DeployFunctionSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    table_name: str = Field(validation_alias="TABLE_NAME")
    event_bus_name: str = Field(validation_alias="EVENT_BUS_NAME")
    execution_role_arn: str = Field(validation_alias="MODEL_EXECUTION_ROLE_ARN")
    instance_type: str = Field(default="ml.m5.large", validation_alias="ENDPOINT_INSTANCE_TYPE")
    # "update_endpoint" in AWS; the local stack sets "recreate" (its emulator has no UpdateEndpoint)
    endpoint_updates: str = Field(default="update_endpoint", pattern="^(update_endpoint|recreate)$",
                                  validation_alias="ENDPOINT_UPDATES")
    alarm_topic_arn: str = Field(default="", validation_alias="ALARM_TOPIC_ARN")
    data_bucket: str = Field(default="", validation_alias="DATA_BUCKET")  # where a calibrator's map goes

    def setup(self) -> "DeploySetup":
        from feedback_loop.registry.deploy import DeploySetup

        return DeploySetup(execution_role_arn=self.execution_role_arn, instance_type=self.instance_type,
                           bus=self.event_bus_name, alarm_topic_arn=self.alarm_topic_arn, bucket=self.data_bucket)


@lru_cache(maxsize=1)
def deploy_settings() -> DeployFunctionSettings:
    return DeployFunctionSettings()


def clear_cached() -> None:
    """Forgets every function's settings, so the next read takes the environment as it is now. In
    Lambda each container is its own process and reads once; the local stack imports many
    containers into one process, each of which must read its own environment."""
    for cached in (api_settings, authorizer_settings, analysis_settings, retrain_settings, register_settings,
                   deploy_settings, agentcore_settings):
        cached.cache_clear()


class AgentCoreSettings(BaseSettings):
    """The CloudWatch Logs subscription function (template option AgentCoreProject): which project
    the records belong to and how the telemetry maps onto eval records (interop/otlp.Mapping)."""

    model_config = SettingsConfigDict(extra="ignore")

    table_name: str = Field(validation_alias="TABLE_NAME")
    retention_days: int = Field(default=0, ge=0, validation_alias="RETENTION_DAYS")
    eval_dedup_days: int = Field(default=14, ge=1, validation_alias="EVAL_DEDUP_DAYS")
    day_shards: int = Field(default=8, ge=1, le=64, validation_alias="FEEDBACK_DAY_SHARDS")
    eval_log_stream: str = Field(validation_alias="EVAL_LOG_STREAM")
    project: str = Field(min_length=1, validation_alias="AGENTCORE_PROJECT")
    overall: str = Field(default="Builtin.Helpfulness", min_length=1, validation_alias="AGENTCORE_OVERALL_EVALUATION")
    overall_range: str = Field(default="0,1", validation_alias="AGENTCORE_OVERALL_RANGE")
    request_id: str = Field(default="trace", min_length=1, validation_alias="AGENTCORE_REQUEST_ID")
    data_bucket: str = Field(default="", validation_alias="DATA_BUCKET")  # where the calibrator in service is kept


@lru_cache(maxsize=1)
def agentcore_settings() -> AgentCoreSettings:
    return AgentCoreSettings()
