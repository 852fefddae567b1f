"""The comparison page: two versions of a project, or two periods of one model, side by side."""

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from visionwatch.http.deps import DatabaseDep, clock_of
from visionwatch.http.params import BadParameter, compare_sides
from visionwatch.store import compare as compare_store
from visionwatch.store.compare import CONFIDENCE_BARS, Comparison
from visionwatch.store.stats import Change
from visionwatch.web.auth import UserDep
from visionwatch.web.errors import PageError
from visionwatch.web.params import PRESET_NAMES, page_period, url_with
from visionwatch.web.rendering import change_of, number, percent, render, seconds
from visionwatch.web.snapshot import one_snapshot

router = APIRouter(include_in_schema=False)
# Class rows shown at once: the classes whose share moved most are the ones asked about.
CLASS_ROWS = 50
# Above this PSI a shift is commonly read as real; below 0.1 as none (the alert rules'
# docs use the same reading).
PSI_SHIFT, PSI_STABLE = 0.2, 0.1
# The figures of a side (Summary's attributes), how they are shown, and whether higher is
# better: counts have no better direction (a version may serve fewer cameras); rates do.
FIGURES: tuple[tuple[str, str, Callable[[Any], str], bool | None], ...] = (
    ("requests", "Requests", number, None),
    ("predictions", "Detections", number, None),
    ("error_rate", "Error rate", percent, False),
    ("avg_confidence", "Average confidence", percent, True),
    ("median_confidence", "Median confidence", percent, True),
    ("inference_time_p50", "Inference time p50", seconds, False),
    ("inference_time_p95", "Inference time p95", seconds, False),
    ("inference_time_p99", "Inference time p99", seconds, False),
    ("precision", "Realised precision", percent, True),
)
# The names of a side's own parameters, kept when the period changes.
SIDE_PARAMS = ("a_model_id", "b_model_id", "device_id", "a_start", "a_end")


@router.get("/compare")
@one_snapshot
def compare_page(request: Request, user: UserDep, database: DatabaseDep) -> Response:
    params = request.query_params
    now = clock_of(request)
    page = page_period(params, now)
    workspace = user.workspace.id
    keep = {name: params[name] for name in SIDE_PARAMS if params.get(name)}
    context: dict[str, Any] = {
        "user": user,
        "page": page,
        "presets": PRESET_NAMES,
        "keep": keep,
        "model_names": compare_store.model_names(database, workspace),
        "chosen": {name: params.get(name, "") for name in SIDE_PARAMS},
        "found": None,
    }
    if params.get("a_model_id"):
        try:
            a, b = compare_sides(
                a_model=params.get("a_model_id"),
                b_model=params.get("b_model_id") or None,
                device=params.get("device_id") or None,
                b_period=page.period,
                a_start=params.get("a_start") or None,
                a_end=params.get("a_end") or None,
                now=now,
            )
            found = compare_store.compare(database, workspace, a, b)
        except BadParameter as error:
            raise PageError(400, "This comparison cannot be read", error.message) from None
        except compare_store.UnknownModel as error:
            raise PageError(
                404, "No such model", f"This workspace has no model {error.model!r}."
            ) from None
        context.update(found=found, **_shown(found, page.params()))
    return render(request, "compare.html", context)


def _shown(found: Comparison, period: dict[str, str]) -> dict[str, Any]:
    """What the template draws: rows of figures, the confidence bars as shares of each side,
    the class rows, and a reading of the drift."""
    width = 1 / CONFIDENCE_BARS
    a_shares, b_shares = _shares(found.a.confidence), _shares(found.b.confidence)
    bars = [
        {
            "label": f"{bar * width:.2f}\u2013{(bar + 1) * width:.2f}",
            "a_share": a_shares[bar],
            "b_share": b_shares[bar],
            "a_count": found.a.confidence[bar],
            "b_count": found.b.confidence[bar],
        }
        for bar in range(CONFIDENCE_BARS)
    ]
    tallest = max([*a_shares, *b_shares]) or 1.0
    widest = max((max(row.a_share, row.b_share) for row in found.classes), default=0.0) or 1.0
    return {
        "rows": _figure_rows(found),
        "confidence_bars": bars,
        "tallest_bar": tallest,
        "class_rows": found.classes[:CLASS_ROWS],
        "more_classes": max(0, len(found.classes) - CLASS_ROWS),
        "widest_class": widest,
        "drift_reading": _reading(found.class_psi),
        "confidence_reading": _reading(found.confidence_psi),
        "links": {
            side: url_with(f"/models/{quote(summary.side.model)}", period)
            for side, summary in (("a", found.a), ("b", found.b))
        },
    }


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [count / total if total else 0.0 for count in counts]


def _figure_rows(found: Comparison) -> list[dict[str, Any]]:
    """Each figure of both sides as shown, with B's change against A (coloured by whether
    higher is better)."""
    rows = []
    for key, name, shown, higher_is_better in FIGURES:
        a_value, b_value = getattr(found.a, key), getattr(found.b, key)
        change = change_of(Change(b_value, a_value), bool(higher_is_better))
        rows.append(
            {
                "key": key,
                "name": name,
                "a": shown(a_value),
                "b": shown(b_value),
                "a_value": a_value,
                "b_value": b_value,
                "change": change if higher_is_better is not None else _neutral(change),
            }
        )
    return rows


def _neutral(change: dict[str, Any]) -> dict[str, Any]:
    return {**change, "tone": "neutral"}


def _reading(score: float | None) -> str:
    if score is None:
        return "not known: a side has no predictions"
    if score >= PSI_SHIFT:
        return "a real shift"
    if score >= PSI_STABLE:
        return "a moderate shift"
    return "stable"
