"""Vision Events: use cases, their events (kept as sent, with typed custom metadata for
filters), and the images uploaded for them."""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import BigInteger, Connection, and_, delete, func, or_, select, type_coerce

from visionwatch.db import dialect as dialects
from visionwatch.db.engine import Database
from visionwatch.db.schema import (
    event_classes,
    event_data_fields,
    event_metadata,
    event_sources,
    event_verdicts,
    use_cases,
    vision_events,
)
from visionwatch.db.types import from_micros
from visionwatch.event_facts import FEEDBACK, data_fields, detected, given_verdict
from visionwatch.images.blobs import BlobStore, content_key
from visionwatch.images.decode import CheckedImage

# Keyset pages as the inferences list has them, the same cursor (and its BadCursor).
from visionwatch.store.inferences import decode_cursor, encode_cursor
from visionwatch.verdicts import Verdict

MetadataValue = str | float | bool
Operator = Literal["eq", "neq", "gt", "gte", "lt", "lte"]
# An event's newest verdict, or "none" for events no operator judged.
FeedbackStatus = Literal["correct", "incorrect", "inconclusive", "none"]


@dataclass(frozen=True, slots=True)
class UseCase:
    public_id: str
    name: str
    archived: bool
    event_count: int = 0
    last_event_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event as checked: its keys, and the whole of it as sent (stored as it came)."""

    event_id: str
    event_type: str
    use_case: str
    timestamp: datetime
    device: str | None
    stream: str | None
    workflow: str | None
    metadata: dict[str, MetadataValue]
    sent: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ContextFilter:
    operator: Literal["eq", "neq"]
    value: str


@dataclass(frozen=True, slots=True)
class MetadataFilter:
    field: str
    operator: Operator
    value: MetadataValue


@dataclass(frozen=True, slots=True)
class EventQuery:
    use_case: str
    event_types: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    device: ContextFilter | None = None
    stream: ContextFilter | None = None
    workflow: ContextFilter | None = None
    metadata: tuple[MetadataFilter, ...] = ()
    data: tuple[MetadataFilter, ...] = ()  # on eventData's fields
    detected_class: str | None = None
    min_confidence: float | None = None  # of the detected class; without one, any
    feedback: FeedbackStatus | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[dict[str, Any]]
    next_cursor: str | None
    total: int = field(default=0)


# -- use cases --------------------------------------------------------------------------


def create_use_case(db: Database, workspace_id: int, name: str, now: datetime) -> UseCase:
    with db.write() as conn:
        public_id = secrets.token_hex(4)
        conn.execute(
            use_cases.insert().values(
                workspace_id=workspace_id,
                public_id=public_id,
                name=name,
                archived=False,
                created_at=now,
            )
        )
    return UseCase(public_id, name, archived=False)


def list_use_cases(db: Database, workspace_id: int, archived: bool) -> list[UseCase]:
    """The workspace's use cases, with how many events each holds and the newest one's time."""
    counts = (
        select(
            vision_events.c.use_case_id,
            func.count().label("events"),
            func.max(type_coerce(vision_events.c.ts, BigInteger)).label("last"),
        )
        .where(vision_events.c.workspace_id == workspace_id)
        .group_by(vision_events.c.use_case_id)
        .subquery()
    )
    query = (
        select(use_cases, counts.c.events, counts.c.last)
        .outerjoin(counts, counts.c.use_case_id == use_cases.c.id)
        .where(use_cases.c.workspace_id == workspace_id, use_cases.c.archived == archived)
        .order_by(use_cases.c.name)
    )
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        UseCase(
            row.public_id,
            row.name,
            row.archived,
            int(row.events or 0),
            from_micros(int(row.last)) if row.last is not None else None,
        )
        for row in rows
    ]


def rename_use_case(db: Database, workspace_id: int, public_id: str, name: str) -> UseCase | None:
    with db.write() as conn:
        row = conn.execute(
            use_cases.update()
            .where(use_cases.c.workspace_id == workspace_id, use_cases.c.public_id == public_id)
            .values(name=name)
            .returning(use_cases.c.archived)
        ).one_or_none()
    return None if row is None else UseCase(public_id, name, bool(row.archived))


def set_archived(db: Database, workspace_id: int, public_id: str, archived: bool) -> bool:
    with db.write() as conn:
        result = conn.execute(
            use_cases.update()
            .where(use_cases.c.workspace_id == workspace_id, use_cases.c.public_id == public_id)
            .values(archived=archived)
        )
    return result.rowcount > 0


def use_case_pk(conn: Connection, workspace_id: int, reference: str) -> int | None:
    """A use case by its id, or else by its name (clients send either)."""
    for column in (use_cases.c.public_id, use_cases.c.name):
        found = conn.execute(
            select(use_cases.c.id)
            .where(use_cases.c.workspace_id == workspace_id, column == reference)
            .order_by(use_cases.c.id)
            .limit(1)
        ).scalar()
        if found is not None:
            return int(found)
    return None


# -- events -----------------------------------------------------------------------------


def write_events(
    db: Database, workspace_id: int, events: Sequence[NewEvent], now: datetime
) -> list[str]:
    """Store `events`, all or none. An event id seen before replaces that event (a client
    re-sending is idempotent); a use case named for the first time is made."""
    return db.run_write(_write, db.dialect, workspace_id, events, now)


def _write(
    conn: Connection,
    dialect: dialects.Dialect,
    workspace_id: int,
    events: Sequence[NewEvent],
    now: datetime,
) -> list[str]:
    """A batch in a statement or two per table, whatever its size (as inferences are)."""
    dialects.lock_for_events(dialect, conn, workspace_id)
    known = {name: _use_case_made(conn, workspace_id, name, now) for name in _named(events)}
    latest = {event.event_id: event for event in events}  # the last of repeats in a batch
    ids = list(latest)
    replaced = select(vision_events.c.id).where(
        vision_events.c.workspace_id == workspace_id, vision_events.c.event_id.in_(ids)
    )
    for facts in (event_metadata, event_data_fields, event_classes):
        conn.execute(delete(facts).where(facts.c.event_pk.in_(replaced)))
    conn.execute(
        delete(vision_events).where(
            vision_events.c.workspace_id == workspace_id, vision_events.c.event_id.in_(ids)
        )
    )
    inserted = conn.execute(
        vision_events.insert().returning(
            vision_events.c.id, vision_events.c.event_id, sort_by_parameter_order=True
        ),
        [
            {
                "workspace_id": workspace_id,
                "use_case_id": known[event.use_case],
                "event_id": event.event_id,
                "event_type": event.event_type,
                "ts": event.timestamp,
                "received_at": now,
                "device": event.device,
                "stream": event.stream,
                "workflow": event.workflow,
                "event": orjson.dumps(event.sent).decode(),
            }
            for event in latest.values()
        ],
    ).all()
    pks = {row.event_id: row.id for row in inserted}
    rows: dict[Any, list[dict[str, Any]]] = {
        event_metadata: [],
        event_data_fields: [],
        event_classes: [],
    }
    about: dict[str, _Judged] = {}
    for event in latest.values():
        pk = pks[event.event_id]
        rows[event_metadata] += _field_rows(workspace_id, pk, event.timestamp, event.metadata)
        rows[event_data_fields] += _field_rows(
            workspace_id, pk, event.timestamp, data_fields(event.sent)
        )
        found = detected(event.sent)
        rows[event_classes] += [
            {
                "workspace_id": workspace_id,
                "event_pk": pk,
                "ts": event.timestamp,
                "class_name": name,
                "confidence": best,
            }
            for name, best in found.confidence.items()
        ]
        about[event.event_id] = _Judged(
            event.device, event.workflow, found.top_class, event.timestamp
        )
    for table, table_rows in rows.items():
        if table_rows:
            conn.execute(table.insert(), table_rows)
    _complete_verdicts(conn, workspace_id, about)
    _record_verdicts(conn, dialect, workspace_id, known, list(latest.values()), about)
    return ids


def _named(events: Sequence[NewEvent]) -> list[str]:
    return list(dict.fromkeys(event.use_case for event in events))


def _use_case_made(conn: Connection, workspace_id: int, name: str, now: datetime) -> int:
    """The use case a write names (by id or name), made when it names none yet."""
    pk = use_case_pk(conn, workspace_id, name)
    if pk is not None:
        return pk
    made: int = conn.execute(
        use_cases.insert()
        .values(
            workspace_id=workspace_id,
            public_id=name,
            name=name,
            archived=False,
            created_at=now,
        )
        .returning(use_cases.c.id)
    ).scalar_one()
    return made


@dataclass(frozen=True, slots=True)
class _Judged:
    """What a verdict is about: the judged event's source, class and time."""

    device: str | None
    workflow: str | None
    class_name: str | None
    ts: datetime

    COLUMNS = ("device", "workflow", "class_name", "ts")

    def values(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "workflow": self.workflow,
            "class_name": self.class_name,
            "ts": self.ts,
        }


