"""Roboflow-shaped endpoints: Inference Servers report here, Roboflow API scripts read here.

Errors answer `{"error": "..."}` as Roboflow's API does; report validation
errors also list every bad path under `errors`.
"""

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.routing import Match
from starlette.types import Scope

from visionwatch.api.body import check_encoding, not_json, parse_json
from visionwatch.api.deps import check_rate
from visionwatch.api.ingest import MetadataIn, values_too_long
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.http.deps import DatabaseDep, SettingsDep, clock_of
from visionwatch.http.params import BadParameter, EmptyPeriod, parse_period
from visionwatch.http.responses import JSON
from visionwatch.items import json_path, message_of
from visionwatch.parsers import NotJson, report_rows
from visionwatch.store import accounts
from visionwatch.store import ingest as ingest_store
from visionwatch.store import metadata as metadata_store
from visionwatch.store.accounts import ApiKey
from visionwatch.store.roboflow_stats import inference_stats
from visionwatch.store.stats import Period

router = APIRouter(tags=["roboflow"])
DEFAULT_PERIOD = timedelta(hours=24)


class _WithApiKey(APIRoute):
    """A route that matches only requests carrying `?api_key=`, so that the same path can be
    a page for browsers: routing goes on to the next route when this one does not match."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and not QueryParams(scope.get("query_string", b"")).get(
            "api_key"
        ):
            return Match.NONE, {}
        return match, child


# Roboflow's clients ask the API's root which workspace a key belongs to before anything
# else (inference's model-monitoring and custom-metadata workflow blocks); at visionwatch's
# root a browser finds the dashboard, so this answers only a request with a key.
root_router = APIRouter(tags=["roboflow"], route_class=_WithApiKey)


# Not in /openapi.json: without their key the paths are the dashboard's, which no schema of
# these routes could describe. Roboflow's SDK POSTs / (its key check), inference's blocks GET.
@root_router.api_route("/", methods=["GET", "POST"], include_in_schema=False)
async def key_workspace(request: Request, database: DatabaseDep) -> JSON:
    key = await _root_key(request, database)
    return JSON(
        {
            "welcome": "Welcome to visionwatch, answering as the Roboflow API.",
            "docs": "/docs",
            "workspace": key.workspace.name,
        }
    )


@root_router.get("/{workspace}", include_in_schema=False)
async def workspace_info(workspace: str, request: Request, database: DatabaseDep) -> JSON:
    """What Roboflow's SDK reads of a workspace (`rf.workspace()`) before anything else."""
    key = await _root_key(request, database)
    if workspace != key.workspace.name:
        raise CompatError(404, f"no workspace {workspace!r} for this api_key")
    name = key.workspace.name
    return JSON({"workspace": {"name": name, "url": name, "projects": [], "members": []}})


async def _root_key(request: Request, database: Database) -> ApiKey:
    key = await run_in_threadpool(
        accounts.authenticate_key, database, request.query_params["api_key"]
    )
    if key is None:
        raise CompatError(401, "this api_key is not valid or was revoked")
    try:
        check_rate(request, key)
    except HTTPException as error:
        raise CompatError(429, str(error.detail), headers=dict(error.headers or {})) from None
    return key


class CompatError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(CompatError)
    async def compat_error(_: Request, error: CompatError) -> JSON:
        body: dict[str, Any] = {"error": error.message}
        if error.errors is not None:
            body["errors"] = error.errors
        return JSON(body, status_code=error.status, headers=error.headers)


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": 'Malformed body: `{"error": ...}` says what is wrong'},
    401: {"description": "No API key, or not a live one"},
    403: {"description": "The key lacks the scope this endpoint needs"},
    404: {"description": "The workspace in the path is not the key's"},
    413: {"description": "The body is larger than the server accepts"},
    422: {"description": "Invalid report: `errors` names each bad path"},
}


def presented_key(request: Request, in_body: Any) -> str | None:
    if isinstance(in_body, str) and in_body:
        return in_body
    if request.query_params.get("api_key"):
        return request.query_params["api_key"]
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def compat_key(
    request: Request, database: Database, secret: str | None, scope: str, workspace: str | None
) -> ApiKey:
    if secret is None:
        raise CompatError(401, "an api_key is required (in the body, the query or a header)")
    key = await run_in_threadpool(accounts.authenticate_key, database, secret)
    if key is None:
        raise CompatError(401, "this api_key is not valid or was revoked")
    if scope not in key.scopes and "admin" not in key.scopes:
        raise CompatError(403, f"this api_key lacks the {scope!r} scope")
    if workspace is not None and workspace != key.workspace.name:
        raise CompatError(404, f"no workspace {workspace!r} for this api_key")
    try:
        check_rate(request, key)
    except HTTPException as error:
        raise CompatError(429, str(error.detail), headers=dict(error.headers or {})) from None
    return key


async def _body(request: Request, raw: bytes | None = None) -> Any:
    raw = await request.body() if raw is None else raw
    try:
        # In a worker thread: a busy server's report is megabytes of JSON.
        return await run_in_threadpool(parse_json, request, raw)
    except HTTPException as error:
        raise CompatError(error.status_code, str(error.detail)) from None


# Reports larger than this wait for each other (see app.state.large_reports): a busy
# server's minute (18,000 results, 13 MiB) takes about 120 MB of memory while handled.
LARGE_REPORT_BYTES = 1024 * 1024


