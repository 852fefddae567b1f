"""Vision Events, as Roboflow serves them (its SDK and CLI, and inference's workflow block
send them here unchanged): use cases, typed events, their images, queries.

Writes need the ingest scope, reads the read scope. Errors answer `{"error": "..."}` as
Roboflow's API does, each naming the bad field; nothing of a refused batch is stored.
"""

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from visionwatch.api.roboflow import ERRORS, CompatError, compat_key, presented_key
from visionwatch.http.deps import DatabaseDep, SettingsDep, clock_of
from visionwatch.http.downloads import image_response
from visionwatch.http.responses import JSON
from visionwatch.images.decode import BadImage, check_image
from visionwatch.items import json_path, message_of
from visionwatch.ratelimit import InFlight
from visionwatch.store import accounts
from visionwatch.store import vision_events as store
from visionwatch.store.accounts import ApiKey
from visionwatch.store.inferences import BadCursor

router = APIRouter(prefix="/vision-events", tags=["vision events"])

EVENT_TYPES = ("quality_check", "inventory_count", "safety_alert", "custom", "operator_feedback")
MAX_BATCH = 100
MAX_EVENT_TYPES = 20
MAX_PAGE = 100
METADATA_KEY = re.compile(r"[a-zA-Z0-9_ -]{1,100}")
MAX_METADATA_FIELDS = 100
MAX_METADATA_TEXT = 1000
Name = Annotated[str, Field(min_length=1, max_length=256)]


