"""Dashboard numbers (scope read): stats, models, classes, timeseries. All from rollups."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from visionwatch.api.deps import FiltersDep, PeriodDep, ReadKey
from visionwatch.api.errors import AUTH_ERRORS, VALIDATION_ERRORS, InvalidParams
from visionwatch.api.schemas import ClassesOut, ModelsOut, StatsOut, TimeseriesOut
from visionwatch.http.deps import DatabaseDep
from visionwatch.http.responses import JSON
from visionwatch.store import stats as store
from visionwatch.store.stats import Change, Period

router = APIRouter(prefix="/api/v1", tags=["read"])
ERRORS = {**AUTH_ERRORS, **VALIDATION_ERRORS}
MAX_POINTS = 10_000


def change(value: Change) -> dict[str, Any]:
    return {"current": value.current, "previous": value.previous, "change_pct": value.change_pct}


def period_fields(period: Period) -> dict[str, Any]:
    return {"start": period.start, "end": period.end}


@router.get("/stats", response_model=StatsOut, responses=ERRORS, summary="Headline numbers")
def get_stats(key: ReadKey, database: DatabaseDep, period: PeriodDep, filters: FiltersDep) -> JSON:
    """Totals of the period and of the previous one of equal length."""
    result = store.stats(database, key.workspace.id, filters, period)
    before = period.previous()
    return JSON(
        {
            **period_fields(period),
            "previous_start": before.start,
            "previous_end": before.end,
            "total_requests": change(result.total_requests),
            "avg_confidence": change(result.avg_confidence),
            "avg_inference_time": change(result.avg_inference_time),
            "errors": change(result.errors),
            "median_confidence": result.median_confidence,
            "inference_time_p50": result.inference_time_p50,
            "inference_time_p95": result.inference_time_p95,
            "inference_time_p99": result.inference_time_p99,
        }
    )


@router.get(
    "/models", response_model=ModelsOut, responses=ERRORS, summary="Models and their numbers"
)
def get_models(key: ReadKey, database: DatabaseDep, period: PeriodDep, filters: FiltersDep) -> JSON:
    found = store.model_stats(database, key.workspace.id, filters, period)
    return JSON(
        {
            **period_fields(period),
            "models": [
                {
                    "model_id": m.name,
                    "project": m.project,
                    "version": m.version,
                    "task": m.task,
                    "last_seen": m.last_seen,
                    "total_requests": change(m.total_requests),
                    "avg_confidence": change(m.avg_confidence),
                    "avg_inference_time": change(m.avg_inference_time),
                    "errors": change(m.errors),
                }
                for m in found
            ],
        }
    )


@router.get(
    "/classes", response_model=ClassesOut, responses=ERRORS, summary="Predictions per class"
)
def get_classes(
    key: ReadKey, database: DatabaseDep, period: PeriodDep, filters: FiltersDep
) -> JSON:
    found = store.class_stats(database, key.workspace.id, filters, period)
    return JSON(
        {
            **period_fields(period),
            "classes": [
                {
                    "class": c.name,
                    "count": c.count,
                    "share": c.share,
                    "avg_confidence": c.avg_confidence,
                }
                for c in found
            ],
        }
    )


@router.get(
    "/timeseries", response_model=TimeseriesOut, responses=ERRORS, summary="A metric over time"
)
def get_timeseries(
    key: ReadKey,
    database: DatabaseDep,
    period: PeriodDep,
    filters: FiltersDep,
    metric: Annotated[store.Metric, Query()] = "requests",
    interval: Annotated[Literal["minute", "hour", "day"], Query()] = "hour",
) -> JSON:
    """One point per interval; counts are 0 and averages null where nothing happened."""
    points = store.count_points(period, interval)
    if points > MAX_POINTS:
        raise InvalidParams.one(
            "interval", f"{points} points exceed {MAX_POINTS}: choose a longer interval"
        )
    series = store.timeseries(database, key.workspace.id, filters, period, metric, interval)
    return JSON(
        {
            **period_fields(period),
            "metric": metric,
            "interval": interval,
            "points": [{"t": t, "value": value} for t, value in series],
        }
    )
