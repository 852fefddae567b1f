"""Two versions of a project, or two periods of one model, side by side (scope read)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from visionwatch.api.deps import PeriodDep, ReadKey
from visionwatch.api.errors import AUTH_ERRORS, VALIDATION_ERRORS, InvalidParams
from visionwatch.api.feedback import verdict_figures
from visionwatch.api.schemas import CompareOut
from visionwatch.http.deps import DatabaseDep, NowDep
from visionwatch.http.params import BadParameter, compare_sides
from visionwatch.http.responses import JSON
from visionwatch.store import compare as store
from visionwatch.store.compare import Comparison, Summary

router = APIRouter(prefix="/api/v1", tags=["read"])
Model = Annotated[str | None, Query(max_length=256)]
Moment = Annotated[str | None, Query(description="ISO 8601 or Unix seconds")]


@router.get(
    "/compare",
    response_model=CompareOut,
    responses={**AUTH_ERRORS, **VALIDATION_ERRORS},
    summary="Two versions or two periods side by side",
)
def compare(
    key: ReadKey,
    database: DatabaseDep,
    period: PeriodDep,
    now: NowDep,
    a_model_id: Model = None,
    b_model_id: Annotated[str | None, Query(max_length=256, description="default: A's")] = None,
    device_id: Model = None,
    a_start: Moment = None,
    a_end: Moment = None,
) -> JSON:
    """Side B is `b_model_id` over `start`/`end` (default: the last 7 days). Side A is
    `a_model_id` over `a_start`/`a_end`; without them, over B's period when the models
    differ, and over the period just before when they are one model. Drift scores (PSI and
    Jensen-Shannon distance, as the alert rules compute them) read B against A."""
    try:
        a, b = compare_sides(
            a_model=a_model_id,
            b_model=b_model_id,
            device=device_id,
            b_period=period,
            a_start=a_start,
            a_end=a_end,
            now=now,
        )
        found = store.compare(database, key.workspace.id, a, b)
    except BadParameter as error:
        raise InvalidParams.one(error.parameter, error.message) from None
    except store.UnknownModel as error:
        # The name is the caller's own; not echoing it keeps answers about other
        # workspaces' models identical to answers about no model at all.
        raise InvalidParams.one(
            f"{error.side}_model_id", "no such model in this workspace"
        ) from None
    return JSON(comparison_body(found))


def comparison_body(found: Comparison) -> dict[str, Any]:
    return {
        "a": _side(found.a),
        "b": _side(found.b),
        "drift": {
            "class_psi": found.class_psi,
            "class_js": found.class_js,
            "confidence_psi": found.confidence_psi,
            "confidence_js": found.confidence_js,
        },
        "classes": [
            {
                "class": row.name,
                "a_count": row.a_count,
                "b_count": row.b_count,
                "a_share": row.a_share,
                "b_share": row.b_share,
            }
            for row in found.classes
        ],
    }


def _side(summary: Summary) -> dict[str, Any]:
    side = summary.side
    return {
        "model_id": side.model,
        "device_id": side.device,
        "start": side.period.start,
        "end": side.period.end,
        "requests": summary.requests,
        "errors": summary.errors,
        "error_rate": summary.error_rate,
        "predictions": summary.predictions,
        "avg_confidence": summary.avg_confidence,
        "median_confidence": summary.median_confidence,
        "avg_inference_time": summary.avg_inference_time,
        "inference_time_p50": summary.inference_time_p50,
        "inference_time_p95": summary.inference_time_p95,
        "inference_time_p99": summary.inference_time_p99,
        "confidence_histogram": summary.confidence,
        "precision": verdict_figures(summary.verdicts),
    }
