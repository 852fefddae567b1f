"""Dashboard numbers, all read from rollups: stats, models, classes and time series."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, select

from visionwatch.db.engine import Database
from visionwatch.db.schema import devices, models
from visionwatch.histograms import (
    confidence_bin_value,
    percentile_bin,
    time_bin_value,
)
from visionwatch.rollups import NO_CLASS, Delta
from visionwatch.store.rollup_read import (
    Scope,
    class_predictions,
    device_requests,
    percentiles_of,
    sum_rollups,
)
from visionwatch.timeutil import RESOLUTION_STEPS, floor_to


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) on minute boundaries."""

    start: datetime
    end: datetime

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        return self.start, self.end

    def previous(self) -> "Period":
        return Period(self.start - (self.end - self.start), self.start)


@dataclass(frozen=True, slots=True)
class Filters:
    model: str | None = None
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    current: float | None
    previous: float | None

    @property
    def change_pct(self) -> float | None:
        if self.current is None or not self.previous:
            return None
        return 100.0 * (self.current - self.previous) / self.previous


@dataclass(frozen=True, slots=True)
class Stats:
    period: Period
    total_requests: Change
    avg_confidence: Change
    avg_inference_time: Change
    errors: Change
    median_confidence: float | None
    inference_time_p50: float | None
    inference_time_p95: float | None
    inference_time_p99: float | None
    distributions: "Distributions"


@dataclass(frozen=True, slots=True)
class ModelStats:
    name: str
    project: str | None
    version: str | None
    task: str | None
    last_seen: datetime
    total_requests: Change
    avg_confidence: Change
    avg_inference_time: Change
    errors: Change


@dataclass(frozen=True, slots=True)
class ClassStats:
    name: str
    count: int
    share: float
    avg_confidence: float | None


def resolve_scope(conn: Connection, workspace_id: int, filters: Filters) -> Scope | None:
    """The rollup scope of the filters, or None when a named model or device does not exist."""
    scope = Scope(workspace_id=workspace_id)
    if filters.model is not None:
        model_id = conn.execute(
            select(models.c.id).where(
                models.c.workspace_id == workspace_id, models.c.name == filters.model
            )
        ).scalar_one_or_none()
        if model_id is None:
            return None
        scope = Scope(workspace_id, model_id, scope.device_id)
    if filters.device is not None:
        device_id = conn.execute(
            select(devices.c.id).where(
                devices.c.workspace_id == workspace_id, devices.c.name == filters.device
            )
        ).scalar_one_or_none()
        if device_id is None:
            return None
        scope = Scope(workspace_id, scope.model_id, device_id)
    return scope


def _totals(conn: Connection, scope: Scope | None, period: Period, bins: bool) -> Delta:
    if scope is None:
        return Delta()
    return sum_rollups(conn, scope, period.start, period.end, with_bins=bins).get(None, Delta())


def _percentile(
    bins: Mapping[int, int], percent: int, value_of: Callable[[int], float]
) -> float | None:
    index = percentile_bin(bins, percent)
    return None if index is None else value_of(index)


def stats(db: Database, workspace_id: int, filters: Filters, period: Period) -> Stats:
    with db.read_lagging() as conn:
        scope = resolve_scope(conn, workspace_id, filters)
        current = _totals(conn, scope, period, bins=True)
        previous = _totals(conn, scope, period.previous(), bins=False)
    return Stats(
        period=period,
        total_requests=Change(current.requests, previous.requests),
        avg_confidence=Change(current.avg_confidence, previous.avg_confidence),
        avg_inference_time=Change(current.avg_inference_time, previous.avg_inference_time),
        errors=Change(current.errors, previous.errors),
        median_confidence=_percentile(current.confidence_bins, 50, confidence_bin_value),
        inference_time_p50=_percentile(current.time_bins, 50, time_bin_value),
        inference_time_p95=_percentile(current.time_bins, 95, time_bin_value),
        inference_time_p99=_percentile(current.time_bins, 99, time_bin_value),
        distributions=Distributions(dict(current.confidence_bins), dict(current.time_bins)),
    )


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    project: str | None
    task: str | None
    first_seen: datetime
    last_seen: datetime


def find_model(db: Database, workspace_id: int, name: str) -> ModelInfo | None:
    with db.read_lagging() as conn:
        row = conn.execute(
            select(models).where(models.c.workspace_id == workspace_id, models.c.name == name)
        ).one_or_none()
    return (
        None
        if row is None
        else ModelInfo(row.name, row.project, row.task, row.first_seen, row.last_seen)
    )


def model_stats(
    db: Database, workspace_id: int, filters: Filters, period: Period
) -> list[ModelStats]:
    """Every model of the workspace (or the one filtered), busiest first."""
    with db.read_lagging() as conn:
        scope = resolve_scope(conn, workspace_id, filters)
        if scope is None:
            return []
        query = select(models).where(models.c.workspace_id == workspace_id)
        if scope.model_id is not None:
            query = query.where(models.c.id == scope.model_id)
        rows = conn.execute(query).all()
        current = sum_rollups(conn, scope, period.start, period.end, group="model", with_bins=False)
        before = period.previous()
        previous = sum_rollups(
            conn, scope, before.start, before.end, group="model", with_bins=False
        )
    result = []
    for row in rows:
        now, then = current.get(row.id, Delta()), previous.get(row.id, Delta())
        result.append(
            ModelStats(
                name=row.name,
                project=row.project,
                version=row.version,
                task=row.task,
                last_seen=row.last_seen,
                total_requests=Change(now.requests, then.requests),
                avg_confidence=Change(now.avg_confidence, then.avg_confidence),
                avg_inference_time=Change(now.avg_inference_time, then.avg_inference_time),
                errors=Change(now.errors, then.errors),
            )
        )
    result.sort(key=lambda m: (-(m.total_requests.current or 0), m.name))
    return result