def _complete_verdicts(conn: Connection, workspace_id: int, about: dict[str, _Judged]) -> None:
    """Verdicts that came before the events they judge learn what they judged now."""
    waiting = conn.execute(
        select(event_verdicts.c.event_id).where(
            event_verdicts.c.workspace_id == workspace_id,
            event_verdicts.c.event_id.in_(list(about)),
        )
    ).scalars()
    for event_id in waiting:  # few: an event is judged once, and mostly after it came
        conn.execute(
            event_verdicts.update()
            .where(
                event_verdicts.c.workspace_id == workspace_id,
                event_verdicts.c.event_id == event_id,
            )
            .values(**about[event_id].values())
        )


def _record_verdicts(
    conn: Connection,
    dialect: dialects.Dialect,
    workspace_id: int,
    use_cases_by_name: dict[str, int],
    events: list[NewEvent],
    about: dict[str, _Judged],
) -> None:
    """Keep each operator_feedback event's verdict as its judged event's, unless a newer one
    (by the feedback's own timestamp) is kept already; of a batch's verdicts on one event,
    the newest (the later sent among equal times)."""
    newest: dict[str, tuple[NewEvent, Verdict]] = {}
    for event in events:
        given = given_verdict(event.sent)
        if given is None:
            continue
        kept = newest.get(given.related_event_id)
        if kept is None or event.timestamp >= kept[0].timestamp:
            newest[given.related_event_id] = (event, given.verdict)
    if not newest:
        return
    judged = {**_stored_events(conn, workspace_id, set(newest) - set(about)), **about}
    columns = ("use_case_id", "feedback_event_id", "verdict", "given_at", *_Judged.COLUMNS)
    rows = []
    for related, (feedback, verdict) in newest.items():
        # Not here (yet): the verdict stands on its own time until its event comes.
        subject = judged.get(related) or _Judged(None, None, None, feedback.timestamp)
        rows.append(
            {
                "workspace_id": workspace_id,
                "event_id": related,
                "use_case_id": use_cases_by_name[feedback.use_case],
                "feedback_event_id": feedback.event_id,
                "verdict": verdict,
                "given_at": feedback.timestamp,
                **subject.values(),
            }
        )
    statement = dialects.insert(dialect, event_verdicts)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["workspace_id", "event_id"],
            set_={column: statement.excluded[column] for column in columns},
            where=event_verdicts.c.given_at <= statement.excluded.given_at,
        ),
        rows,
    )


