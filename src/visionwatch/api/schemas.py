"""Response shapes of the read API, for the OpenAPI document."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ChangeOut(BaseModel):
    current: float | None
    previous: float | None
    change_pct: float | None = Field(
        description="100*(current-previous)/previous; null if previous is 0 or null"
    )


class StatsOut(BaseModel):
    start: datetime
    end: datetime
    previous_start: datetime
    previous_end: datetime
    total_requests: ChangeOut
    avg_confidence: ChangeOut
    avg_inference_time: ChangeOut
    errors: ChangeOut
    median_confidence: float | None
    inference_time_p50: float | None
    inference_time_p95: float | None
    inference_time_p99: float | None


class ModelOut(BaseModel):
    model_id: str
    project: str | None
    version: str | None
    task: str | None
    last_seen: datetime
    total_requests: ChangeOut
    avg_confidence: ChangeOut
    avg_inference_time: ChangeOut
    errors: ChangeOut


class ModelsOut(BaseModel):
    start: datetime
    end: datetime
    models: list[ModelOut]


class ClassOut(BaseModel):
    class_: str = Field(alias="class")
    count: int
    share: float
    avg_confidence: float | None


class ClassesOut(BaseModel):
    start: datetime
    end: datetime
    classes: list[ClassOut]


class PointOut(BaseModel):
    t: datetime
    value: float | None


class TimeseriesOut(BaseModel):
    start: datetime
    end: datetime
    metric: str
    interval: str
    points: list[PointOut]


class InferenceOut(BaseModel):
    inference_id: str
    model_id: str
    device_id: str | None
    timestamp: datetime
    received_at: datetime
    task: str | None
    inference_time: float | None
    image: dict[str, int | None] | None
    error: str | None
    prediction_count: int
    mean_confidence: float | None = Field(description="over all of its predictions")
    top_classes: list[str] = Field(description="its most predicted classes, at most 3")
    predictions: list[dict[str, Any]]
    metadata: dict[str, str | int | float | bool]
    has_image: bool
    image_url: str | None


class InferenceDetailOut(InferenceOut):
    item: dict[str, Any] = Field(description="the item as it was sent")


class InferencesOut(BaseModel):
    inferences: list[InferenceOut]
    next_cursor: str | None


class DeviceOut(BaseModel):
    device_id: str
    status: str = Field(description="online or offline")
    first_seen: datetime
    last_seen: datetime
    version: str | None
    hostname: str | None
    tags: list[str]
    info: dict[str, str] = Field(description="system info and deployment type, when reported")


class DevicesOut(BaseModel):
    devices: list[DeviceOut]
    next_cursor: str | None
    total: int = Field(description="devices matching the filters")
    offline: int = Field(description="of those, offline")


class VerdictsOut(BaseModel):
    correct: int
    incorrect: int
    inconclusive: int
    judged: int
    precision: float | None = Field(description="correct / judged; null with no verdicts")
    interval: list[float] | None = Field(description="Wilson's 95 % interval of the precision")


class CompareSideOut(BaseModel):
    model_id: str
    device_id: str | None
    start: datetime
    end: datetime
    requests: int
    errors: int
    error_rate: float | None
    predictions: int
    avg_confidence: float | None
    median_confidence: float | None
    avg_inference_time: float | None
    inference_time_p50: float | None
    inference_time_p95: float | None
    inference_time_p99: float | None
    confidence_histogram: list[int] = Field(
        description="predictions per bar of 0.05 confidence, from [0, 0.05) up"
    )
    precision: VerdictsOut


class CompareClassOut(BaseModel):
    class_: str = Field(alias="class")
    a_count: int
    b_count: int
    a_share: float
    b_share: float


class DriftOut(BaseModel):
    class_psi: float | None
    class_js: float | None
    confidence_psi: float | None
    confidence_js: float | None


class CompareOut(BaseModel):
    a: CompareSideOut
    b: CompareSideOut
    drift: DriftOut = Field(description="side B against side A; null when a side is empty")
    classes: list[CompareClassOut]
