"""The dashboard's pages: the workspace, a model, the inferences table and one inference."""

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from visionwatch.db.engine import Database
from visionwatch.histograms import CONFIDENCE_BINS, TIME_BINS, time_bin_lower_edge
from visionwatch.http.deps import DatabaseDep, SettingsDep, clock_of
from visionwatch.http.downloads import image_response
from visionwatch.http.inferences import inference_json
from visionwatch.store import alerts as alert_store
from visionwatch.store import chart_marks
from visionwatch.store import devices as device_store
from visionwatch.store import feedback as feedback_store
from visionwatch.store import images as image_store
from visionwatch.store import inferences as inference_store
from visionwatch.store import stats as stats_store
from visionwatch.store.chart_marks import Scope as MarkScope
from visionwatch.store.inferences import BadCursor, InferenceQuery, InferenceRecord
from visionwatch.store.stats import Distributions, Filters, Period
from visionwatch.timeutil import RESOLUTION_STEPS
from visionwatch.verdicts import NAMES, Verdicts
from visionwatch.web.auth import UserDep
from visionwatch.web.drawing import drawing
from visionwatch.web.errors import PageError
from visionwatch.web.feedback import inference_path
from visionwatch.web.params import (
    PRESET_NAMES,
    chart_interval,
    filter_params,
    inference_query,
    page_period,
    url_with,
)
from visionwatch.web.rendering import percent, plain, render, seconds, when_exact

router = APIRouter(include_in_schema=False)
RECENT = 20
PAGE_SIZE = 50
# Confidence histograms show 20 bars of 0.05 (five rollup bins each).
CONFIDENCE_BARS = 20
SEARCH_PERIOD = "30d"
# The charts' columns (series-data's names) and the metrics they are read from.
CHART_COLUMNS = {
    "requests": "requests",
    "errors": "errors",
    "confidence": "avg_confidence",
    "p50": "inference_time_p50",
    "p95": "inference_time_p95",
    "p99": "inference_time_p99",
    "error_rate": "error_rate",
}
CHART_METRICS = tuple(CHART_COLUMNS.values())


@router.get("/")
def workspace_page(
    request: Request, user: UserDep, database: DatabaseDep, settings: SettingsDep
) -> Response:
    page = page_period(request.query_params, clock_of(request))
    workspace = user.workspace.id
    models = stats_store.model_stats(database, workspace, Filters(), page.period)
    now = clock_of(request)
    devices = device_store.list_devices(
        database, workspace, now, timedelta(seconds=settings.device_offline_after)
    )
    context: dict[str, Any] = {
        "user": user,
        "page": page,
        "presets": PRESET_NAMES,
        "models": models,
        "devices": devices,
        "empty": not models,
        "rules": alert_store.list_rules(database, workspace),
        "now": request.app.state.clock(),
    }
    if models:
        records, _ = inference_store.list_inferences(
            database, workspace, InferenceQuery(period=page.period, limit=RECENT)
        )
        recent = [_shown(record) for record in records]
        context.update(
            precision=feedback_store.precision(
                database, workspace, Filters(), page.period, group="model"
            ),
            stats=stats_store.stats(database, workspace, Filters(), page.period),
            series=_series(database, workspace, Filters(), page.period, MarkScope()),
            recent=recent,
            device_requests=stats_store.requests_by_device(database, workspace, page.period),
        )
    return render(request, "workspace.html", context)


@router.get("/models/{model_id:path}")
def model_page(request: Request, model_id: str, user: UserDep, database: DatabaseDep) -> Response:
    page = page_period(request.query_params, clock_of(request))
    workspace = user.workspace.id
    filters = Filters(model=model_id)
    found = stats_store.find_model(database, workspace, model_id)
    if found is None:
        raise PageError(404, "No such model", f"This workspace has no model {model_id!r}.")
    classes = stats_store.class_stats(database, workspace, filters, page.period)
    stats = stats_store.stats(database, workspace, filters, page.period)
    verdicts = feedback_store.precision(database, workspace, filters, page.period)
    by_class = feedback_store.precision(database, workspace, filters, page.period, group="class")
    context = {
        "user": user,
        "page": page,
        "presets": PRESET_NAMES,
        "model": found,
        "stats": stats,
        # What operators saw, beside what the model believed (its average confidence).
        "precision": verdicts.get(None, Verdicts()),
        "class_precision": by_class,
        "series": _series(
            database,
            workspace,
            filters,
            page.period,
            MarkScope(model=found.name, project=found.project),
            with_precision=True,
        ),
        "classes": classes,
        "max_share": max((c.share for c in classes), default=0.0),
        "confidence_bars": _confidence_bars(stats.distributions),
        "time_bars": _time_bars(stats.distributions),
        "inferences_url": url_with("/inferences", {"model_id": model_id}, page.params()),
    }
    return render(request, "model.html", context)


