"""Stored inferences as read back, and what asks for them: records, queries, cursors."""

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from visionwatch.db.types import to_micros
from visionwatch.items import MetadataValue, Prediction
from visionwatch.store.stats import Period

MAX_LIMIT = 500
# A list row carries at most this many predictions; the detail has them all.
LIST_PREDICTIONS = 100
# Classes named in a summary, most predicted first.
TOP_CLASSES = 3


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class InferenceRecord:
    """One stored inference as read back: what it was, where, and what it found. Shaping it
    for a reader (the API's JSON, a page) is theirs to do."""

    inference_id: str
    model: str
    device: str | None
    timestamp: datetime
    received_at: datetime
    task: str | None
    inference_time: float | None
    image_width: int | None
    image_height: int | None
    error: str | None
    prediction_count: int
    mean_confidence: float | None
    top_classes: list[str]
    predictions: list[Prediction]
    metadata: dict[str, MetadataValue]
    image_key: str | None
    item: Any = None  # the item as sent: in a detail or an export, not in a list
    pk: int = 0  # its key: the cursor's tie-break

    @property
    def has_image(self) -> bool:
        return self.image_key is not None


@dataclass(frozen=True, slots=True)
class InferenceQuery:
    period: Period
    model: str | None = None
    device: str | None = None
    class_name: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    has_image: bool | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    limit: int = 50
    cursor: str | None = None


def encode_cursor(ts: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{to_micros(ts)}:{pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        micros, pk = base64.urlsafe_b64decode(padded.encode()).decode().split(":")
        return int(micros), int(pk)
    except (ValueError, UnicodeDecodeError):
        raise BadCursor("not a cursor from a previous page") from None


def record(
    *,
    pk: int,
    inference_id: str,
    model: str,
    device: str | None,
    timestamp: datetime,
    received_at: datetime,
    task: str | None,
    inference_time: float | None,
    image_width: int | None,
    image_height: int | None,
    error: str | None,
    predictions: list[Prediction],
    prediction_count: int,
    classes: dict[str, tuple[int, float]],
    metadata: dict[str, MetadataValue],
    image_key: str | None,
) -> InferenceRecord:
    """An InferenceRecord, its mean confidence and top classes from `classes` (class ->
    predictions, sum of their confidences, over all of its predictions)."""
    count = sum(n for n, _ in classes.values())
    mean = sum(total for _, total in classes.values()) / count if count else None
    # Most predicted first; ties by name, so the order is stable.
    ranked = sorted(classes.items(), key=lambda item: (-item[1][0], item[0]))
    return InferenceRecord(
        inference_id=inference_id,
        model=model,
        device=device,
        timestamp=timestamp,
        received_at=received_at,
        task=task,
        inference_time=inference_time,
        image_width=image_width,
        image_height=image_height,
        error=error,
        prediction_count=prediction_count,
        mean_confidence=mean,
        top_classes=[name for name, _ in ranked[:TOP_CLASSES]],
        predictions=predictions,
        metadata=metadata,
        image_key=image_key,
        pk=pk,
    )