def class_stats(
    db: Database, workspace_id: int, filters: Filters, period: Period
) -> list[ClassStats]:
    """Predictions per class, most frequent first; shares sum to 1."""
    with db.read_lagging() as conn:
        scope = resolve_scope(conn, workspace_id, filters)
        if scope is None:
            return []
        per_model = class_predictions(conn, scope, period.start, period.end)
    # Merged across models in the order sum_classes gave: the same sums, to the last bit.
    merged: dict[str, tuple[int, float]] = {}
    for (_, name), (predictions, confidence_sum) in per_model.items():
        if name != NO_CLASS:
            count, total = merged.get(name, (0, 0.0))
            merged[name] = (count + predictions, total + confidence_sum)
    total_predictions = sum(count for count, _ in merged.values())
    result = [
        ClassStats(
            name=name,
            count=count,
            share=count / total_predictions,
            avg_confidence=confidence_sum / count,
        )
        for name, (count, confidence_sum) in merged.items()
        if count
    ]
    result.sort(key=lambda c: (-c.count, c.name))
    return result


@dataclass(frozen=True, slots=True)
class Distributions:
    """Counts per histogram bin over a period (bin index -> count, empty bins left out)."""

    confidence: dict[int, int]
    inference_time: dict[int, int]


def requests_of_devices(
    db: Database, workspace_id: int, period: Period, ids: Mapping[str, int]
) -> dict[str, int]:
    """Inferences per device over the period, of the devices `ids` (name to id, as a page
    of the fleet has them; devices with none are left out)."""
    if not ids:
        return {}
    by_id = {device_id: name for name, device_id in ids.items()}
    with db.read_lagging() as conn:
        counts = device_requests(conn, workspace_id, period.start, period.end, list(by_id))
    return {by_id[device]: count for device, count in counts.items() if device in by_id}


# What a time series may chart (the API's `metric`).
Metric = Literal[
    "requests",
    "avg_confidence",
    "avg_inference_time",
    "errors",
    "error_rate",
    "inference_time_p50",
    "inference_time_p95",
    "inference_time_p99",
]
# Percentiles of inference time per interval come from the rollups' time histograms.
PERCENTILES = {"inference_time_p50": 50, "inference_time_p95": 95, "inference_time_p99": 99}
# The totals of an interval without traffic, shared (never written to).
_NO_TRAFFIC = Delta()


def timeseries(
    db: Database,
    workspace_id: int,
    filters: Filters,
    period: Period,
    metric: str,
    interval: str,
) -> list[tuple[datetime, float | None]]:
    """One point per interval from the one holding `start` to the one before `end`."""
    return series(db, workspace_id, filters, period, (metric,), interval)[metric]


def series(
    db: Database,
    workspace_id: int,
    filters: Filters,
    period: Period,
    metrics: tuple[str, ...],
    interval: str,
) -> dict[str, list[tuple[datetime, float | None]]]:
    """Several metrics' time series from one read of the rollups (and one of the time
    histograms' percentiles, when a metric is one)."""
    step = RESOLUTION_STEPS[interval]
    percents = tuple(sorted({PERCENTILES[metric] for metric in metrics if metric in PERCENTILES}))
    groups: dict[Any, Delta] = {}
    ranked: dict[datetime, dict[int, int]] = {}
    with db.read_lagging() as conn:
        scope = resolve_scope(conn, workspace_id, filters)
        if scope is not None:
            # One read: the percentiles' time histograms come with the sums.
            groups = sum_rollups(
                conn,
                scope,
                period.start,
                period.end,
                group="interval",
                interval=step,
                with_bins="time" if percents else False,
            )
            ranked = percentiles_of(groups, percents) if percents else {}
    found: dict[str, list[tuple[datetime, float | None]]] = {metric: [] for metric in metrics}
    for moment in moments(period, step):
        # One shared empty total for the intervals without traffic: a Delta is two Counters,
        # and one made per interval and metric came to thousands a chart.
        totals, bins = groups.get(moment, _NO_TRAFFIC), ranked.get(moment, {})
        for metric in metrics:
            found[metric].append((moment, _metric(totals, bins, metric)))
    return found


def _metric(totals: Delta, ranked: Mapping[int, int], metric: str) -> float | None:
    """A metric of an interval's totals; a percentile from its bin (`ranked`: percent to
    inference-time bin, empty without timed requests)."""
    if metric == "requests":
        return totals.requests
    if metric == "errors":
        return totals.errors
    if metric == "avg_confidence":
        return totals.avg_confidence
    if metric == "avg_inference_time":
        return totals.avg_inference_time
    if metric == "error_rate":
        return totals.errors / totals.requests if totals.requests else None
    if metric in PERCENTILES:
        index = ranked.get(PERCENTILES[metric])
        return None if index is None else time_bin_value(index)
    raise ValueError(f"unknown metric {metric!r}")


def moments(period: Period, step: timedelta) -> list[datetime]:
    """The starts of the intervals of `step` from the one holding the period's start."""
    found = []
    moment = floor_to(period.start, step)
    while moment < period.end:
        found.append(moment)
        moment += step
    return found


def count_points(period: Period, interval: str) -> int:
    step: timedelta = RESOLUTION_STEPS[interval]
    first = floor_to(period.start, step)
    return -(-(period.end - first) // step)