@router.get("/inferences")
def inferences_page(request: Request, user: UserDep, database: DatabaseDep) -> Response:
    page = page_period(request.query_params, clock_of(request))
    query = inference_query(request.query_params, page.period, limit=PAGE_SIZE)
    try:
        records, next_cursor = inference_store.list_inferences(database, user.workspace.id, query)
    except BadCursor:
        raise PageError(400, "Bad page link", "This link to a next page is broken.") from None
    rows = [_shown(record) for record in records]
    fields = sorted({name for row in rows for name in row["metadata"]})
    filters = filter_params(query)
    here = {**filters, **page.params()}
    context = {
        "user": user,
        "page": page,
        "presets": PRESET_NAMES,
        "query": query,
        "rows": rows,
        "fields": fields,
        "filters": filters,
        "here": here,
        "next_url": url_with("/inferences", here, {"cursor": next_cursor}) if next_cursor else None,
        "first_url": url_with("/inferences", here) if query.cursor else None,
        "csv_url": url_with("/inferences.csv", here),
        "series_url": url_with("/inferences.series", here),
        "interval": chart_interval(page.period),
        "jsonl_url": url_with("/inferences.jsonl", here),
        "dataset_urls": {
            name: url_with("/dataset.zip", here, {"format": fmt})
            for name, fmt in (("COCO", "coco"), ("YOLO", "yolo"), ("JSON Lines", "jsonl"))
        },
    }
    return render(request, "inferences.html", context)


@router.get("/images/{inference_id:path}")
def image(request: Request, inference_id: str, user: UserDep, database: DatabaseDep) -> Response:
    key = image_store.image_key(database, user.workspace.id, inference_id)
    return image_response(request.app.state.blobs, key, thumbnail=False)


@router.get("/thumbnails/{inference_id:path}")
def thumbnail(
    request: Request, inference_id: str, user: UserDep, database: DatabaseDep
) -> Response:
    key = image_store.image_key(database, user.workspace.id, inference_id)
    return image_response(request.app.state.blobs, key, thumbnail=True)


@router.get("/inferences/{inference_id:path}")
def inference_page(
    request: Request, inference_id: str, user: UserDep, database: DatabaseDep
) -> Response:
    record = inference_store.get_inference(database, user.workspace.id, inference_id)
    if record is None:
        raise PageError(
            404, "No such inference", f"This workspace has no inference {inference_id!r}."
        )
    found = _shown(record, with_item=True)
    given = feedback_store.verdict_on(database, user.workspace.id, inference_id)
    context = {
        "user": user,
        "inference": found,
        "drawing": _drawing(found),
        "fields": _fields(found),
        "verdict": given,
        "verdicts": NAMES,
        "feedback_url": inference_path(inference_id) + "/feedback",
        "predicted_classes": sorted({str(p["class"]) for p in found["predictions"]}),
    }
    return render(request, "inference.html", context)


def _series(
    database: Database,
    workspace: int,
    filters: Filters,
    period: Period,
    marks: MarkScope,
    with_precision: bool = False,
) -> dict[str, Any]:
    """The charts' data, as uPlot wants it (columns of one time axis): requests, errors,
    average confidence, inference-time percentiles and error rate per interval; with the
    realised precision of the inferences operators judged in each; and what to mark on
    them (alert rules firing, new model versions)."""
    interval = chart_interval(period)
    found = stats_store.series(database, workspace, filters, period, CHART_METRICS, interval)
    moments = [moment for moment, _ in found["requests"]]
    series: dict[str, Any] = {
        "interval": interval,
        # The x axis spans the period: the last bucket's points stand at its start, and a
        # mark in it (an alert that fired ten minutes ago) still shows.
        "start": int(period.start.timestamp()),
        "end": int(period.end.timestamp()),
        "t": [int(moment.timestamp()) for moment in moments],
        **{name: [value for _, value in found[metric]] for name, metric in CHART_COLUMNS.items()},
    }
    if with_precision:
        judged = feedback_store.precision(
            database, workspace, filters, period, group="hour", step=RESOLUTION_STEPS[interval]
        )
        series["precision"] = [
            judged[moment].precision if moment in judged else None for moment in moments
        ]
    series["marks"] = _marks(database, workspace, marks, period)
    return series


def _marks(database: Database, workspace: int, scope: MarkScope, period: Period) -> list[Any]:
    """Alert spans and deploys, in Unix seconds, each with the page it links to."""
    shown: list[dict[str, Any]] = [
        {
            "kind": "alert",
            "rule_id": span.rule_id,
            "name": span.name,
            "metric": span.metric,
            "start": int(span.start.timestamp()),
            "end": None if span.end is None else int(span.end.timestamp()),
            "url": f"/alerts/{span.rule_id}",
        }
        for span in chart_marks.alert_spans(database, workspace, scope, period)
    ]
    shown += [
        {
            "kind": "deploy",
            "model": deploy.model,
            "at": int(deploy.at.timestamp()),
            "url": f"/models/{quote(deploy.model)}",
        }
        for deploy in chart_marks.deploys(database, workspace, scope, period)
    ]
    return shown


