"""The rules a workspace defines, as the API's JSON and the pages' forms both send them:
alert rules and capture rules, checked here, then made the domain's own values."""

import math
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from visionwatch.alert_rules import DRIFT, RELATIVE, Condition, Metric, Rule, Webhook
from visionwatch.capture import WORKSPACE, CaptureRule
from visionwatch.items import ClassName, DeviceName, FieldName, MetadataValueIn, ModelName

Seconds = Annotated[int, Field(ge=60, le=90 * 86400)]
EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,255}$"
Fraction = Annotated[float, Field(ge=0, le=1)]


class WebhookIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    url: str = Field(max_length=1024, pattern=r"^https?://\S+$")
    kind: Literal["json", "slack"] = "json"


class AlertRuleIn(BaseModel):
    """An alert rule. Metrics are read over `window_seconds` up to now; relative conditions and
    drift compare with the `baseline_seconds` before the window."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=200)
    metric: Metric
    condition: Condition
    threshold: float = Field(
        description="a value; a percent for drops_by and rises_by; seconds for device_silence"
    )
    model_id: ModelName | None = Field(default=None, description="one model version")
    project: ModelName | None = Field(default=None, description="every version of a project")
    class_: ClassName | None = Field(default=None, alias="class")
    device_id: DeviceName | None = None
    window_seconds: Seconds = 1800
    baseline_seconds: Seconds = 86400
    min_samples: int = Field(default=10, ge=0, le=1_000_000)
    pending_seconds: int = Field(default=0, ge=0, le=86400)
    repeat_seconds: int = Field(default=3600, ge=0, le=30 * 86400)
    max_per_hour: int = Field(default=5, ge=0, le=1000)
    max_per_day: int = Field(default=20, ge=0, le=10000)
    recipients: list[Annotated[str, Field(pattern=EMAIL, max_length=320)]] = Field(
        default_factory=list, max_length=50
    )
    webhooks: list[WebhookIn] = Field(default_factory=list, max_length=20)

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.model_id is not None and self.project is not None:
            raise ValueError("name a model_id or a project, not both")
        if self.metric == "class_share" and self.class_ is None:
            raise ValueError("class_share needs a class")
        if self.class_ is not None and self.metric not in (
            "avg_confidence",
            "class_share",
            "precision",
        ):
            raise ValueError("a class applies to avg_confidence, class_share and precision only")
        if self.metric == "device_silence" and self.device_id is None:
            raise ValueError("device_silence needs a device_id")
        if (self.metric == "device_silence" or self.metric in DRIFT) and (
            self.condition != "above"
        ):
            raise ValueError(f"{self.metric} fires when it is above a threshold")
        if self.condition in RELATIVE and not 0 < self.threshold <= 1000:
            raise ValueError("a change is a percent between 0 and 1000")
        return self

    def rule(self) -> Rule:
        return Rule(
            name=self.name,
            metric=self.metric,
            condition=self.condition,
            threshold=self.threshold,
            model=self.model_id,
            project=self.project,
            class_name=self.class_,
            device=self.device_id,
            window_seconds=self.window_seconds,
            baseline_seconds=self.baseline_seconds,
            min_samples=self.min_samples,
            pending_seconds=self.pending_seconds,
            repeat_seconds=self.repeat_seconds,
            max_per_hour=self.max_per_hour,
            max_per_day=self.max_per_day,
            recipients=tuple(self.recipients),
            webhooks=tuple(Webhook(w.url, w.kind) for w in self.webhooks),
        )


class CaptureRuleIn(BaseModel):
    """Keep an inference's image when any reason holds; `model_id` null: every model."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    model_id: ModelName | None = None
    sample_rate: Fraction | None = Field(default=None, description="keep this random fraction")
    confidence_min: Fraction | None = Field(
        default=None, description="keep when a prediction's confidence is at least this..."
    )
    confidence_max: Fraction | None = Field(default=None, description="...and at most this")
    classes: list[ClassName] = Field(
        default_factory=list, max_length=1000, description="keep when a class is predicted"
    )
    metadata: dict[FieldName, MetadataValueIn] = Field(
        default_factory=dict, max_length=64, description="keep when every field matches"
    )
    daily_cap: int | None = Field(
        default=None, ge=0, le=10_000_000, description="images kept per model and UTC day"
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _band_in_order(self) -> Self:
        low, high = self.confidence_min, self.confidence_max
        if low is not None and high is not None and low > high:
            raise ValueError("confidence_min must not exceed confidence_max")
        return self

    def rule(self) -> CaptureRule:
        return CaptureRule(
            model=self.model_id or WORKSPACE,
            sample_rate=self.sample_rate,
            confidence_min=self.confidence_min,
            confidence_max=self.confidence_max,
            classes=frozenset(self.classes),
            metadata=dict(self.metadata),
            daily_cap=self.daily_cap,
            enabled=self.enabled,
        )
