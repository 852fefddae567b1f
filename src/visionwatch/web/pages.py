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
from visionwatch.store import alerts as alert_store
from visionwatch.store import compare as compare_store
from visionwatch.store import devices as device_store
from visionwatch.store import feedback as feedback_store
from visionwatch.store import images as image_store
from visionwatch.store import inferences as inference_store
from visionwatch.store import stats as stats_store
from visionwatch.store.chart_marks import Scope as MarkScope
from visionwatch.store.compare import CONFIDENCE_BARS, confidence_bars
from visionwatch.store.devices import DeviceQuery
from visionwatch.store.inferences import BadCursor, InferenceQuery
from visionwatch.store.stats import ClassStats, Distributions, Filters
from visionwatch.verdicts import NAMES, Verdicts
from visionwatch.web.auth import UserDep
from visionwatch.web.charts import chart_series
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
from visionwatch.web.rows import shown_inference
from visionwatch.web.snapshot import one_snapshot

router = APIRouter(include_in_schema=False)
RECENT = 20
PAGE_SIZE = 50
SEARCH_PERIOD = "30d"
# A model's classes: bars for the most frequent, a table of them all a page at a time.
CLASS_BARS = 20
CLASS_ROWS = 50
# Rows of a tab's list on the overview; the rest are a link away.
TAB_ROWS = 50


@router.get("/")
@one_snapshot
def workspace_page(
    request: Request, user: UserDep, database: DatabaseDep, settings: SettingsDep
) -> Response:
    page = page_period(request.query_params, clock_of(request))
    workspace = user.workspace.id
    models = stats_store.model_stats(database, workspace, Filters(), page.period)
    now = clock_of(request)
    # The tabs show the head of long lists (the busiest models, the offline devices first);
    # the fleet's own pages search and page the rest.
    fleet = device_store.page_devices(
        database,
        workspace,
        now,
        timedelta(seconds=settings.device_offline_after),
        DeviceQuery(limit=TAB_ROWS),
    )
    context: dict[str, Any] = {
        "user": user,
        "page": page,
        "presets": PRESET_NAMES,
        "models": models[:TAB_ROWS],
        "model_count": len(models),
        "devices": fleet.devices,
        "fleet": fleet,
        "empty": not models,
        "rules": alert_store.list_rules(database, workspace),
        "now": request.app.state.clock(),
    }
    if models:
        records, _ = inference_store.list_inferences(
            database, workspace, InferenceQuery(period=page.period, limit=RECENT)
        )
        recent = [shown_inference(record) for record in records]
        context.update(
            precision=feedback_store.precision(
                database, workspace, Filters(), page.period, group="model"
            ),
            stats=stats_store.stats(database, workspace, Filters(), page.period),
            series=chart_series(database, workspace, Filters(), page.period, MarkScope()),
            recent=recent,
            device_requests=stats_store.requests_of_devices(
                database, workspace, page.period, fleet.ids
            ),
        )
    return render(request, "workspace.html", context)


@router.get("/models/{model_id:text}")
@one_snapshot
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
        "series": chart_series(
            database,
            workspace,
            filters,
            page.period,
            MarkScope(model=found.name, project=found.project),
            with_precision=True,
        ),
        **_class_lists(request, classes, model_id, page.params()),
        "confidence_bars": _confidence_bars(stats.distributions),
        "time_bars": _time_bars(stats.distributions),
        "inferences_url": url_with("/inferences", {"model_id": model_id}, page.params()),
        **_compare_link(database, workspace, model_id, page.params()),
    }
    return render(request, "model.html", context)


def _compare_link(
    database: Database, workspace: int, model_id: str, period: dict[str, str]
) -> dict[str, Any]:
    """A model against the version it replaced, or against its own period before."""
    before = compare_store.previous_version(database, workspace, model_id)
    sides = {"a_model_id": before or model_id, "b_model_id": model_id}
    return {"compare_url": url_with("/compare", sides, period), "compared_with": before}


@router.get("/inferences")
@one_snapshot
def inferences_page(request: Request, user: UserDep, database: DatabaseDep) -> Response:
    page = page_period(request.query_params, clock_of(request))
    query = inference_query(request.query_params, page.period, limit=PAGE_SIZE)
    try:
        records, next_cursor = inference_store.list_inferences(database, user.workspace.id, query)
    except BadCursor:
        raise PageError(400, "Bad page link", "This link to a next page is broken.") from None
    rows = [shown_inference(record) for record in records]
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


@router.get("/images/{inference_id:text}")
def image(request: Request, inference_id: str, user: UserDep, database: DatabaseDep) -> Response:
    key = image_store.image_key(database, user.workspace.id, inference_id)
    return image_response(request.app.state.blobs, key, thumbnail=False)


@router.get("/thumbnails/{inference_id:text}")
def thumbnail(
    request: Request, inference_id: str, user: UserDep, database: DatabaseDep
) -> Response:
    key = image_store.image_key(database, user.workspace.id, inference_id)
    return image_response(request.app.state.blobs, key, thumbnail=True)


@router.get("/inferences/{inference_id:text}")
@one_snapshot
def inference_page(
    request: Request, inference_id: str, user: UserDep, database: DatabaseDep
) -> Response:
    record = inference_store.get_inference(database, user.workspace.id, inference_id)
    if record is None:
        raise PageError(
            404, "No such inference", f"This workspace has no inference {inference_id!r}."
        )
    found = shown_inference(record, with_item=True)
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


def _class_lists(
    request: Request, classes: list[ClassStats], model_id: str, period: dict[str, str]
) -> dict[str, Any]:
    """A detector of 1,000 classes: bars for the most frequent CLASS_BARS (the rest as one),
    and a table of CLASS_ROWS a page, searched by name (`class_search`, `class_offset`)."""
    search = request.query_params.get("class_search", "").strip()
    try:
        offset = max(0, int(request.query_params.get("class_offset") or 0))
    except ValueError:
        raise PageError(400, "Bad page link", "class_offset must be a whole number.") from None
    matching = [c for c in classes if search.lower() in c.name.lower()]
    here = {**period, **({"class_search": search} if search else {})}
    path = f"/models/{quote(model_id)}"
    rest = classes[CLASS_BARS:]
    return {
        "class_bars": classes[:CLASS_BARS],
        "other_classes": {
            "count": len(rest),
            "share": sum(c.share for c in rest),
            "detections": sum(c.count for c in rest),
        },
        "class_count": len(classes),
        "max_share": max((c.share for c in classes), default=0.0),
        "classes": matching[offset : offset + CLASS_ROWS],
        "class_search": search,
        "class_matches": len(matching),
        "class_offset": offset,
        "class_next_url": url_with(path, here, {"class_offset": str(offset + CLASS_ROWS)})
        + "#classes"
        if offset + CLASS_ROWS < len(matching)
        else None,
    }


def _confidence_bars(shown: Distributions) -> list[dict[str, Any]]:
    width = CONFIDENCE_BINS // CONFIDENCE_BARS
    return _bars(
        confidence_bars(shown.confidence, CONFIDENCE_BARS),
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
