"""Raw inferences: the filtered, keyset-paginated list and the detail of one."""

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, and_, exists, func, or_, select, type_coerce

from visionwatch.db.engine import Database
from visionwatch.db.schema import devices, inference_metadata, inferences, models, predictions
from visionwatch.db.types import to_micros
from visionwatch.items import MetadataValue, Prediction, decode_metadata_value
from visionwatch.store.packed_items import unpack
from visionwatch.store.stats import Period

MAX_LIMIT = 500
# A list row carries at most this many predictions; the detail has them all.
LIST_PREDICTIONS = 100
# Classes named in a summary, most predicted first.
TOP_CLASSES = 3


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class InferenceRecord:
    """One stored inference as read back: what it was, where, and what it found. Shaping it
    for a reader (the API's JSON, a page) is theirs to do."""

    inference_id: str
    model: str
    device: str | None
    timestamp: datetime
    received_at: datetime
    task: str | None
    inference_time: float | None
    image_width: int | None
    image_height: int | None
    error: str | None
    prediction_count: int
    mean_confidence: float | None
    top_classes: list[str]
    predictions: list[Prediction]
    metadata: dict[str, MetadataValue]
    image_key: str | None
    item: Any = None  # the item as sent: in a detail or an export, not in a list

    @property
    def has_image(self) -> bool:
        return self.image_key is not None


@dataclass(frozen=True, slots=True)
class InferenceQuery:
    period: Period
    model: str | None = None
    device: str | None = None
    class_name: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    has_image: bool | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    limit: int = 50
    cursor: str | None = None


