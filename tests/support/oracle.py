"""An independent computation of what visionwatch should report, in plain Python.

It shares no code with visionwatch: it reads the items as a user wrote them.
"""

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def when(item: dict[str, Any]) -> datetime:
    return EPOCH + timedelta(seconds=item["timestamp"])


def first_of_each_id(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as stored: a re-sent inference_id counts once (the first one sent wins)."""
    seen: set[str] = set()
    kept = []
    for item in items:
        if item["inference_id"] not in seen:
            seen.add(item["inference_id"])
            kept.append(item)
    return kept


def stored_in_batches(
    items: list[dict[str, Any]], batch_size: int, resend_window: timedelta | None
) -> list[dict[str, Any]]:
    """Items as stored when sent `batch_size` at a time: the first of each id in a batch;
    then an id stored before is a re-send, whatever its time (`resend_window` None: SQLite),
    or only when stored within the batch's times and `resend_window` either side
    (PostgreSQL, whose ids are unique per week of partitions: docs/architecture.md)."""
    stored: list[dict[str, Any]] = []
    for at in range(0, len(items), batch_size):
        batch = first_of_each_id(items[at : at + batch_size])
        times = [when(item) for item in batch]
        window = resend_window or timedelta(0)
        low, high = min(times) - window, max(times) + window
        for item in batch:
            if not any(
                earlier["inference_id"] == item["inference_id"]
                and (resend_window is None or low <= when(earlier) <= high)
                for earlier in stored
            ):
                stored.append(item)
    return stored


def predictions_of(item: dict[str, Any]) -> list[tuple[str, float]]:
    if item.get("error") is not None:
        return []
    if "top" in item:
        return [(item["top"], item["confidence"])]
    return [(p["class"], p["confidence"]) for p in item.get("predictions", [])]


@dataclass
class Expected:
    requests: int = 0
    errors: int = 0
    confidences: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    classes: Counter[str] = field(default_factory=Counter)
    class_confidences: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @property
    def avg_confidence(self) -> float | None:
        return sum(self.confidences) / len(self.confidences) if self.confidences else None

    @property
    def avg_inference_time(self) -> float | None:
        return sum(self.times) / len(self.times) if self.times else None


def expected(
    items: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    model: str | None = None,
    device: str | None = None,
    as_stored: bool = False,
) -> Expected:
    """What the reads should say of the items sent (or, `as_stored`, of the items as
    stored_in_batches gives them)."""
    result = Expected()
    for item in items if as_stored else first_of_each_id(items):
        if not start <= when(item) < end:
            continue
        if model is not None and item["model_id"] != model:
            continue
        if device is not None and item.get("device_id") != device:
            continue
        result.requests += 1
        if item.get("error") is not None:
            result.errors += 1
        if item.get("time") is not None:
            result.times.append(item["time"])
        for name, confidence in predictions_of(item):
            result.confidences.append(confidence)
            result.classes[name] += 1
            result.class_confidences[name].append(confidence)
    return result


def nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    rank = math.ceil(len(ordered) * percent / 100 - 1e-9)
    return ordered[max(rank, 1) - 1]


def change_pct(current: float | None, previous: float | None) -> float | None:
    if current is None or previous in (None, 0):
        return None
    assert previous is not None
    change = 100 * (current - previous) / previous
    # Past a float's range (a previous mean near 1e-320) the API has no number to write.
    return change if math.isfinite(change) else None
