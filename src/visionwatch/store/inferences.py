"""Raw inferences: the filtered, keyset-paginated list and the detail of one."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, and_, or_, select, type_coerce

from visionwatch.db.dialect import has_tag
from visionwatch.db.engine import Database
from visionwatch.db.schema import inferences
from visionwatch.db.types import from_micros, to_micros
from visionwatch.items import encode_metadata_value
from visionwatch.packed.ids import encode_id
from visionwatch.packed.tags import value_tag
from visionwatch.store import dictionaries, legacy
from visionwatch.store.decoded import ROW_COLUMNS, WITH_NAMES, Decoded, decode_rows
from visionwatch.store.records import (
    LIST_PREDICTIONS,
    MAX_LIMIT,
    BadCursor,
    InferenceQuery,
    InferenceRecord,
    decode_cursor,
    encode_cursor,
    record,
)
from visionwatch.store.stats import Filters, resolve_scope

# A page looks at no more rows than this for filters the rows' tags cannot decide alone
# (confidence bounds; a metadata value, whose tag is a hash): past it, the page ends early
# and its cursor goes on from there.
MAX_EXAMINED = 5000
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Matching:
    """How a query selects rows: SQL conditions on WITH_NAMES, and `check`, what a decoded
    row must also meet (None: the conditions decide alone)."""

    conditions: list[Any]
    check: Callable[[Decoded], bool] | None
    # Whether `check` turns away many of the rows the conditions select (confidence
    # bounds), or almost none (a metadata value, whose hash tag seldom collides): a scan
    # then reads a page's worth at a time, not a chunk of rows decoded for nothing.
    selective: bool = True

    def selects(self, row: Decoded) -> bool:
        return self.check is None or self.check(row)


def matching(conn: Connection, workspace_id: int, query: InferenceQuery) -> Matching | None:
    """The rows a query matches, or None when none can (it names a class or a metadata
    field the workspace never had)."""
    conditions = [
        inferences.c.workspace_id == workspace_id,
        inferences.c.ts >= query.period.start,
        inferences.c.ts < query.period.end,
    ]
    # A model or device by its id, looked up first: a condition on the row's own column is
    # what the indexes of the model's and the device's times serve (on a joined name the
    # planner walks the workspace's times instead).
    scope = resolve_scope(conn, workspace_id, Filters(query.model, query.device))
    if scope is None:
        return None
    if scope.model_id is not None:
        conditions.append(inferences.c.model_id == scope.model_id)
    if query.device is not None:
        conditions.append(inferences.c.device_id == scope.device_id)
    if query.has_image is not None:
        has = inferences.c.image_key.is_not(None)
        conditions.append(has if query.has_image else ~has)
    checks: list[Callable[[Decoded], bool]] = []
    if query.class_name is not None:
        tags = dictionaries.tags_of_class(conn, workspace_id, query.class_name)
        if not tags:
            return None
        conditions.append(or_(*(has_tag(inferences.c.tags, tag) for tag in tags)))
    bounded = query.min_confidence is not None or query.max_confidence is not None
    if bounded:
        checks.append(_one_prediction(query))
    for name, value in sorted(query.metadata.items()):
        field_tag = dictionaries.tag_of_field(conn, workspace_id, name)
        if field_tag is None:
            return None
        conditions.append(has_tag(inferences.c.tags, field_tag))
        conditions.append(has_tag(inferences.c.tags, value_tag(name, value)))
        checks.append(_metadata_is(name, value))
    if not checks:
        return Matching(conditions, None)
    return Matching(conditions, lambda row: all(check(row) for check in checks), selective=bounded)


def _one_prediction(query: InferenceQuery) -> Callable[[Decoded], bool]:
    """One prediction must meet every prediction condition ("a car below 0.5")."""
    low = query.min_confidence if query.min_confidence is not None else -1.0
    high = query.max_confidence if query.max_confidence is not None else 2.0
    name = query.class_name

    def check(row: Decoded) -> bool:
        for score in row.body.predictions:
            if low <= score.confidence <= high and (
                name is None or row.labels[score.label][0] == name
            ):
                return True
        return False

    return check


def _metadata_is(name: str, value: str) -> Callable[[Decoded], bool]:
    def check(row: Decoded) -> bool:
        found = row.metadata.get(name, _MISSING)
        return found is not _MISSING and encode_metadata_value(found)[0] == value  # type: ignore[arg-type]

    return check


_MISSING = object()


def _position(ts: datetime | int, pk: int) -> Any:
    """Rows after (ts, pk) in the newest-first order."""
    micros = ts if isinstance(ts, int) else to_micros(ts)
    column = type_coerce(inferences.c.ts, BigInteger)
    return or_(column < micros, and_(column == micros, inferences.c.id < pk))


def _scan(
    db: Database,
    conn: Connection,
    workspace_id: int,
    found: Matching,
    position: tuple[int, int] | None,
    wanted: int,
) -> tuple[list[Decoded], tuple[int, int] | None]:
    """Up to `wanted` matching rows, newest first, from after `position`; and where the
    scan stopped when it gave up early (MAX_EXAMINED), else None."""
    matched: list[Decoded] = []
    examined = 0
    while True:
        chunk = _CHUNK if found.check is not None and found.selective else wanted
        where = list(found.conditions)
        if position is not None:
            where.append(_position(*position))
        rows = conn.execute(
            select(*ROW_COLUMNS)
            .select_from(WITH_NAMES)
            .where(*where)
            .order_by(inferences.c.ts.desc(), inferences.c.id.desc())
            .limit(chunk)
        ).all()
        decoded = decode_rows(db, conn, workspace_id, rows)
        matched += [row for row in decoded if found.selects(row)][: wanted - len(matched)]
        examined += len(rows)
        if len(matched) >= wanted or len(rows) < chunk:
            return matched, None
        position = (to_micros(rows[-1].ts), rows[-1].id)
        if examined >= MAX_EXAMINED:
            return matched, position


def scan_all(
    db: Database, conn: Connection, workspace_id: int, found: Matching, chunk: int = 2000
) -> Iterator[Decoded]:
    """Every matching row, newest first, a chunk at a time (the selection's chart counts
    them all: it is as bounded as the period)."""
    position: tuple[int, int] | None = None
    while True:
        where = list(found.conditions)
        if position is not None:
            where.append(_position(*position))
        rows = conn.execute(
            select(*ROW_COLUMNS)
            .select_from(WITH_NAMES)
            .where(*where)
            .order_by(inferences.c.ts.desc(), inferences.c.id.desc())
            .limit(chunk)
        ).all()
        for row in decode_rows(db, conn, workspace_id, rows):
            if found.selects(row):
                yield row
        if len(rows) < chunk:
            return
        position = (to_micros(rows[-1].ts), rows[-1].id)


def list_inferences(
    db: Database, workspace_id: int, query: InferenceQuery
) -> tuple[list[InferenceRecord], str | None]:
    """A page of inferences, newest first, and the cursor of the next page (None at the end)."""
    position = decode_cursor(query.cursor) if query.cursor else None
    with db.read() as conn:
        found = matching(conn, workspace_id, query)
        if found is None:
            return [], None
        rows, stopped = _scan(db, conn, workspace_id, found, position, query.limit + 1)
        older = legacy.page(conn, workspace_id, query, position, query.limit + 1, stopped)
    records = sorted(
        [*(summary(row, LIST_PREDICTIONS) for row in rows), *older],
        key=lambda record: (record.timestamp, record.pk),
        reverse=True,
    )
    page = records[: query.limit]
    if len(records) > query.limit:
        return page, encode_cursor(page[-1].timestamp, page[-1].pk)
    if stopped is not None:
        return page, encode_cursor(from_micros(stopped[0]), stopped[1])
    return page, None


def export_rows(
    db: Database, workspace_id: int, query: InferenceQuery, page_size: int = 200
) -> Iterator[InferenceRecord]:
    """Every matching inference with an image, newest first: all predictions, the item as
    sent, and its image key. One page in memory at a time."""
    with_images = replace(query, has_image=True, cursor=None, limit=page_size)
    while True:
        page, cursor = list_inferences_full(db, workspace_id, with_images)
        yield from page
        if cursor is None:
            return
        with_images = replace(with_images, cursor=cursor)


def list_inferences_full(
    db: Database, workspace_id: int, query: InferenceQuery
) -> tuple[list[InferenceRecord], str | None]:
    """`list_inferences` with every prediction and the item as sent."""
    position = decode_cursor(query.cursor) if query.cursor else None
    with db.read() as conn:
        found = matching(conn, workspace_id, query)
        if found is None:
            return [], None
        rows, stopped = _scan(db, conn, workspace_id, found, position, query.limit + 1)
        older = legacy.page(
            conn, workspace_id, query, position, query.limit + 1, stopped, full=True
        )
    records = sorted(
        [*(replace(summary(row, None), item=row.item) for row in rows), *older],
        key=lambda record: (record.timestamp, record.pk),
        reverse=True,
    )
    page = records[: query.limit]
    if len(records) > query.limit:
        return page, encode_cursor(page[-1].timestamp, page[-1].pk)
    if stopped is not None:
        return page, encode_cursor(from_micros(stopped[0]), stopped[1])
    return page, None


def get_inference(db: Database, workspace_id: int, inference_id: str) -> InferenceRecord | None:
    with db.read() as conn:
        rows = conn.execute(
            select(*ROW_COLUMNS)
            .select_from(WITH_NAMES)
            .where(
                inferences.c.workspace_id == workspace_id,
                inferences.c.inference_id == encode_id(inference_id),
            )
        ).all()
        if not rows:
            return legacy.find(conn, workspace_id, inference_id)
        (row,) = decode_rows(db, conn, workspace_id, rows)
    return replace(summary(row, None), item=row.item)


def summary(row: Decoded, most: int | None) -> InferenceRecord:
    """The record of a decoded row, with at most `most` of its predictions (None: all)."""
    predictions = row.predictions
    classes: dict[str, list[float]] = {}
    for prediction in predictions:
        counted = classes.setdefault(prediction.class_name, [0, 0.0])
        counted[0] += 1
        counted[1] += prediction.confidence
    return record(
        pk=row.pk,
        inference_id=row.inference_id,
        model=row.model,
        device=row.device,
        timestamp=row.timestamp,
        received_at=row.received_at,
        task=row.body.task,
        inference_time=row.body.inference_time,
        image_width=row.body.image_width,
        image_height=row.body.image_height,
        error=row.body.error,
        predictions=predictions if most is None else predictions[:most],
        prediction_count=len(predictions),
        classes={name: (int(n), total) for name, (n, total) in classes.items()},
        metadata=row.metadata,
        image_key=row.image_key,
    )


__all__ = [
    "MAX_LIMIT",
    "BadCursor",
    "InferenceQuery",
    "InferenceRecord",
    "decode_cursor",
    "encode_cursor",
    "export_rows",
    "get_inference",
    "list_inferences",
    "matching",
]
