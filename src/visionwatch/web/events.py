"""Vision Events pages: the use cases, a use case's events with filters, one event with its
images and detections drawn, and operators' verdicts on it.

The events are the API's (`store/vision_events.py`), kept as their clients sent them: every
value shown here is a client's, so it is rendered as text and drawn only when it is a number.
"""

import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlencode

import orjson
from fastapi import APIRouter, Request
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.responses import RedirectResponse, Response

from visionwatch.db.engine import Database
from visionwatch.event_facts import FEEDBACK
from visionwatch.http.deps import DatabaseDep, SettingsDep, clock_of
from visionwatch.http.downloads import image_response
from visionwatch.store import accounts
from visionwatch.store import feedback as feedback_store
from visionwatch.store import vision_events as store
from visionwatch.store.inferences import BadCursor
from visionwatch.timeutil import parse_time
from visionwatch.verdicts import NAMES, Verdicts
from visionwatch.web.auth import UserDep, read_form
from visionwatch.web.drawing import drawing, is_number
from visionwatch.web.errors import PageError
from visionwatch.web.rendering import plain, render

router = APIRouter(include_in_schema=False)
PAGE = "/events"
PAGE_SIZE = 50
PRECISION_DAYS = 7  # realised precision over the events of the last week
SUMMARY_CHARACTERS = 80
# Roboflow's verdicts on an event, as its dashboard and its workflow block give them.
VERDICTS = NAMES
# The filters of a use case's events: URL parameter -> what a chip calls it.
CONTEXT = {"device": "Device", "stream": "Stream", "workflow": "Workflow"}
PERIOD = {"start": "From", "end": "Until"}
DETECTION = {"class": "Detected", "min_confidence": "Confidence at least"}
FEEDBACK_STATUS = {**VERDICTS, "none": "No feedback"}
SINGLE = {**CONTEXT, **DETECTION, "feedback": "Feedback", **PERIOD}
META = "meta."
DATA = "data."
# The API's limits on what it stores (api/vision_events.py): a longer value could match
# nothing, and is refused as the API refuses it.
MAX_NAME = 256
MAX_EVENT_TYPE = 64
MAX_FILTERS = 20
MAX_METADATA_TEXT = 1000
MAX_FIELD_NAME = 100
METADATA_FIELD = re.compile(r"[a-zA-Z0-9_ -]{1,100}")
# An event's time as the API read it when it stored the event (EventIn.timestamp).
_TIMESTAMP = TypeAdapter(datetime)


@dataclass(frozen=True, slots=True)
class EventFilters:
    """What a use case's page filters by, as its URL says it: `pairs` are the parameters
    in a canonical order (chips, links), the rest what the store is asked."""

    pairs: list[tuple[str, str]]
    types: tuple[str, ...]
    context: dict[str, str]
    start: datetime | None
    end: datetime | None
    metadata: dict[str, str]
    data: dict[str, str]  # eventData fields
    detected_class: str | None
    min_confidence: float | None
    feedback: store.FeedbackStatus | None


# -- pages ------------------------------------------------------------------------------


@router.get(PAGE)
def use_cases_page(
    request: Request, user: UserDep, database: DatabaseDep, settings: SettingsDep
) -> Response:
    status = request.query_params.get("status") or "active"
    if status not in ("active", "archived"):
        raise PageError(400, "Unknown status", "Use cases are active or archived.")
    archived = status == "archived"
    workspace = user.workspace.id
    found = store.list_use_cases(database, workspace, archived)
    now = clock_of(request)
    judged = feedback_store.event_precision(
        database, workspace, now - timedelta(days=PRECISION_DAYS), now, group="use_case"
    )
    rows = [
        {
            "use_case": u,
            "url": use_case_path(u.public_id),
            "precision": (judged or {}).get(u.public_id, Verdicts()),
        }
        for u in found
    ]
    lookback = accounts.event_lookback_days(database, workspace) or settings.event_lookback_days
    context = {"user": user, "rows": rows, "archived": archived, "lookback_days": lookback}
    return render(request, "use_cases.html", context)