class EventIn(BaseModel):
    """One event. Fields beyond these are kept as sent: clients pass through what callers give."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    eventId: Name
    eventType: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    useCaseId: Name
    timestamp: datetime
    eventData: dict[str, Any] | None = None
    deviceId: Name | None = None
    streamId: Name | None = None
    workflowId: Name | None = None
    images: list[dict[str, Any]] | None = Field(default=None, max_length=100)
    displayImagePosition: int | None = Field(default=None, ge=0)
    customMetadata: dict[str, Any] | None = None


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[dict[str, Any]] = Field(max_length=MAX_BATCH)


class NameIn(BaseModel):
    name: Name


class ContextIn(BaseModel):
    operator: Literal["eq", "neq"] = "eq"
    value: Name


class MetadataFilterIn(BaseModel):
    field: Annotated[str, Field(min_length=1, max_length=100)]
    operator: Literal["eq", "neq", "gt", "gte", "lt", "lte"] = "eq"
    value: str | bool | float
    type: Literal["string", "number", "boolean"] | None = None


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="ignore")  # Roboflow's filters not served here (warnings)

    useCaseId: Name
    eventType: Name | None = None
    eventTypes: list[Name] | None = Field(default=None, max_length=MAX_EVENT_TYPES)
    startTime: datetime | None = None
    endTime: datetime | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: Annotated[str, Field(max_length=200)] | None = None
    deviceId: ContextIn | None = None
    streamId: ContextIn | None = None
    workflowId: ContextIn | None = None
    customMetadataFilters: list[MetadataFilterIn] = Field(default_factory=list, max_length=20)
    # Roboflow's dashboard filters by these; its API's names for them are not published,
    # so these are ours (docs/architecture.md, "Vision Events").
    eventFieldFilters: list[MetadataFilterIn] = Field(default_factory=list, max_length=20)
    detectionClass: Name | None = None
    minConfidence: float | None = Field(default=None, ge=0, le=1)
    feedbackStatus: store.FeedbackStatus | None = None


async def _json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as error:
        raise CompatError(400, f"the body is not valid JSON: {error}") from None


def _refused(error: ValidationError, prefix: str = "") -> CompatError:
    first = error.errors()[0]
    path = json_path(first["loc"]) or "body"
    return CompatError(400, f"{prefix}{path}: {message_of(first)}")


def _checked_event(raw: Any, prefix: str = "") -> store.NewEvent:
    try:
        event = EventIn.model_validate(raw)
    except ValidationError as error:
        raise _refused(error, prefix) from None
    _check_event_data(event.eventType, event.eventData or {}, f"{prefix}eventData")
    metadata = _checked_metadata(event.customMetadata or {}, f"{prefix}customMetadata")
    return store.NewEvent(
        event_id=event.eventId,
        event_type=event.eventType,
        use_case=event.useCaseId,
        timestamp=_aware(event.timestamp),
        device=event.deviceId,
        stream=event.streamId,
        workflow=event.workflowId,
        metadata=metadata,
        sent=raw,
    )


# The eventData fields each type defines, and what each may hold (Roboflow's schemas);
# other fields are kept as sent.
_TEXT = "a string"
_NUMBER = "a number"
EVENT_DATA: dict[str, dict[str, tuple[str, ...] | str]] = {
    "quality_check": {"result": ("pass", "fail")},
    "inventory_count": {"location": _TEXT, "itemCount": _NUMBER, "itemType": _TEXT},
    "safety_alert": {
        "alertType": _TEXT,
        "severity": ("low", "medium", "high"),
        "description": _TEXT,
    },
    "custom": {},  # value: whatever the caller measures
    "operator_feedback": {
        "relatedEventId": _TEXT,
        "feedback": ("correct", "incorrect", "inconclusive"),
    },
}


def _check_event_data(event_type: str, data: dict[str, Any], path: str) -> None:
    """Each field the type defines holds what it should; every type may carry externalId."""
    expected: dict[str, tuple[str, ...] | str] = {"externalId": _TEXT, **EVENT_DATA[event_type]}
    for name, rule in expected.items():
        if name not in data or data[name] is None:
            continue
        value = data[name]
        if isinstance(rule, tuple):
            if value not in rule:
                raise CompatError(400, f"{path}.{name}: one of {', '.join(rule)}")
        elif not _holds(rule, value):
            raise CompatError(400, f"{path}.{name}: {rule}")


def _holds(rule: str, value: object) -> bool:
    if rule == _NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _aware(value: datetime) -> datetime:
    """A time without an offset is UTC, as everywhere in the API."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _checked_metadata(metadata: dict[str, Any], path: str) -> dict[str, store.MetadataValue]:
    if len(metadata) > MAX_METADATA_FIELDS:
        raise CompatError(400, f"{path}: at most {MAX_METADATA_FIELDS} fields")
    for name, value in metadata.items():
        if not METADATA_KEY.fullmatch(name):
            raise CompatError(400, f"{path}.{name}: keys are 1-100 of a-z A-Z 0-9 _ - and space")
        if isinstance(value, str):
            if len(value) > MAX_METADATA_TEXT:
                raise CompatError(400, f"{path}.{name}: at most {MAX_METADATA_TEXT} characters")
        elif not isinstance(value, bool | int | float):
            raise CompatError(400, f"{path}.{name}: a string, a number or a boolean")
    return metadata


async def _writer(request: Request, database: DatabaseDep) -> ApiKey:
    return await compat_key(request, database, presented_key(request, None), "ingest", None)


async def _reader(request: Request, database: DatabaseDep) -> ApiKey:
    return await compat_key(request, database, presented_key(request, None), "read", None)


@router.post("", status_code=201, responses=ERRORS, summary="Write one event")
async def write_event(request: Request, database: DatabaseDep) -> JSON:
    key = await _writer(request, database)
    event = _checked_event(await _json(request))
    await run_in_threadpool(
        store.write_events, database, key.workspace.id, [event], clock_of(request)
    )
    return JSON({"eventId": event.event_id, "created": True}, status_code=201)


@router.post("/batch", status_code=201, responses=ERRORS, summary="Write at most 100 events")
async def write_batch(request: Request, database: DatabaseDep) -> JSON:
    key = await _writer(request, database)
    try:
        batch = BatchIn.model_validate(await _json(request))
    except ValidationError as error:
        raise _refused(error) from None
    events = [_checked_event(raw, f"events[{n}].") for n, raw in enumerate(batch.events)]
    ids = await run_in_threadpool(
        store.write_events, database, key.workspace.id, events, clock_of(request)
    )
    return JSON({"created": len(ids), "eventIds": ids}, status_code=201)


