"""The fleet's pages: every device and every model, searched and paged, and a device's own
page (what it is, how it does, what it ran, what watches it)."""

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from starlette.responses import Response

from visionwatch.http.deps import DatabaseDep, SettingsDep, clock_of
from visionwatch.store import alerts as alert_store
from visionwatch.store import devices as device_store
from visionwatch.store import feedback as feedback_store
from visionwatch.store import inferences as inference_store
from visionwatch.store import stats as stats_store
from visionwatch.store.chart_marks import Scope as MarkScope
from visionwatch.store.devices import BadDeviceCursor, DeviceQuery
from visionwatch.store.inferences import InferenceQuery
from visionwatch.store.stats import Filters
from visionwatch.web.auth import UserDep
from visionwatch.web.charts import chart_series
from visionwatch.web.errors import PageError
from visionwatch.web.params import PRESET_NAMES, page_period, url_with
from visionwatch.web.rendering import render
from visionwatch.web.rows import shown_inference
from visionwatch.web.snapshot import one_snapshot

router = APIRouter(include_in_schema=False)
PAGE_ROWS = 100
RECENT = 20
STATUSES = ("online", "offline")


@router.get("/devices")
@one_snapshot
def devices_page(
    request: Request, user: UserDep, database: DatabaseDep, settings: SettingsDep
) -> Response:
    params = request.query_params
    page = page_period(params, clock_of(request))
    wanted = params.get("status") or None
    if wanted is not None and wanted not in STATUSES:
        raise PageError(400, "Unknown status", "A device is online or offline.")
    status: Literal["online", "offline"] | None = (
        "online" if wanted == "online" else "offline" if wanted == "offline" else None
    )
    search = params.get("search", "").strip() or None
    version = params.get("version", "").strip() or None
    query = DeviceQuery(search, status, version, PAGE_ROWS, params.get("cursor") or None)
    try:
        fleet = device_store.page_devices(
            database,
            user.workspace.id,
            clock_of(request),
            timedelta(seconds=settings.device_offline_after),
            query,
        )
    except BadDeviceCursor:
        raise PageError(400, "Bad page link", "This link to a next page is broken.") from None
    filters = {
        name: value
        for name, value in (("search", search), ("status", status), ("version", version))
        if value is not None
    }
    here = {**filters, **page.params()}
    context = {
        "user": user,
        "page": page,
        "presets": PRESET_NAMES,
        "fleet": fleet,
        "filters": filters,
        "device_requests": stats_store.requests_of_devices(
            database, user.workspace.id, page.period, fleet.ids
        ),
        "next_url": url_with("/devices", here, {"cursor": fleet.next_cursor})
        if fleet.next_cursor
        else None,
        "first_url": url_with("/devices", here) if query.cursor else None,
    }
    return render(request, "devices.html", context)


@router.get("/devices/{name:text}")
@one_snapshot
def device_page(
    request: Request, name: str, user: UserDep, database: DatabaseDep, settings: SettingsDep
) -> Response:
    page = page_period(request.query_params, clock_of(request))
    workspace = user.workspace.id
    found = device_store.get_device(
        database,
        workspace,
        name,
        clock_of(request),
        timedelta(seconds=settings.device_offline_after),
    )
    if found is None:
        raise PageError(404, "No such device", f"This workspace has no device {name!r}.")
    filters = Filters(device=name)
    ran = [
        model
        for model in stats_store.model_stats(database, workspace, filters, page.period)
        if model.total_requests.current
    ]
    records, _ = inference_store.list_inferences(
        database, workspace, InferenceQuery(period=page.period, device=name, limit=RECENT)
    )
    rules = [
        stored
        for stored in alert_store.list_rules(database, workspace)
        if stored.rule.device == name
    ]
    context: dict[str, Any] = {
        "user": user,
        "page": page,
        "presets": PRESET_NAMES,
        "device": found,
        "stats": stats_store.stats(database, workspace, filters, page.period),
        "series": chart_series(database, workspace, filters, page.period, MarkScope(device=name)),
        "models": ran,
        "precision": feedback_store.precision(
            database, workspace, filters, page.period, group="model"
        ),
        "recent": [shown_inference(record) for record in records],
        "rules": rules,
        "now": clock_of(request),
        "inferences_url": url_with("/inferences", {"device_id": name}, page.params()),
    }
    return render(request, "device.html", context)


@router.get("/models")
@one_snapshot
def models_page(request: Request, user: UserDep, database: DatabaseDep) -> Response:
    params = request.query_params
    page = page_period(params, clock_of(request))
    search = params.get("search", "").strip()
    try:
        offset = max(0, int(params.get("offset") or 0))
    except ValueError:
        raise PageError(400, "Bad page link", "offset must be a whole number.") from None
    every = stats_store.model_stats(database, user.workspace.id, Filters(), page.period)
    matching = [m for m in every if search.lower() in m.name.lower()]
    shown = matching[offset : offset + PAGE_ROWS]
    here = {**({"search": search} if search else {}), **page.params()}
    context = {
        "user": user,
        "page": page,
        "presets": PRESET_NAMES,
        "models": shown,
        "search": search,
        "total": len(matching),
        "offset": offset,
        "precision": feedback_store.precision(
            database, user.workspace.id, Filters(), page.period, group="model"
        ),
        "next_url": url_with("/models", here, {"offset": str(offset + PAGE_ROWS)})
        if offset + PAGE_ROWS < len(matching)
        else None,
        "first_url": url_with("/models", here) if offset else None,
    }
    return render(request, "models.html", context)