def _stored_events(conn: Connection, workspace_id: int, event_ids: set[str]) -> dict[str, _Judged]:
    """What verdicts judge of events already stored: source, most detected class, time."""
    if not event_ids:
        return {}
    found = conn.execute(
        select(
            vision_events.c.event_id,
            vision_events.c.device,
            vision_events.c.workflow,
            vision_events.c.ts,
            vision_events.c.event,
        ).where(
            vision_events.c.workspace_id == workspace_id,
            vision_events.c.event_id.in_(event_ids),
        )
    )
    return {
        row.event_id: _Judged(
            row.device, row.workflow, detected(orjson.loads(row.event)).top_class, row.ts
        )
        for row in found
    }


def _field_rows(
    workspace_id: int, event_pk: int, ts: datetime, fields: dict[str, MetadataValue]
) -> list[dict[str, Any]]:
    return [
        {
            "workspace_id": workspace_id,
            "event_pk": event_pk,
            "ts": ts,
            "field": name,
            "kind": _kind(value),
            "text_value": _text(value),
            "number_value": float(value) if _kind(value) == "number" else None,
        }
        for name, value in fields.items()
    ]


def _kind(value: MetadataValue) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else "string"


def _text(value: MetadataValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(float(value))


def query_events(db: Database, workspace_id: int, query: EventQuery) -> EventPage | None:
    """A page of a use case's events, newest first, and the cursor of the next; None when
    the use case does not exist."""
    position = decode_cursor(query.cursor) if query.cursor else None
    with db.read() as conn:
        use_case = use_case_pk(conn, workspace_id, query.use_case)
        if use_case is None:
            return None
        conditions = _conditions(workspace_id, use_case, query)
        total = conn.execute(
            select(func.count()).select_from(vision_events).where(*conditions)
        ).scalar_one()
        ts = type_coerce(vision_events.c.ts, BigInteger)
        if position is not None:
            micros, pk = position
            conditions.append(or_(ts < micros, and_(ts == micros, vision_events.c.id < pk)))
        rows = conn.execute(
            select(vision_events.c.id, vision_events.c.ts, vision_events.c.event)
            .where(*conditions)
            .order_by(vision_events.c.ts.desc(), vision_events.c.id.desc())
            .limit(query.limit + 1)
        ).all()
    page = rows[: query.limit]
    more = len(rows) > query.limit
    cursor = encode_cursor(page[-1].ts, page[-1].id) if more else None
    return EventPage([orjson.loads(row.event) for row in page], cursor, int(total))


def _conditions(workspace_id: int, use_case: int, query: EventQuery) -> list[Any]:
    conditions: list[Any] = [
        vision_events.c.workspace_id == workspace_id,
        vision_events.c.use_case_id == use_case,
    ]
    if query.event_types:
        conditions.append(vision_events.c.event_type.in_(query.event_types))
    if query.start is not None:
        conditions.append(vision_events.c.ts >= query.start)
    if query.end is not None:
        conditions.append(vision_events.c.ts < query.end)
    for column, context in (
        (vision_events.c.device, query.device),
        (vision_events.c.stream, query.stream),
        (vision_events.c.workflow, query.workflow),
    ):
        if context is not None:
            matches = column == context.value
            # neq: an event without the field differs from the value too
            other = or_(~matches, column.is_(None))
            conditions.append(matches if context.operator == "eq" else other)
    # Each filter is the set of events it keeps, read along its own index (field and value,
    # class and confidence, verdict), not a probe per event of the use case: the total
    # count reads every event the other conditions keep.
    for table, filters in ((event_metadata, query.metadata), (event_data_fields, query.data)):
        for wanted in filters:
            matching = select(table.c.event_pk).where(*_field_match(table, workspace_id, wanted))
            conditions.append(vision_events.c.id.in_(matching))
    if query.detected_class is not None:
        found = [
            event_classes.c.workspace_id == workspace_id,
            event_classes.c.class_name == query.detected_class,
        ]
        if query.min_confidence is not None:
            found.append(event_classes.c.confidence >= query.min_confidence)
        conditions.append(vision_events.c.id.in_(select(event_classes.c.event_pk).where(*found)))
    if query.feedback is not None:
        judged = select(event_verdicts.c.event_id).where(
            event_verdicts.c.workspace_id == workspace_id
        )
        if query.feedback == "none":  # awaiting a verdict: feedback itself is not judged
            conditions.append(vision_events.c.event_id.not_in(judged))
            conditions.append(vision_events.c.event_type != FEEDBACK)
        else:
            verdict = event_verdicts.c.verdict == query.feedback
            conditions.append(vision_events.c.event_id.in_(judged.where(verdict)))
    return conditions


def _field_match(table: Any, workspace_id: int, wanted: MetadataFilter) -> list[Any]:
    """A typed field of the event (custom metadata, or eventData) compared as asked."""
    row = table.c
    match = [row.workspace_id == workspace_id, row.field == wanted.field]
    kind = _kind(wanted.value)
    if kind == "number":
        column, value = row.number_value, float(wanted.value)
    else:
        column, value = row.text_value, _text(wanted.value)  # type: ignore[assignment]
    compare = {
        "eq": column == value,
        "neq": column != value,
        "gt": column > value,
        "gte": column >= value,
        "lt": column < value,
        "lte": column <= value,
    }[wanted.operator]
    return [*match, row.kind == kind, compare]


def metadata_schema(db: Database, workspace_id: int, use_case: str) -> dict[str, list[str]] | None:
    """Each custom metadata field of a use case's events, with the types its values had."""
    return _schema(db, event_metadata, workspace_id, use_case)


def data_schema(db: Database, workspace_id: int, use_case: str) -> dict[str, list[str]] | None:
    """Each eventData field of a use case's events that a filter can compare, with its types."""
    return _schema(db, event_data_fields, workspace_id, use_case)


def _schema(
    db: Database, table: Any, workspace_id: int, use_case: str
) -> dict[str, list[str]] | None:
    with db.read() as conn:
        pk = use_case_pk(conn, workspace_id, use_case)
        if pk is None:
            return None
        rows = conn.execute(
            select(table.c.field, table.c.kind)
            .distinct()
            .join(vision_events, vision_events.c.id == table.c.event_pk)
            .where(vision_events.c.workspace_id == workspace_id, vision_events.c.use_case_id == pk)
            .order_by(table.c.field, table.c.kind)
        ).all()
    fields: dict[str, list[str]] = {}
    for row in rows:
        fields.setdefault(row.field, []).append(row.kind)
    return fields


# -- images -----------------------------------------------------------------------------


def put_source(
    db: Database,
    blobs: BlobStore,
    workspace_id: int,
    image: CheckedImage,
    name: str | None,
    metadata: dict[str, Any] | None,
    now: datetime,
) -> str:
    """Keep an uploaded image; its source id, for events to name."""
    key = content_key(image.data, image.extension)
    blobs.put(key, image.data)  # content-addressed: the same bytes are stored once
    source_id = "ve-img-" + secrets.token_hex(8)
    with db.write() as conn:
        conn.execute(
            event_sources.insert().values(
                workspace_id=workspace_id,
                source_id=source_id,
                image_key=key,
                width=image.width,
                height=image.height,
                name=name,
                metadata=orjson.dumps(metadata).decode() if metadata else None,
                created_at=now,
            )
        )
    return source_id


def source_image(db: Database, workspace_id: int, source_id: str) -> str | None:
    with db.read() as conn:
        found = conn.execute(
            select(event_sources.c.image_key).where(
                event_sources.c.workspace_id == workspace_id,
                event_sources.c.source_id == source_id,
            )
        ).scalar()
    return None if found is None else str(found)


def source_size(db: Database, workspace_id: int, source_id: str) -> tuple[int, int] | None:
    """An uploaded image's width and height, or None when the workspace has no such image."""
    with db.read() as conn:
        found = conn.execute(
            select(event_sources.c.width, event_sources.c.height).where(
                event_sources.c.workspace_id == workspace_id,
                event_sources.c.source_id == source_id,
            )
        ).one_or_none()
    return None if found is None else (int(found.width), int(found.height))


# -- one event, for the dashboard -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: dict[str, Any]  # as sent
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Feedback:
    """An operator's verdict on an event: the operator_feedback event that gave it."""

    event_id: str
    verdict: Any  # eventData.feedback as sent: "correct", "incorrect", "inconclusive"
    comment: Any  # the top-level comment Roboflow's tools send, or None
    timestamp: datetime


def find_use_case(db: Database, workspace_id: int, reference: str) -> UseCase | None:
    """A use case by its id, or else by its name, as the API finds them."""
    with db.read() as conn:
        pk = use_case_pk(conn, workspace_id, reference)
        if pk is None:
            return None
        row = conn.execute(select(use_cases).where(use_cases.c.id == pk)).one()
    return UseCase(row.public_id, row.name, bool(row.archived))


def get_event(db: Database, workspace_id: int, use_case: str, event_id: str) -> StoredEvent | None:
    """One event of a use case, or None when the use case or the event is not there."""
    with db.read() as conn:
        pk = use_case_pk(conn, workspace_id, use_case)
        if pk is None:
            return None
        row = conn.execute(
            select(vision_events.c.event, vision_events.c.received_at).where(
                vision_events.c.workspace_id == workspace_id,
                vision_events.c.use_case_id == pk,
                vision_events.c.event_id == event_id,
            )
        ).one_or_none()
    return None if row is None else StoredEvent(orjson.loads(row.event), row.received_at)


def event_types(db: Database, workspace_id: int, use_case: str) -> list[str]:
    """The event types a use case's events have (for a filter to offer)."""
    with db.read() as conn:
        pk = use_case_pk(conn, workspace_id, use_case)
        if pk is None:
            return []
        found = conn.execute(
            select(vision_events.c.event_type)
            .distinct()
            .where(vision_events.c.workspace_id == workspace_id, vision_events.c.use_case_id == pk)
            .order_by(vision_events.c.event_type)
        ).scalars()
        return [str(kind) for kind in found]


def latest_feedback(
    db: Database, workspace_id: int, use_case: str, event_id: str
) -> Feedback | None:
    """The newest operator verdict on the event `event_id` of the use case (newest by the
    feedback's timestamp), or None. The comment is read from the feedback event while it
    is kept (within the lookback)."""
    with db.read() as conn:
        pk = use_case_pk(conn, workspace_id, use_case)
        if pk is None:
            return None
        row = conn.execute(
            select(
                event_verdicts.c.feedback_event_id,
                event_verdicts.c.verdict,
                event_verdicts.c.given_at,
            ).where(
                event_verdicts.c.workspace_id == workspace_id,
                event_verdicts.c.event_id == event_id,
                event_verdicts.c.use_case_id == pk,
            )
        ).one_or_none()
        if row is None:
            return None
        sent = conn.execute(
            select(vision_events.c.event).where(
                vision_events.c.workspace_id == workspace_id,
                vision_events.c.event_id == row.feedback_event_id,
            )
        ).scalar()
    comment = orjson.loads(sent).get("comment") if sent is not None else None
    return Feedback(row.feedback_event_id, row.verdict, comment, row.given_at)