def _confidence_bars(shown: Distributions) -> list[dict[str, Any]]:
    width = CONFIDENCE_BINS // CONFIDENCE_BARS
    counts = [
        sum(shown.confidence.get(index, 0) for index in range(bar * width, (bar + 1) * width))
        for bar in range(CONFIDENCE_BARS)
    ]
    return _bars(
        counts,
        [
            f"{bar * width / 100:.2f}\u2013{(bar + 1) * width / 100:.2f}"
            for bar in range(CONFIDENCE_BARS)
        ],
    )


def _time_bars(shown: Distributions) -> list[dict[str, Any]]:
    used = [index for index, count in shown.inference_time.items() if count]
    if not used:
        return []
    first, last = min(used), max(used)
    indexes = range(first, last + 1)
    labels = [_time_range(index) for index in indexes]
    return _bars([shown.inference_time.get(index, 0) for index in indexes], labels)


def _time_range(index: int) -> str:
    low = time_bin_lower_edge(index)
    if index == TIME_BINS - 1:
        return f"≥ {low * 1000:.0f} ms"
    high = time_bin_lower_edge(index + 1)
    return f"{low * 1000:.3g}\u2013{high * 1000:.3g} ms"


def _bars(counts: list[int], labels: list[str]) -> list[dict[str, Any]]:
    tallest = max(counts, default=0) or 1
    return [
        {"label": label, "count": count, "height": round(100 * count / tallest, 1)}
        for label, count in zip(labels, counts, strict=True)
    ]


def _shown(record: InferenceRecord, with_item: bool = False) -> dict[str, Any]:
    """An inference as the API writes it, its image at the dashboard's own route (the
    signed-in user's cookie, not an API key)."""
    image_url = f"/images/{quote(record.inference_id, safe='')}"
    return inference_json(record, image_url, with_item=with_item)


def _fields(found: dict[str, Any]) -> list[dict[str, Any]]:
    """The detail panel's rows: key (for hiding), label, value, and a search link or None."""

    def search(params: dict[str, str]) -> str:
        # A month around now: wide enough for the neighbours people look for.
        return url_with("/inferences", params, {"period": SEARCH_PERIOD})

    image = found["image"] or {}
    size = f"{image.get('width') or '?'} \u00d7 {image.get('height') or '?'}" if image else "\u2013"
    model, device = found["model_id"], found["device_id"]
    rows: list[dict[str, Any]] = [
        _field("inference_id", "Inference id", found["inference_id"]),
        _field("timestamp", "Time", when_exact(found["timestamp"]), moment=found["timestamp"]),
        _field(
            "received_at", "Received", when_exact(found["received_at"]), moment=found["received_at"]
        ),
        _field("model", "Model", model, search({"model_id": model}), "model"),
        _field(
            "device",
            "Device",
            device or "\u2013",
            search({"device_id": device}) if device else None,
            "device",
        ),
        _field("task", "Task", found["task"] or "\u2013"),
        _field("inference_time", "Inference time", seconds(found["inference_time"])),
        _field("image_size", "Image size", size),
        _field("prediction_count", "Predictions", str(found["prediction_count"])),
        _field("mean_confidence", "Mean confidence", percent(found["mean_confidence"])),
        _field("error", "Error", found["error"] or "\u2013"),
    ]
    for name, value in found["metadata"].items():
        shown = plain(value)
        rows.append(
            _field(
                f"metadata.{name}",
                name,
                shown,
                search({f"metadata.{name}": shown}),
                "value",
            )
        )
    return rows


def _field(
    key: str,
    label: str,
    value: str,
    search: str | None = None,
    noun: str = "",
    moment: datetime | None = None,
) -> dict[str, Any]:
    """`moment`: a time, shown in the viewer's zone (`value` is its UTC text)."""
    return {
        "key": key,
        "label": label,
        "value": value,
        "search": search,
        "noun": noun,
        "moment": moment,
    }


def _drawing(found: dict[str, Any]) -> dict[str, Any]:
    """The shapes to draw (web/drawing.py): each prediction, with the polygon and keypoints
    its item carried as sent (the stored predictions keep boxes only)."""
    item = found["item"]
    raw = item.get("predictions") if isinstance(item.get("predictions"), list) else []
    detections = []
    for index, prediction in enumerate(found["predictions"]):
        source = raw[index] if index < len(raw) and isinstance(raw[index], dict) else {}
        shapes = {name: source.get(name) for name in ("points", "keypoints")}
        detections.append({**prediction, **shapes})
    image = found.get("image") or {}
    return drawing(detections, image.get("width"), image.get("height"))