@router.post("/query", responses=ERRORS, summary="A use case's events, newest first")
async def query_events(request: Request, database: DatabaseDep, settings: SettingsDep) -> JSON:
    key = await _reader(request, database)
    try:
        asked = QueryIn.model_validate(await _json(request))
    except ValidationError as error:
        raise _refused(error) from None
    types = tuple(asked.eventTypes or ()) + ((asked.eventType,) if asked.eventType else ())
    query = store.EventQuery(
        use_case=asked.useCaseId,
        event_types=types,
        start=None if asked.startTime is None else _aware(asked.startTime),
        end=None if asked.endTime is None else _aware(asked.endTime),
        device=_context(asked.deviceId),
        stream=_context(asked.streamId),
        workflow=_context(asked.workflowId),
        metadata=tuple(
            store.MetadataFilter(f.field, f.operator, f.value) for f in asked.customMetadataFilters
        ),
        data=tuple(
            store.MetadataFilter(f.field, f.operator, f.value) for f in asked.eventFieldFilters
        ),
        detected_class=asked.detectionClass,
        min_confidence=asked.minConfidence,
        feedback=asked.feedbackStatus,
        limit=asked.limit,
        cursor=asked.cursor,
    )
    try:
        page = await run_in_threadpool(store.query_events, database, key.workspace.id, query)
    except BadCursor as error:
        raise CompatError(400, f"cursor: {error}") from None
    if page is None:
        raise CompatError(404, f"useCaseId: no use case {asked.useCaseId!r} in this workspace")
    return JSON(
        {
            "events": page.events,
            "nextCursor": page.next_cursor,
            "hasMore": page.next_cursor is not None,
            "total": page.total,
            "lookbackDays": await _lookback_days(database, settings, key),
        }
    )


async def _lookback_days(database: DatabaseDep, settings: SettingsDep, key: ApiKey) -> int:
    """The days the workspace keeps events: its own lookback, else the server's."""
    own = await run_in_threadpool(accounts.event_lookback_days, database, key.workspace.id)
    return own or settings.event_lookback_days


def _context(given: ContextIn | None) -> store.ContextFilter | None:
    return None if given is None else store.ContextFilter(given.operator, given.value)


@router.get("/use-cases", responses=ERRORS, summary="The workspace's use cases")
async def list_use_cases(
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    status: Literal["active", "archived"] = "active",
) -> JSON:
    key = await _reader(request, database)
    found = await run_in_threadpool(
        store.list_use_cases, database, key.workspace.id, status == "archived"
    )
    return JSON(
        {
            "useCases": [
                {
                    "id": use_case.public_id,
                    "name": use_case.name,
                    "status": "archived" if use_case.archived else "active",
                    "eventCount": use_case.event_count,
                    "lastEventAt": use_case.last_event_at,
                }
                for use_case in found
            ],
            "lookbackDays": await _lookback_days(database, settings, key),
        }
    )


@router.post("/use-cases", status_code=201, responses=ERRORS, summary="Make a use case")
async def create_use_case(request: Request, database: DatabaseDep) -> JSON:
    key = await _writer(request, database)
    name = _name(await _json(request))
    made = await run_in_threadpool(
        store.create_use_case, database, key.workspace.id, name, clock_of(request)
    )
    return JSON({"id": made.public_id, "name": made.name}, status_code=201)


@router.put("/use-cases/{use_case_id}", responses=ERRORS, summary="Rename a use case")
async def rename_use_case(use_case_id: str, request: Request, database: DatabaseDep) -> JSON:
    key = await _writer(request, database)
    name = _name(await _json(request))
    found = await run_in_threadpool(
        store.rename_use_case, database, key.workspace.id, use_case_id, name
    )
    if found is None:
        raise CompatError(404, f"no use case {use_case_id!r} in this workspace")
    return JSON({"id": found.public_id, "name": found.name})


