"""Pure rollup math: a batch of stored inferences -> additive deltas per bucket.

The same Delta and ClassDelta hold what is read back: sums over buckets.

Deltas are kept per minute, hour and day, per model and device, plus the
same for every device together (device key ALL_DEVICES) so that an
unfiltered dashboard reads one row per model and bucket. Per-class deltas
have the same keys plus the class; only those of every device hold histograms.
Everything is a count or a sum, so a delta is applied by adding it, and buckets
merge by adding them.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from visionwatch.histograms import confidence_bin, time_bin
from visionwatch.items import Inference
from visionwatch.timeutil import RESOLUTION_STEPS, floor_to

ALL_DEVICES = 0
# The histograms (rollup_bins_*) of all devices are also kept for all models, under model 0,
# by the hour and day.
ALL_MODELS = 0
ALL_MODELS_RESOLUTIONS = ("hour", "day")
# Class rollups keep inferences without predictions under this class name.
NO_CLASS = ""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

RollupKey = tuple[str, datetime, int, int]  # resolution, bucket start, model, device
ClassKey = tuple[str, datetime, int, int, str]


class _Averages:
    __slots__ = ()
    predictions: int
    confidence_sum: float
    timed: int
    inference_time_sum: float

    @property
    def avg_confidence(self) -> float | None:
        return self.confidence_sum / self.predictions if self.predictions else None

    @property
    def avg_inference_time(self) -> float | None:
        return self.inference_time_sum / self.timed if self.timed else None


@dataclass(slots=True)
class Delta(_Averages):
    requests: int = 0
    errors: int = 0
    empty: int = 0
    predictions: int = 0
    confidence_sum: float = 0.0
    timed: int = 0
    inference_time_sum: float = 0.0
    confidence_bins: Counter[int] = field(default_factory=Counter)
    time_bins: Counter[int] = field(default_factory=Counter)

    def add(self, other: "Delta") -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.empty += other.empty
        self.predictions += other.predictions
        self.confidence_sum += other.confidence_sum
        self.timed += other.timed
        self.inference_time_sum += other.inference_time_sum
        self.confidence_bins.update(other.confidence_bins)
        self.time_bins.update(other.time_bins)


@dataclass(slots=True)
class ClassDelta(_Averages):
    inferences: int = 0
    predictions: int = 0
    confidence_sum: float = 0.0
    errors: int = 0
    timed: int = 0
    inference_time_sum: float = 0.0
    confidence_bins: Counter[int] = field(default_factory=Counter)

    def add(self, other: "ClassDelta") -> None:
        self.inferences += other.inferences
        self.predictions += other.predictions
        self.confidence_sum += other.confidence_sum
        self.errors += other.errors
        self.timed += other.timed
        self.inference_time_sum += other.inference_time_sum
        self.confidence_bins.update(other.confidence_bins)


@dataclass(slots=True)
class Deltas:
    rollups: dict[RollupKey, Delta]
    classes: dict[ClassKey, ClassDelta]


def compute_deltas(rows: Iterable[tuple[Inference, int, int | None]]) -> Deltas:
    """Deltas for (inference, model key, device key or None) triples."""
    minute_step = RESOLUTION_STEPS["minute"]
    # First per minute and actual device, then folded into the coarser keys:
    # a batch usually spans few minutes, so folding is cheaper than
    # touching six keys per inference.
    minutes: dict[tuple[datetime, int, int], Delta] = {}
    minute_classes: dict[tuple[datetime, int, int, str], ClassDelta] = {}
    for inference, model, device in rows:
        bucket = floor_to(inference.timestamp, minute_step)
        device_key = ALL_DEVICES if device is None else device
        delta = minutes.get((bucket, model, device_key))
        if delta is None:
            delta = minutes[(bucket, model, device_key)] = Delta()
        _add_inference(delta, inference)
        # Each class the inference predicted counts it once; none counts it under NO_CLASS.
        seen: dict[str, ClassDelta] = {}
        for prediction in inference.predictions:
            key = (bucket, model, device_key, prediction.class_name)
            class_delta = minute_classes.get(key)
            if class_delta is None:
                class_delta = minute_classes[key] = ClassDelta()
            class_delta.predictions += 1
            class_delta.confidence_sum += prediction.confidence
            bins = class_delta.confidence_bins
            index = confidence_bin(prediction.confidence)
            bins[index] = bins.get(index, 0) + 1
            seen[prediction.class_name] = class_delta
        if not seen:
            key = (bucket, model, device_key, NO_CLASS)
            class_delta = minute_classes.get(key)
            if class_delta is None:
                class_delta = minute_classes[key] = ClassDelta()
            class_delta.errors += inference.error is not None
            seen[NO_CLASS] = class_delta
        for class_delta in seen.values():
            class_delta.inferences += 1
            if inference.inference_time is not None:
                class_delta.timed += 1
                class_delta.inference_time_sum += inference.inference_time
    rollups: dict[RollupKey, Delta] = {}
    for (bucket, model, device_key), delta in minutes.items():
        for rollup_key in _fold_keys(bucket, model, device_key):
            rollups.setdefault(rollup_key, Delta()).add(delta)
    classes: dict[ClassKey, ClassDelta] = {}
    for (bucket, model, device_key, name), class_delta in minute_classes.items():
        for resolution, coarse, m, d in _fold_keys(bucket, model, device_key):
            target = classes.setdefault((resolution, coarse, m, d, name), ClassDelta())
            target.add(class_delta)
            if d != ALL_DEVICES:
                # A device's class rows keep counts and sums only: no read asks for one
                # device's class percentiles (docs/architecture.md).
                target.confidence_bins.clear()
    return Deltas(rollups=rollups, classes=classes)


def _add_inference(delta: Delta, inference: Inference) -> None:
    delta.requests += 1
    if inference.error is not None:
        delta.errors += 1
    elif not inference.predictions:
        delta.empty += 1
    bins = delta.confidence_bins
    for prediction in inference.predictions:
        delta.predictions += 1
        delta.confidence_sum += prediction.confidence
        index = confidence_bin(prediction.confidence)
        bins[index] = bins.get(index, 0) + 1
    if inference.inference_time is not None:
        delta.timed += 1
        delta.inference_time_sum += inference.inference_time
        index = time_bin(inference.inference_time)
        delta.time_bins[index] = delta.time_bins.get(index, 0) + 1


def _fold_keys(minute: datetime, model: int, device_key: int) -> list[RollupKey]:
    device_keys = (device_key,) if device_key == ALL_DEVICES else (device_key, ALL_DEVICES)
    return [
        (resolution, floor_to(minute, step), model, key)
        for resolution, step in RESOLUTION_STEPS.items()
        for key in device_keys
    ]


@dataclass(slots=True)
class MinuteRows:
    """A batch's rollups by the minute, keyed by names (the aggregator finds their ids):
    what `rollup_queue.deltas` holds, the rows of the aggregator's scratch tables.

    - sums: (minute, model, device, requests, errors, empty, predictions, confidence_sum,
      timed, inference_time_sum)
    - bins: (minute, model, device, bin, count), confidence bins below TIME_BIN_BASE (100)
      and inference-time bins from it
    - classes: (minute, model, device, class, inferences, predictions, confidence_sum,
      errors, timed, inference_time_sum)
    - class_bins: (minute, model, class, bin, count), for all devices
    """

    sums: list[tuple[Any, ...]] = field(default_factory=list)
    bins: list[tuple[Any, ...]] = field(default_factory=list)
    classes: list[tuple[Any, ...]] = field(default_factory=list)
    class_bins: list[tuple[Any, ...]] = field(default_factory=list)

    def as_json(self) -> dict[str, list[tuple[Any, ...]]]:
        return {"s": self.sums, "b": self.bins, "c": self.classes, "cb": self.class_bins}


# Confidence bins share the bins' column with inference-time bins from this one on.
TIME_BIN_BASE = 100


def minute_rows(batch: Iterable[Inference]) -> MinuteRows:
    """The minute rollups of stored inferences, exactly as `compute_deltas` counts them."""
    minute_micros = 60_000_000
    sums: dict[tuple[int, str, str | None], list[Any]] = {}
    bins: Counter[tuple[int, str, str | None, int]] = Counter()
    classes: dict[tuple[int, str, str | None, str], list[Any]] = {}
    class_bins: Counter[tuple[int, str, str, int]] = Counter()
    for inference in batch:
        micros = (inference.timestamp - _EPOCH) // _MICROSECOND
        minute = micros - micros % minute_micros
        key = (minute, inference.model, inference.device)
        total = sums.get(key)
        if total is None:
            total = sums[key] = [0, 0, 0, 0, 0.0, 0, 0.0]
        timed = inference.inference_time is not None
        total[0] += 1
        if inference.error is not None:
            total[1] += 1
        elif not inference.predictions:
            total[2] += 1
        if timed:
            assert inference.inference_time is not None
            total[5] += 1
            total[6] += inference.inference_time
            bins[(*key, TIME_BIN_BASE + time_bin(inference.inference_time))] += 1
        seen: set[str] = set()
        for prediction in inference.predictions:
            total[3] += 1
            total[4] += prediction.confidence
            index = confidence_bin(prediction.confidence)
            bins[(*key, index)] += 1
            name = prediction.class_name
            class_bins[(minute, inference.model, name, index)] += 1
            row = classes.get((*key, name))
            if row is None:
                row = classes[(*key, name)] = [0, 0, 0.0, 0, 0, 0.0]
            row[1] += 1
            row[2] += prediction.confidence
            seen.add(name)
        if not seen:  # counted under NO_CLASS
            seen.add(NO_CLASS)
            row = classes.get((*key, NO_CLASS))
            if row is None:
                row = classes[(*key, NO_CLASS)] = [0, 0, 0.0, 0, 0, 0.0]
            row[3] += inference.error is not None
        for name in seen:
            row = classes[(*key, name)]
            row[0] += 1
            if timed:
                row[4] += 1
                row[5] += inference.inference_time
    return MinuteRows(
        sums=[(*key, *values) for key, values in sums.items()],
        bins=[(*key, count) for key, count in bins.items()],
        classes=[(*key, *values) for key, values in classes.items()],
        class_bins=[(*key, count) for key, count in class_bins.items()],
    )