@router.get(PAGE + "/{use_case}")
def events_page(request: Request, use_case: str, user: UserDep, database: DatabaseDep) -> Response:
    workspace = user.workspace.id
    found = _use_case(database, workspace, use_case)
    schema = store.metadata_schema(database, workspace, found.public_id) or {}
    data_schema = store.data_schema(database, workspace, found.public_id) or {}
    filters = event_filters(request.query_params)
    cursor = request.query_params.get("cursor") or None
    query = _query(found, filters, (schema, data_schema), cursor)
    try:
        page = store.query_events(database, workspace, query)
    except BadCursor:
        raise PageError(400, "Bad page link", "This link to a next page is broken.") from None
    if page is None:  # gone since it was found
        raise _no_use_case(use_case)
    path = use_case_path(found.public_id)
    context = {
        "user": user,
        "use_case": found,
        "rows": [_row(found, event) for event in page.events],
        "total": page.total,
        "filters": filters,
        "chips": _chips(path, filters),
        "event_types": store.event_types(database, workspace, found.public_id),
        "fields": sorted(schema),
        "feedback_status": FEEDBACK_STATUS,
        "input_id": filter_input_id,
        "precision": _use_case_precision(database, workspace, found, clock_of(request)),
        "path": path,
        "next_url": _url(path, [*filters.pairs, ("cursor", page.next_cursor)])
        if page.next_cursor
        else None,
        "first_url": _url(path, filters.pairs) if cursor else None,
    }
    return render(request, "events.html", context)


@router.get(PAGE + "/{use_case}/{event_id:text}")
def event_page(
    request: Request, use_case: str, event_id: str, user: UserDep, database: DatabaseDep
) -> Response:
    workspace = user.workspace.id
    found = _use_case(database, workspace, use_case)
    stored = _event(database, workspace, found, event_id)
    event = stored.event
    path = use_case_path(found.public_id)
    context = {
        "user": user,
        "use_case": found,
        "use_case_url": path,
        "event_id": event_id,
        "event_type": plain(event.get("eventType")),
        "time": _moment(event.get("timestamp")),
        "time_sent": plain(event.get("timestamp")),
        "received_at": stored.received_at,
        "source": [
            _field(label, event.get(key), path, name)
            for name, label, key in (
                ("device", "Device", "deviceId"),
                ("stream", "Stream", "streamId"),
                ("workflow", "Workflow", "workflowId"),
            )
        ],
        "data": [
            _field(name, value, path, DATA + name)
            for name, value in _mapping(event.get("eventData")).items()
        ],
        "metadata": [
            _field(name, value, path, META + name)
            for name, value in _mapping(event.get("customMetadata")).items()
        ],
        "images": _images(database, workspace, event),
        "verdict": _verdict(store.latest_feedback(database, workspace, found.public_id, event_id)),
        "verdicts": VERDICTS,
        "feedback_url": event_path(found.public_id, event_id) + "/feedback",
    }
    return render(request, "event.html", context)


@router.post(PAGE + "/{use_case}/{event_id:text}/feedback")
async def give_feedback(
    request: Request, use_case: str, event_id: str, user: UserDep, database: DatabaseDep
) -> Response:
    """An operator's verdict, stored as the API stores one sent by Roboflow's tools: an
    operator_feedback event of the same use case naming the event it judges."""
    form = await read_form(request)
    workspace = user.workspace.id
    found = await run_in_threadpool(_use_case, database, workspace, use_case)
    await run_in_threadpool(_event, database, workspace, found, event_id)
    verdict = form.get("verdict", "")
    if verdict not in VERDICTS:
        raise PageError(400, "Unknown verdict", "An event is correct, incorrect or inconclusive.")
    now = clock_of(request)
    feedback_id = str(uuid.uuid4())
    sent: dict[str, Any] = {
        "eventId": feedback_id,
        "eventType": FEEDBACK,
        "useCaseId": found.public_id,
        "timestamp": now.isoformat(),
        "eventData": {"relatedEventId": event_id, "feedback": verdict},
    }
    feedback = store.NewEvent(
        event_id=feedback_id,
        event_type=FEEDBACK,
        use_case=found.public_id,
        timestamp=now,
        device=None,
        stream=None,
        workflow=None,
        metadata={},
        sent=sent,
    )
    await run_in_threadpool(store.write_events, database, workspace, [feedback], now)
    return RedirectResponse(event_path(found.public_id, event_id), status_code=303)


@router.get("/event-images/{source_id}")
def event_image(request: Request, source_id: str, user: UserDep, database: DatabaseDep) -> Response:
    return _image(request, source_id, user.workspace.id, database, thumbnail=False)


@router.get("/event-thumbnails/{source_id}")
def event_thumbnail(
    request: Request, source_id: str, user: UserDep, database: DatabaseDep
) -> Response:
    return _image(request, source_id, user.workspace.id, database, thumbnail=True)