def _name(body: Any) -> str:
    try:
        return NameIn.model_validate(body).name
    except ValidationError as error:
        raise _refused(error) from None


@router.post("/use-cases/{use_case_id}/archive", responses=ERRORS, summary="Archive")
async def archive(use_case_id: str, request: Request, database: DatabaseDep) -> JSON:
    return await _set_archived(use_case_id, request, database, archived=True)


@router.post("/use-cases/{use_case_id}/unarchive", responses=ERRORS, summary="Unarchive")
async def unarchive(use_case_id: str, request: Request, database: DatabaseDep) -> JSON:
    return await _set_archived(use_case_id, request, database, archived=False)


async def _set_archived(
    use_case_id: str, request: Request, database: DatabaseDep, *, archived: bool
) -> JSON:
    key = await _writer(request, database)
    done = await run_in_threadpool(
        store.set_archived, database, key.workspace.id, use_case_id, archived
    )
    if not done:
        raise CompatError(404, f"no use case {use_case_id!r} in this workspace")
    return JSON({"success": True})


@router.get(
    "/custom-metadata-schema/{use_case_id}",
    responses=ERRORS,
    summary="Each custom metadata field of a use case's events, with its types",
)
async def metadata_schema(use_case_id: str, request: Request, database: DatabaseDep) -> JSON:
    key = await _reader(request, database)
    fields = await run_in_threadpool(store.metadata_schema, database, key.workspace.id, use_case_id)
    if fields is None:
        raise CompatError(404, f"no use case {use_case_id!r} in this workspace")
    return JSON(
        {"useCaseId": use_case_id, "fields": {name: {"types": t} for name, t in fields.items()}}
    )