def encode_cursor(ts: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{to_micros(ts)}:{pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        micros, pk = base64.urlsafe_b64decode(padded.encode()).decode().split(":")
        return int(micros), int(pk)
    except (ValueError, UnicodeDecodeError):
        raise BadCursor("not a cursor from a previous page") from None


_SUMMARY_COLUMNS = (
    inferences.c.id,
    inferences.c.inference_id,
    inferences.c.ts,
    inferences.c.received_at,
    inferences.c.inference_time,
    inferences.c.task,
    inferences.c.image_width,
    inferences.c.image_height,
    inferences.c.error,
    inferences.c.prediction_count,
    inferences.c.image_key,
    models.c.name.label("model"),
    devices.c.name.label("device"),
)


def list_inferences(
    db: Database, workspace_id: int, query: InferenceQuery
) -> tuple[list[InferenceRecord], str | None]:
    """A page of inferences, newest first, and the cursor of the next page (None at the end)."""
    position = decode_cursor(query.cursor) if query.cursor else None
    with db.read() as conn:
        statement = _filtered(workspace_id, query, position)
        if statement is None:
            return [], None
        rows = conn.execute(statement.limit(query.limit + 1)).all()
        page = rows[: query.limit]
        pks = [row.id for row in page]
        by_pk = _predictions(conn, workspace_id, pks, LIST_PREDICTIONS)
        meta = _metadata(conn, workspace_id, pks)
        classes = _class_counts(conn, workspace_id, pks)
    items = [
        _summary(row, by_pk.get(row.id, []), meta.get(row.id, {}), classes.get(row.id, {}))
        for row in page
    ]
    next_cursor = encode_cursor(page[-1].ts, page[-1].id) if len(rows) > query.limit else None
    return items, next_cursor


def export_rows(
    db: Database, workspace_id: int, query: InferenceQuery, page_size: int = 200
) -> Iterator[InferenceRecord]:
    """Every matching inference with an image, newest first: all predictions, the item as
    sent, and its image key. One page in memory at a time."""
    position = None
    with_images = replace(query, has_image=True, cursor=None)
    while True:
        with db.read() as conn:
            statement = _filtered(workspace_id, with_images, position)
            if statement is None:
                return
            rows = conn.execute(statement.add_columns(inferences.c.item).limit(page_size)).all()
            pks = [row.id for row in rows]
            by_pk = _predictions(conn, workspace_id, pks, None)
            meta = _metadata(conn, workspace_id, pks)
        for row in rows:
            found = _summary(row, by_pk.get(row.id, []), meta.get(row.id, {}), {})
            yield replace(found, item=unpack(row.item))
        if len(rows) < page_size:
            return
        position = (to_micros(rows[-1].ts), rows[-1].id)


def _filtered(workspace_id: int, query: InferenceQuery, position: tuple[int, int] | None) -> Any:
    conditions, _ = matching(workspace_id, query)
    if position is not None:
        ts = type_coerce(inferences.c.ts, BigInteger)
        micros, pk = position
        conditions.append(or_(ts < micros, and_(ts == micros, inferences.c.id < pk)))
    return (
        select(*_SUMMARY_COLUMNS)
        .select_from(WITH_NAMES)
        .where(*conditions)
        .order_by(inferences.c.ts.desc(), inferences.c.id.desc())
    )


# Inferences with their model's and device's names, which filters name.
WITH_NAMES = inferences.join(models, models.c.id == inferences.c.model_id).outerjoin(
    devices, devices.c.id == inferences.c.device_id
)


def matching(workspace_id: int, query: InferenceQuery) -> tuple[list[Any], list[Any]]:
    """The conditions on WITH_NAMES of the inferences a query matches, and those a matching
    inference's prediction meets (one prediction must meet them all: "a car below 0.5")."""
    conditions = [
        inferences.c.workspace_id == workspace_id,
        inferences.c.ts >= query.period.start,
        inferences.c.ts < query.period.end,
    ]
    if query.model is not None:
        conditions.append(models.c.name == query.model)
    if query.device is not None:
        conditions.append(devices.c.name == query.device)
    if query.has_image is not None:
        has = inferences.c.image_key.is_not(None)
        conditions.append(has if query.has_image else ~has)
    prediction_conditions = []
    if query.class_name is not None:
        prediction_conditions.append(predictions.c.class_name == query.class_name)
    if query.min_confidence is not None:
        prediction_conditions.append(predictions.c.confidence >= query.min_confidence)
    if query.max_confidence is not None:
        prediction_conditions.append(predictions.c.confidence <= query.max_confidence)
    if prediction_conditions:
        # Correlated to the inference only: a statement that joins predictions itself
        # (store/selection.py) keeps this one's.
        conditions.append(
            exists()
            .where(
                predictions.c.workspace_id == workspace_id,
                predictions.c.inference_pk == inferences.c.id,
                *prediction_conditions,
            )
            .correlate(inferences)
        )
    for name, value in sorted(query.metadata.items()):
        conditions.append(
            exists().where(
                inference_metadata.c.workspace_id == workspace_id,
                inference_metadata.c.inference_pk == inferences.c.id,
                inference_metadata.c.field == name,
                inference_metadata.c.value == value,
            )
        )
    return conditions, prediction_conditions


def get_inference(db: Database, workspace_id: int, inference_id: str) -> InferenceRecord | None:
    with db.read() as conn:
        row = conn.execute(
            select(*_SUMMARY_COLUMNS, inferences.c.item)
            .select_from(
                inferences.join(models, models.c.id == inferences.c.model_id).outerjoin(
                    devices, devices.c.id == inferences.c.device_id
                )
            )
            .where(
                inferences.c.workspace_id == workspace_id,
                inferences.c.inference_id == inference_id,
            )
        ).one_or_none()
        if row is None:
            return None
        found = _predictions(conn, workspace_id, [row.id], None).get(row.id, [])
        meta = _metadata(conn, workspace_id, [row.id]).get(row.id, {})
        classes = _class_counts(conn, workspace_id, [row.id]).get(row.id, {})
    return replace(_summary(row, found, meta, classes), item=unpack(row.item))


def _summary(
    row: Any,
    found: list[Prediction],
    meta: dict[str, MetadataValue],
    classes: dict[str, tuple[int, float]],
) -> InferenceRecord:
    count = sum(n for n, _ in classes.values())
    mean = sum(total for _, total in classes.values()) / count if count else None
    # Most predicted first; ties by name, so the order is stable.
    ranked = sorted(classes.items(), key=lambda item: (-item[1][0], item[0]))
    return InferenceRecord(
        inference_id=row.inference_id,
        model=row.model,
        device=row.device,
        timestamp=row.ts,
        received_at=row.received_at,
        task=row.task,
        inference_time=row.inference_time,
        image_width=row.image_width,
        image_height=row.image_height,
        error=row.error,
        prediction_count=row.prediction_count,
        mean_confidence=mean,
        top_classes=[name for name, _ in ranked[:TOP_CLASSES]],
        predictions=found,
        metadata=meta,
        image_key=row.image_key,
    )


def _predictions(
    conn: Connection, workspace_id: int, pks: Sequence[int], per_inference: int | None
) -> dict[int, list[Prediction]]:
    if not pks:
        return {}
    conditions = [predictions.c.workspace_id == workspace_id, predictions.c.inference_pk.in_(pks)]
    if per_inference is not None:
        conditions.append(predictions.c.idx < per_inference)
    rows = conn.execute(
        select(predictions)
        .where(*conditions)
        .order_by(predictions.c.inference_pk, predictions.c.idx)
    )
    result: dict[int, list[Prediction]] = {}
    for r in rows:
        prediction = Prediction(r.class_name, r.confidence, r.class_id, r.x, r.y, r.width, r.height)
        result.setdefault(r.inference_pk, []).append(prediction)
    return result


def _class_counts(
    conn: Connection, workspace_id: int, pks: Sequence[int]
) -> dict[int, dict[str, tuple[int, float]]]:
    """Per inference: class -> (predictions, sum of their confidences), over all its predictions."""
    if not pks:
        return {}
    rows = conn.execute(
        select(
            predictions.c.inference_pk,
            predictions.c.class_name,
            func.count(),
            func.sum(predictions.c.confidence),
        )
        .where(predictions.c.workspace_id == workspace_id, predictions.c.inference_pk.in_(pks))
        .group_by(predictions.c.inference_pk, predictions.c.class_name)
    )
    result: dict[int, dict[str, tuple[int, float]]] = {}
    for pk, name, count, total in rows:
        result.setdefault(pk, {})[name] = (int(count), float(total))
    return result


def _metadata(
    conn: Connection, workspace_id: int, pks: Sequence[int]
) -> dict[int, dict[str, MetadataValue]]:
    if not pks:
        return {}
    rows = conn.execute(
        select(inference_metadata)
        .where(
            inference_metadata.c.workspace_id == workspace_id,
            inference_metadata.c.inference_pk.in_(pks),
        )
        .order_by(inference_metadata.c.inference_pk, inference_metadata.c.field)
    )
    result: dict[int, dict[str, MetadataValue]] = {}
    for r in rows:
        result.setdefault(r.inference_pk, {})[r.field] = decode_metadata_value(r.value, r.kind)
    return result