def _image(
    request: Request, source_id: str, workspace: int, database: Database, thumbnail: bool
) -> Response:
    key = store.source_image(database, workspace, source_id)
    if key is None:
        raise PageError(404, "No such image", f"This workspace has no event image {source_id!r}.")
    return image_response(request.app.state.blobs, key, thumbnail=thumbnail)


# -- paths ------------------------------------------------------------------------------


def use_case_path(public_id: str) -> str:
    """A use case's page. Its id is a client's text and may hold a "/", which the server
    decodes before routing (%2F is /): the id is quoted twice, its route unquotes once more
    (`_use_case`), so that the id is always one segment. Plain ids look the same."""
    return f"{PAGE}/{quote(quote(public_id, safe=''), safe='')}"


def event_path(use_case: str, event_id: str) -> str:
    return f"{use_case_path(use_case)}/{quote(event_id, safe='')}"


def _url(path: str, pairs: list[tuple[str, str]]) -> str:
    return f"{path}?{urlencode(pairs)}" if pairs else path


# -- reading a use case's filters -------------------------------------------------------


def event_filters(params: QueryParams) -> EventFilters:
    """The filters of a use case's URL: `type` (repeatable), `device`, `stream`,
    `workflow`, `class` (a detected class) with `min_confidence`, `feedback` (a verdict,
    or `none`), `start`, `end` (ISO 8601 or Unix seconds; UTC without an offset),
    `meta.<field>=<value>` (custom metadata) and `data.<field>=<value>` (eventData); the
    search form's `meta_field`/`meta_value` pair is one more `meta.` filter. Blank values
    are no filter (a form sends its empty fields)."""
    given = list(params.multi_items())
    field = params.get("meta_field", "").strip()
    if field:
        given.append((META + field, params.get("meta_value", "")))
    types: list[str] = []
    single: dict[str, str] = {}
    fields: dict[str, dict[str, str]] = {META: {}, DATA: {}}
    for name, value in given:
        if not value.strip():
            continue
        if name == "type":
            if value not in types:
                types.append(value)
        elif name in SINGLE:
            single[name] = value
        elif name.startswith((META, DATA)):
            prefix = META if name.startswith(META) else DATA
            fields[prefix][name.removeprefix(prefix)] = value
    metadata, data = fields[META], fields[DATA]
    _check(types, single, metadata, data)
    start, end = (_time(name, single.get(name)) for name in PERIOD)
    if start is not None and end is not None and start >= end:
        raise PageError(400, "This period is empty", "The start must be before the end.")
    pairs = [("type", kind) for kind in types]
    pairs += [(name, single[name]) for name in SINGLE if name in single]
    pairs += [(META + name, value) for name, value in sorted(metadata.items())]
    pairs += [(DATA + name, value) for name, value in sorted(data.items())]
    feedback = single.get("feedback")
    return EventFilters(
        pairs=pairs,
        types=tuple(types),
        context={name: single[name] for name in CONTEXT if name in single},
        start=start,
        end=end,
        metadata=metadata,
        data=data,
        detected_class=single.get("class"),
        min_confidence=_least_confidence(single.get("min_confidence")),
        feedback=feedback if feedback in FEEDBACK_STATUS else None,  # type: ignore[arg-type]
    )