async def _report(
    request: Request, database: Database, settings: Settings, workspace: str | None
) -> JSON:
    raw = await request.body()
    if len(raw) <= LARGE_REPORT_BYTES:
        return await _handle_report(request, raw, database, settings, workspace)
    async with request.app.state.large_reports:
        return await _handle_report(request, raw, database, settings, workspace)


async def _handle_report(
    request: Request, raw: bytes, database: Database, settings: Settings, workspace: str | None
) -> JSON:
    now = clock_of(request)
    try:
        check_encoding(request)
        # Decoded, validated and made rows in a parser process when large (parsers.py): a
        # busy server's minute is a second of Python the event loop owes other requests.
        parsed = await request.app.state.parsers.run(
            raw,
            report_rows,
            now,
            timedelta(seconds=settings.max_clock_skew_seconds),
            settings.item_limits(),
        )
    except HTTPException as error:
        raise CompatError(error.status_code, str(error.detail)) from None
    except NotJson as error:
        raise CompatError(400, str(not_json(str(error)).detail)) from None
    # The key first: a report with a bad key is refused whatever else is wrong with it.
    key = await compat_key(
        request, database, presented_key(request, parsed.api_key), "ingest", workspace
    )
    if parsed.errors:
        errors = [{"path": e.path, "message": e.message} for e in parsed.errors]
        first = parsed.errors[0]
        raise CompatError(422, f"{first.path}: {first.message}", errors)
    result = await run_in_threadpool(
        ingest_store.store_rows, database, key.workspace.id, parsed.rows, now, parsed.sender
    )
    request.app.state.metrics.record_ingest(result.accepted, result.duplicates)
    return JSON({"status": "ok", "accepted": result.accepted, "duplicates": result.duplicates})


@router.post("/inference-stats", responses=ERRORS, summary="An Inference Server's report")
async def post_report(request: Request, database: DatabaseDep, settings: SettingsDep) -> JSON:
    """What a Roboflow Inference Server posts every METRICS_INTERVAL to its METRICS_URL.

    An empty `inference_results` is a heartbeat of the server."""
    return await _report(request, database, settings, None)


@router.post(
    "/{workspace}/inference-stats", responses=ERRORS, summary="A report, to a named workspace"
)
async def post_workspace_report(
    workspace: str, request: Request, database: DatabaseDep, settings: SettingsDep
) -> JSON:
    """The Inference Server's report, or the workflow model-monitoring aggregator's."""
    return await _report(request, database, settings, workspace)


def _roboflow_period(start: str | None, end: str | None, now: datetime) -> Period:
    """`YYYY-MM-DD HH:mm:ss` (UTC) or ISO 8601, widened to whole minutes; default the last day."""
    try:
        return parse_period(start, end, now=now, default=DEFAULT_PERIOD)
    except EmptyPeriod:
        raise CompatError(400, "startTime: must be before endTime") from None
    except BadParameter as error:
        name = {"start": "startTime", "end": "endTime"}[error.parameter]
        raise CompatError(400, f"{name}: {error.message}") from None


@router.get(
    "/{workspace}/inference-stats", responses=ERRORS, summary="Roboflow's inference statistics"
)
async def get_inference_stats(
    workspace: str,
    request: Request,
    database: DatabaseDep,
    start_time: Annotated[str | None, Query(alias="startTime", max_length=64)] = None,
    end_time: Annotated[str | None, Query(alias="endTime", max_length=64)] = None,
    model_names: Annotated[str | None, Query(alias="modelNames", max_length=10_000)] = None,
) -> JSON:
    """Totals of the period and of the previous one (`prev_`), and one row per model and
    predicted class (`""`: inferences that predicted nothing)."""
    key = await compat_key(request, database, presented_key(request, None), "read", workspace)
    period = _roboflow_period(start_time, end_time, clock_of(request))
    names = None
    if model_names is not None:
        names = [name.strip() for name in model_names.split(",") if name.strip()]
    body = await run_in_threadpool(inference_stats, database, key.workspace.id, period, names)
    return JSON(body)


@router.post(
    "/{workspace}/inference-stats/metadata", responses=ERRORS, summary="Attach custom metadata"
)
async def post_metadata(
    workspace: str, request: Request, database: DatabaseDep, settings: SettingsDep
) -> JSON:
    """Roboflow's custom-metadata call; metadata sent before its inference is kept until it
    arrives."""
    body = await _body(request)
    in_body = body.get("api_key") if isinstance(body, dict) else None
    key = await compat_key(request, database, presented_key(request, in_body), "ingest", workspace)
    try:
        parsed = MetadataIn.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        path = json_path(first["loc"]) or "body"
        raise CompatError(400, f"{path}: {message_of(first)}") from None
    too_long = values_too_long(parsed, settings.max_metadata_value_chars)
    if too_long:
        raise CompatError(400, f"{too_long[0].path}: {too_long[0].message}")
    updates = [
        metadata_store.MetadataUpdate(entry.inference_ids, entry.field_name, entry.field_value)
        for entry in parsed.data
    ]
    await run_in_threadpool(
        metadata_store.attach, database, key.workspace.id, updates, clock_of(request)
    )
    return JSON({"status": "ok"})