@router.post("/upload", status_code=201, responses=ERRORS, summary="Upload an event's image")
async def upload_image(request: Request, database: DatabaseDep, settings: SettingsDep) -> JSON:
    key = await _writer(request, database)
    try:
        form = await request.form(max_files=1, max_fields=3, max_part_size=settings.max_body_bytes)
    except Exception as error:  # python-multipart's own errors: a broken body
        raise CompatError(400, f"the multipart body cannot be read: {error}") from None
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise CompatError(400, "file: a multipart part `file` holds the image")
        data = await file.read()
        name = form.get("name")
        metadata_text = form.get("metadata")
    finally:
        await form.close()
    metadata: dict[str, Any] | None = None
    if isinstance(metadata_text, str) and metadata_text:
        try:
            metadata = orjson.loads(metadata_text)
        except orjson.JSONDecodeError:
            raise CompatError(400, "metadata: not valid JSON") from None
        if not isinstance(metadata, dict):
            raise CompatError(400, "metadata: a JSON object")
        _checked_metadata(metadata, "metadata")
    try:
        image = check_image(
            data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
    except BadImage as error:
        raise CompatError(400, f"file: {error}") from None
    source_id = await run_in_threadpool(
        store.put_source,
        database,
        request.app.state.blobs,
        key.workspace.id,
        image,
        name if isinstance(name, str) else None,
        metadata,
        clock_of(request),
    )
    url = f"/vision-events/images/{source_id}"
    return JSON({"success": True, "sourceId": source_id, "url": url}, status_code=201)


@router.get(
    "/images/{source_id}",
    responses={**ERRORS, 200: {"content": {"image/*": {}}}},
    response_class=Response,
    summary="An uploaded image, as it was sent",
)
async def source_image(source_id: str, request: Request, database: DatabaseDep) -> Response:
    key = await _reader(request, database)
    found = await run_in_threadpool(store.source_image, database, key.workspace.id, source_id)
    if found is None:
        raise CompatError(404, f"no image {source_id!r} in this workspace")
    return image_response(request.app.state.blobs, found, thumbnail=False)


# inference's event-store mode: snake_case events with their images inline, its key in
# X-API-Key; its clients read {"id"} from a 201 and {"detail"} from anything else.
event_store = APIRouter(tags=["vision events"])
DEFAULT_USE_CASE = "default"


class StoredEventIn(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    inference_timestamp: datetime
    solution: Name | None = None
    event_schema: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    event_data: dict[str, Any] = Field(default_factory=dict)
    images: list[dict[str, Any]] = Field(default_factory=list, max_length=20)
    custom_metadata: dict[str, Any] | None = None
    displayImagePosition: int | None = Field(default=None, ge=0)


@event_store.post(
    "/v2/events",
    status_code=201,
    responses={
        400: {"description": 'A bad value: `{"detail": ...}` names it'},
        401: {"description": "No key, or not a live one"},
        403: {"description": "The key lacks the ingest scope"},
        413: {"description": "The body is larger than the server accepts"},
        429: {"description": "The key made too many requests a second"},
        529: {"description": 'Too busy: nothing was stored, retry later (`{"detail": ...}`)'},
    },
    summary="An event as inference's event-store mode sends it",
)
async def store_event(request: Request, database: DatabaseDep, settings: SettingsDep) -> JSON:
    """Shed with 529 past `event_store_max_in_flight` events being stored at once, or when
    the database cannot take the write: the client keeps the event and sends it again."""
    in_flight: InFlight = request.app.state.event_store_in_flight
    if not in_flight.try_enter():
        return _shed(f"{in_flight.limit} events are being stored")
    try:
        return await _store_event(request, database, settings)
    except DATABASE_BUSY as error:
        return _shed(f"the database cannot take the write ({type(error).__name__})")
    finally:
        in_flight.leave()


OVERLOADED = 529  # the status inference's event store answers when it sheds load
DATABASE_BUSY = (OperationalError, InterfaceError, PoolTimeout)


def _shed(why: str) -> JSON:
    return JSON(
        {"detail": f"too busy: {why}; nothing was stored, retry in a moment"},
        status_code=OVERLOADED,
        headers={"Retry-After": "1"},
    )


async def _store_event(request: Request, database: DatabaseDep, settings: SettingsDep) -> JSON:
    secret = request.headers.get("x-api-key") or presented_key(request, None)
    try:
        key = await compat_key(request, database, secret, "ingest", None)
        body = StoredEventIn.model_validate(await _json(request))
    except ValidationError as error:
        raise HTTPException(400, str(_refused(error).message)) from None
    except CompatError as error:
        raise HTTPException(error.status, error.message) from None
    now = clock_of(request)
    images = []
    for n, sent in enumerate(body.images):
        image = {k: v for k, v in sent.items() if k not in ("base64Image", "inputBase64Image")}
        for field, named in (("base64Image", "sourceId"), ("inputBase64Image", "inputSourceId")):
            if isinstance(sent.get(field), str):
                image[named] = await _store_inline(
                    request, database, settings, key, sent[field], f"images[{n}].{field}", now
                )
        images.append(image)
    event: dict[str, Any] = {
        "eventId": uuid.uuid4().hex,
        "eventType": body.event_schema,
        "useCaseId": body.solution or DEFAULT_USE_CASE,
        "timestamp": _aware(body.inference_timestamp).isoformat(),
        "eventData": body.event_data,
        "images": images,
    }
    if body.custom_metadata:
        event["customMetadata"] = body.custom_metadata
    if body.displayImagePosition is not None:
        event["displayImagePosition"] = body.displayImagePosition
    try:
        checked = _checked_event(event)
    except CompatError as error:
        raise HTTPException(400, error.message) from None
    await run_in_threadpool(store.write_events, database, key.workspace.id, [checked], now)
    return JSON({"id": checked.event_id}, status_code=201)


async def _store_inline(
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    key: ApiKey,
    encoded: str,
    path: str,
    now: datetime,
) -> str:
    try:
        data = base64.b64decode(encoded, validate=True)
        image = check_image(
            data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
    except (binascii.Error, BadImage) as error:
        raise HTTPException(400, f"{path}: {error}") from None
    source_id: str = await run_in_threadpool(
        store.put_source,
        database,
        request.app.state.blobs,
        key.workspace.id,
        image,
        None,
        None,
        now,
    )
    return source_id