def _least_confidence(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN too
        raise PageError(400, "Bad filter", "min_confidence: a number from 0 to 1.")
    return value


def _check(
    types: list[str], single: dict[str, str], metadata: dict[str, str], data: dict[str, str]
) -> None:
    if len(types) > MAX_FILTERS or len(metadata) > MAX_FILTERS or len(data) > MAX_FILTERS:
        raise PageError(400, "Too many filters", f"Filter by at most {MAX_FILTERS} of each.")
    for kind in types:
        if len(kind) > MAX_EVENT_TYPE:
            raise PageError(400, "Bad filter", f"type: at most {MAX_EVENT_TYPE} characters.")
    for name in (*CONTEXT, "class"):
        if len(single.get(name, "")) > MAX_NAME:
            raise PageError(400, "Bad filter", f"{name}: at most {MAX_NAME} characters.")
    if single.get("feedback", "none") not in FEEDBACK_STATUS:
        raise PageError(400, "Bad filter", "feedback: correct, incorrect, inconclusive or none.")
    if "min_confidence" in single and "class" not in single:
        raise PageError(400, "Bad filter", "min_confidence: name the detected class too.")
    for field in metadata:
        if not METADATA_FIELD.fullmatch(field):
            raise PageError(
                400,
                "Bad metadata filter",
                "A metadata field is 1-100 of a-z A-Z 0-9 _ - and space: "
                f"{field[:100]!r} is not one.",
            )
    for field, value in [*metadata.items(), *data.items()]:
        if len(field) > MAX_FIELD_NAME:
            raise PageError(
                400, "Bad filter", f"A field name is at most {MAX_FIELD_NAME} characters."
            )
        if len(value) > MAX_METADATA_TEXT:
            raise PageError(
                400, "Bad metadata filter", f"{field}: at most {MAX_METADATA_TEXT} characters."
            )


def _time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as error:
        raise PageError(400, "This period cannot be read", f"{name}: {error}.") from None


def _query(
    use_case: store.UseCase,
    filters: EventFilters,
    schemas: tuple[dict[str, list[str]], dict[str, list[str]]],
    cursor: str | None,
) -> store.EventQuery:
    """What the store is asked; `schemas` (custom metadata's, eventData's) type the values."""
    metadata_schema, data_schema = schemas
    context = {name: store.ContextFilter("eq", value) for name, value in filters.context.items()}
    return store.EventQuery(
        use_case=use_case.public_id,
        event_types=filters.types,
        start=filters.start,
        end=filters.end,
        device=context.get("device"),
        stream=context.get("stream"),
        workflow=context.get("workflow"),
        metadata=_typed_filters(filters.metadata, metadata_schema),
        data=_typed_filters(filters.data, data_schema),
        detected_class=filters.detected_class,
        min_confidence=filters.min_confidence,
        feedback=filters.feedback,
        limit=PAGE_SIZE,
        cursor=cursor,
    )


def _typed_filters(
    given: dict[str, str], schema: dict[str, list[str]]
) -> tuple[store.MetadataFilter, ...]:
    return tuple(
        store.MetadataFilter(field, "eq", typed(value, schema.get(field, [])))
        for field, value in sorted(given.items())
    )


def typed(text: str, kinds: list[str]) -> store.MetadataValue:
    """A URL's metadata value as the field's values were sent: metadata is typed (60 and
    "60" differ), a URL is text. A value that reads as a number is compared as one when the
    field has numbers, true and false as booleans when it has booleans; else as text."""
    if "number" in kinds:
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    if "boolean" in kinds and text in ("true", "false"):
        return text == "true"
    return text


def _chips(path: str, filters: EventFilters) -> list[dict[str, str | None]]:
    """Each active filter, with the link to this page without it (from its first page)."""
    chips = []
    for index, (name, value) in enumerate(filters.pairs):
        label = {"type": "Type", **SINGLE}.get(name) or name.removeprefix(META)
        if name.startswith(DATA):
            label = "Event data " + name.removeprefix(DATA)
        shown_value = FEEDBACK_STATUS.get(value, value) if name == "feedback" else value
        others = filters.pairs[:index] + filters.pairs[index + 1 :]
        chips.append(
            {
                "label": label,
                "value": shown_value,
                "remove": _url(path, others),
                "edit": None if name == "type" else filter_input_id(name),
            }
        )
    return chips


def filter_input_id(parameter: str) -> str:
    """The id of the form's input for a URL parameter: a chip's label focuses it to edit."""
    return "filter-" + re.sub(r"[^a-zA-Z0-9_-]", lambda m: f"~{ord(m.group()):x}", parameter)


# -- what the pages show of an event ----------------------------------------------------


def _use_case(database: Database, workspace: int, segment: str) -> store.UseCase:
    reference = unquote(segment)  # see use_case_path
    found = store.find_use_case(database, workspace, reference)
    if found is None:
        raise _no_use_case(reference)
    return found


def _no_use_case(reference: str) -> PageError:
    return PageError(404, "No such use case", f"This workspace has no use case {reference!r}.")


def _event(
    database: Database, workspace: int, use_case: store.UseCase, event_id: str
) -> store.StoredEvent:
    stored = store.get_event(database, workspace, use_case.public_id, event_id)
    if stored is None:
        raise PageError(
            404, "No such event", f"The use case {use_case.name!r} has no event {event_id!r}."
        )
    return stored


def _row(use_case: store.UseCase, event: dict[str, Any]) -> dict[str, Any]:
    event_id = plain(event.get("eventId"))
    source = _display_source(event)
    return {
        "event_id": event_id,
        "url": event_path(use_case.public_id, event_id),
        "time": _moment(event.get("timestamp")),
        "time_sent": plain(event.get("timestamp")),
        "type": plain(event.get("eventType")),
        "device": event.get("deviceId"),
        "summary": summary(event.get("eventData")),
        "thumbnail": f"/event-thumbnails/{quote(source, safe='')}" if source else None,
    }


def _moment(value: object) -> datetime | None:
    """When an event happened, read as the API read it; None if it cannot be (then the
    page shows what was sent)."""
    try:
        moment = _TIMESTAMP.validate_python(value)
    except ValidationError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def summary(data: object, limit: int = SUMMARY_CHARACTERS) -> str:
    """An event's data on one line: `key: value` pairs, cut at `limit` characters."""
    text = " · ".join(f"{key}: {shown(value)}" for key, value in _mapping(data).items())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def shown(value: object) -> str:
    """A JSON value as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _field(label: str, value: object, path: str, parameter: str) -> dict[str, Any]:
    """A value of the event, with the link to the use case's events that share it."""
    if value is None:
        return {"label": label, "value": "\u2013", "search": None}
    if not isinstance(value, str | bool | int | float):  # a list or an object: no filter
        return {"label": label, "value": shown(value), "search": None}
    text = shown(value) if isinstance(value, bool) else plain(value)
    return {"label": label, "value": text, "search": _url(path, [(parameter, text)])}


def _images_of(event: dict[str, Any]) -> list[dict[str, Any]]:
    images = event.get("images")
    return (
        [image for image in images if isinstance(image, dict)] if isinstance(images, list) else []
    )


def _display_source(event: dict[str, Any]) -> str | None:
    """The image a list shows for an event: the one at displayImagePosition, else the first."""
    images = _images_of(event)
    position = event.get("displayImagePosition")
    if isinstance(position, int) and 0 <= position < len(images):
        images = [images[position], *images]
    for image in images:
        for key in ("sourceId", "inputSourceId"):
            if isinstance(image.get(key), str) and image[key]:
                return str(image[key])
    return None


def _images(database: Database, workspace: int, event: dict[str, Any]) -> list[dict[str, Any]]:
    """Each image of the event, its detections drawn over the image they were made on.

    Roboflow's workflow block sends the model's input as `inputSourceId` and what it drew
    (a visualisation) as `sourceId`, the detections in the input's pixels: they are drawn
    over the input when there is one, and the other image is shown beside them.
    """
    shown_images = []
    for index, image in enumerate(_images_of(event)):
        sources = [
            str(image[key])
            for key in ("inputSourceId", "sourceId")
            if isinstance(image.get(key), str) and image[key]
        ]
        drawn = sources[0] if sources else None
        size = _size(database, workspace, drawn) if drawn else None
        others = [s for s in sources[1:] if store.source_image(database, workspace, s)]
        detections = [
            detection
            for kind in ("objectDetections", "instanceSegmentations", "keypoints")
            for detection in _list(image.get(kind))
            if isinstance(detection, dict)
        ]
        found = drawing(detections, *(size or (None, None)))
        shown_images.append(
            {
                "index": index,
                "label": plain(image["label"]) if image.get("label") is not None else None,
                "url": f"/event-images/{quote(drawn, safe='')}" if drawn and size else None,
                "others": [f"/event-images/{quote(other, safe='')}" for other in others],
                "drawing": found,
                "classifications": [
                    {
                        "class": shown(c.get("class")),
                        "confidence": c.get("confidence")
                        if is_number(c.get("confidence"))
                        else None,
                    }
                    for c in _list(image.get("classifications"))
                    if isinstance(c, dict)
                ],
            }
        )
    return shown_images


def _use_case_precision(
    database: Database, workspace: int, use_case: store.UseCase, now: datetime
) -> Verdicts:
    """The verdicts on the use case's events of the last week (by the events' time)."""
    found = feedback_store.event_precision(
        database, workspace, now - timedelta(days=PRECISION_DAYS), now, use_case=use_case.public_id
    )
    return (found or {}).get(None, Verdicts())


def _verdict(feedback: store.Feedback | None) -> dict[str, Any] | None:
    """The latest verdict as the page shows it (a client may have sent any feedback)."""
    if feedback is None:
        return None
    value = feedback.verdict if isinstance(feedback.verdict, str) else shown(feedback.verdict)
    return {
        "value": value,
        "name": VERDICTS.get(value, value),
        "known": value in VERDICTS,
        "at": feedback.timestamp,
        "comment": feedback.comment if isinstance(feedback.comment, str) else None,
    }


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _size(database: Database, workspace: int, source_id: str) -> tuple[int, int] | None:
    """The size of an event image of this workspace, for the drawing's coordinates (kept
    when it was uploaded: the file is not opened); None when the workspace has no such
    image (an event may name any id)."""
    return store.source_size(database, workspace, source_id)
