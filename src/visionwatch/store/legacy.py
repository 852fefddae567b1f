"""Inferences of the first stored form, read as they are until they are rewritten.

Before migration 0016 an inference was a row of `inferences` with its item as sent (JSON,
deflated), a row of `predictions` per prediction and a row of `inference_metadata` per
metadata field. 0016 renames those three tables `legacy_*` and makes the stored form's
`inferences` beside them; the `rewrite` job (`rewrite_some`) then moves their rows into
the stored form a batch at a time, each batch in one transaction, keeping every key, and
drops the three tables once they are empty. It is resumable: what is left to do is what
is still in them. Meanwhile each inference is in exactly one of the two forms, and reads
see both: the inference table and its exports merge the two (`page`), an inference's page
looks in both (`find`); a write that changes a stored inference (metadata after the fact,
an image, a verdict) moves it first (`move_ids`), and so does the aggregator for a batch
queued before 0016 (`move_range`).
"""

import base64
import time
import zlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    Select,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.exc import ProgrammingError

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database
from visionwatch.db.schema import devices, inferences, models
from visionwatch.db.types import Timestamp, to_micros
from visionwatch.items import Inference, Prediction, decode_metadata_value
from visionwatch.packed.stored import pack_inference, split_server_result
from visionwatch.store import dictionaries
from visionwatch.store.records import InferenceQuery, InferenceRecord, record

# Rows moved by one run of the rewrite job: a transaction of bounded size, short enough
# that ingest (SQLite's one writer) waits little for it.
BATCH = 1000

_legacy = MetaData()
legacy_inferences = Table(
    "legacy_inferences",
    _legacy,
    Column("id", BigInteger, primary_key=True),
    Column("workspace_id", Integer),
    Column("inference_id", String(128)),
    Column("model_id", Integer),
    Column("device_id", Integer),
    Column("ts", Timestamp),
    Column("received_at", Timestamp),
    Column("inference_time", Float),
    Column("task", String(32)),
    Column("image_width", Integer),
    Column("image_height", Integer),
    Column("error", Text),
    Column("prediction_count", Integer),
    Column("image_key", String(512)),
    Column("item", Text),
    Column("time_bin", SmallInteger),
)
legacy_predictions = Table(
    "legacy_predictions",
    _legacy,
    Column("workspace_id", Integer),
    Column("inference_pk", BigInteger),
    Column("idx", SmallInteger),
    Column("ts", Timestamp),
    Column("class_name", String(256)),
    Column("class_id", Integer),
    Column("confidence", Float),
    Column("x", Float),
    Column("y", Float),
    Column("width", Float),
    Column("height", Float),
)
legacy_metadata = Table(
    "legacy_inference_metadata",
    _legacy,
    Column("workspace_id", Integer),
    Column("inference_pk", BigInteger),
    Column("field", String(128)),
    Column("value", String(1024)),
    Column("kind", String(1)),
    Column("ts", Timestamp),
)
TABLES = ("legacy_inference_metadata", "legacy_predictions", "legacy_inferences")


def present(conn: Connection) -> bool:
    """Whether rows of the first form may remain (its tables are there)."""
    if conn.dialect.name == "sqlite":
        found = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'legacy_inferences'"
        ).first()
        return found is not None
    if conn.execute(text("SELECT to_regclass('legacy_inferences')")).scalar() is None:
        return False
    # Held until the transaction ends: the rewrite job drops the tables only under the
    # exclusive lock, so they stay while this transaction uses them.
    dialects.lock_legacy(Dialect.POSTGRESQL, conn)
    # Whether the job dropped them while this waited: a lookup by name may answer from
    # this backend's cache of the catalog, which only a table's lock brings up to date.
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("LOCK TABLE legacy_inferences IN ACCESS SHARE MODE")
    except ProgrammingError:
        return False
    return True


# The item as sent, in the first form: deflated against this dictionary, "1:" and base64;
# or plain JSON when stored before that.
_ITEM_DICTIONARY = (
    b'{"request_time":,"inference":{"inference_server_id":"","inference_server_version":"'
    b'"request":{"id":"","model_id":"","model_type":"object-detection","confidence":0.4,'
    b'"source":null,"source_info":null,"image":{"type":"base64","value":null},"disable_'
    b'active_learning":false,"visualize_predictions":false},"response":[{"time":,"image":'
    b'{"width":,"height":},"predictions":[{"class":"","class_id":,"detection_id":"",'
    b'"parent_id":"","points":[{"x":,"y":}],"source":"workflow","results":['
    b'"image":{"width":,"height":},"error":null,"tags":[],"metadata":{},'
    b'"inference_id":"","model_id":"","device_id":"","timestamp":"2026-","inference_time":0.0'
    b',"predictions":[{"class":"","confidence":0.,"x":,"y":,"width":,"height":}]'
    b',"metadata":{"'
)


def unpack_item(stored: str) -> Any:
    if stored.startswith("1:"):
        inflater = zlib.decompressobj(-15, zdict=_ITEM_DICTIONARY)
        deflated = base64.b64decode(stored[2:])
        return orjson.loads(inflater.decompress(deflated) + inflater.flush())
    return orjson.loads(stored)


_NAMED = legacy_inferences.join(models, models.c.id == legacy_inferences.c.model_id).outerjoin(
    devices, devices.c.id == legacy_inferences.c.device_id
)


def _rows(conn: Connection, where: Sequence[Any], limit: int | None = None) -> list[Any]:
    query: Select[Any] = (
        select(legacy_inferences, models.c.name.label("model"), devices.c.name.label("device"))
        .select_from(_NAMED)
        .where(*where)
        .order_by(legacy_inferences.c.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query).all())


def _children(
    conn: Connection, rows: Sequence[Any]
) -> tuple[dict[int, list[Prediction]], dict[int, dict[str, Any]]]:
    """The predictions and metadata of legacy rows, by key."""
    predictions: dict[int, list[Prediction]] = {}
    metadata: dict[int, dict[str, Any]] = {}
    by_workspace: dict[int, list[int]] = {}
    for row in rows:
        by_workspace.setdefault(row.workspace_id, []).append(row.id)
    for workspace_id, pks in by_workspace.items():
        for start in range(0, len(pks), 500):
            chunk = pks[start : start + 500]
            for p in conn.execute(
                select(legacy_predictions)
                .where(
                    legacy_predictions.c.workspace_id == workspace_id,
                    legacy_predictions.c.inference_pk.in_(chunk),
                )
                .order_by(legacy_predictions.c.inference_pk, legacy_predictions.c.idx)
            ):
                predictions.setdefault(p.inference_pk, []).append(
                    Prediction(p.class_name, p.confidence, p.class_id, p.x, p.y, p.width, p.height)
                )
            for m in conn.execute(
                select(legacy_metadata)
                .where(
                    legacy_metadata.c.workspace_id == workspace_id,
                    legacy_metadata.c.inference_pk.in_(chunk),
                )
                .order_by(legacy_metadata.c.inference_pk, legacy_metadata.c.field)
            ):
                metadata.setdefault(m.inference_pk, {})[m.field] = decode_metadata_value(
                    m.value, m.kind
                )
    return predictions, metadata


def _inference(row: Any, predictions: list[Prediction], metadata: dict[str, Any]) -> Inference:
    return Inference(
        inference_id=row.inference_id,
        model=row.model,
        timestamp=row.ts,
        task=row.task,
        predictions=predictions,
        item=unpack_item(row.item),
        device=row.device,
        inference_time=row.inference_time,
        image_width=row.image_width,
        image_height=row.image_height,
        error=row.error,
        metadata=metadata,
    )


def _record(
    row: Any, predictions: list[Prediction], metadata: dict[str, Any], full: bool
) -> InferenceRecord:
    classes: dict[str, tuple[int, float]] = {}
    for prediction in predictions:
        count, total = classes.get(prediction.class_name, (0, 0.0))
        classes[prediction.class_name] = (count + 1, total + prediction.confidence)
    found = record(
        pk=row.id,
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
        predictions=predictions if full else predictions[:100],
        prediction_count=row.prediction_count,
        classes=classes,
        metadata=metadata,
        image_key=row.image_key,
    )
    return replace(found, item=unpack_item(row.item)) if full else found


def _move(conn: Connection, dialect: Dialect, rows: Sequence[Any]) -> int:
    """Move legacy rows into the stored form, keeping their keys; how many."""
    if not rows:
        return 0
    predictions, metadata = _children(conn, rows)
    made = []
    for row in rows:
        inference = _inference(row, predictions.get(row.id, []), metadata.get(row.id, {}))
        raw = inference.item
        if isinstance(raw, dict) and "inference" in raw and "request_time" in raw:
            inference.item = split_server_result(inference, raw)
        packed = pack_inference(inference, row.received_at)
        ensured = dictionaries.ensure(
            None, conn, dialect, row.workspace_id, packed.labels, packed.fields
        )
        tags = "".join(ensured.label_tags) + "".join(ensured.field_tags) + packed.values
        made.append(
            {
                "id": row.id,
                "workspace_id": row.workspace_id,
                "inference_id": packed.inference_id,
                "model_id": row.model_id,
                "device_id": row.device_id,
                "ts": row.ts,
                "tags": tags or None,
                "body": packed.body,
                "image_key": row.image_key,
            }
        )
    conn.execute(insert(inferences), made)
    by_workspace: dict[int, list[int]] = {}
    for row in rows:
        by_workspace.setdefault(row.workspace_id, []).append(row.id)
    for workspace_id, pks in by_workspace.items():
        for table in (legacy_predictions, legacy_metadata):
            conn.execute(
                delete(table).where(
                    table.c.workspace_id == workspace_id, table.c.inference_pk.in_(pks)
                )
            )
        conn.execute(delete(legacy_inferences).where(legacy_inferences.c.id.in_(pks)))
    return len(rows)


def move_range(
    conn: Connection, dialect: Dialect, workspace_id: int, first: int, last: int
) -> None:
    """Move a workspace's legacy rows with keys in [first, last] (a batch queued before 0016)."""
    if not present(conn):
        return
    where = [
        legacy_inferences.c.workspace_id == workspace_id,
        legacy_inferences.c.id.between(first, last),
    ]
    while _move(conn, dialect, _rows(conn, where, BATCH)) == BATCH:
        pass


def move_ids(
    conn: Connection, dialect: Dialect, workspace_id: int, inference_ids: Sequence[str]
) -> None:
    """Move these inferences of a workspace, those still in the first form."""
    if not inference_ids or not present(conn):
        return
    for start in range(0, len(inference_ids), 500):
        chunk = list(inference_ids[start : start + 500])
        _move(
            conn,
            dialect,
            _rows(
                conn,
                [
                    legacy_inferences.c.workspace_id == workspace_id,
                    legacy_inferences.c.inference_id.in_(chunk),
                ],
            ),
        )


def rewrite(db: Database, pause: float = 0.05) -> int:
    """The rewrite job: every row of the first form moved, a batch per transaction (with a
    pause between for the writes waiting), then its tables dropped; how many moved."""
    moved = 0
    while True:
        done: int = db.run_write(rewrite_some, db.dialect)
        moved += done
        if not done:
            return moved
        time.sleep(pause)


def rewrite_some(conn: Connection, dialect: Dialect, limit: int = BATCH) -> int:
    """The rewrite job's work: move up to `limit` rows, lowest keys first; when none are
    left, drop the tables of the first form unless a read uses them (the next round
    tries again). How many were moved."""
    if not present(conn):
        return 0
    moved = _move(conn, dialect, _rows(conn, [], limit))
    if moved == 0 and dialects.may_drop_legacy(dialect, conn):
        for table in TABLES:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    return moved


def _matching(conn: Connection, workspace_id: int, query: InferenceQuery) -> list[Any]:
    """The first form's conditions of a query (its predictions and metadata are rows)."""
    conditions = [
        legacy_inferences.c.workspace_id == workspace_id,
        legacy_inferences.c.ts >= query.period.start,
        legacy_inferences.c.ts < query.period.end,
    ]
    if query.model is not None:
        conditions.append(models.c.name == query.model)
    if query.device is not None:
        conditions.append(devices.c.name == query.device)
    if query.has_image is not None:
        has = legacy_inferences.c.image_key.is_not(None)
        conditions.append(has if query.has_image else ~has)
    prediction_conditions = []
    if query.class_name is not None:
        prediction_conditions.append(legacy_predictions.c.class_name == query.class_name)
    if query.min_confidence is not None:
        prediction_conditions.append(legacy_predictions.c.confidence >= query.min_confidence)
    if query.max_confidence is not None:
        prediction_conditions.append(legacy_predictions.c.confidence <= query.max_confidence)
    if prediction_conditions:
        conditions.append(
            exists().where(
                legacy_predictions.c.workspace_id == workspace_id,
                legacy_predictions.c.inference_pk == legacy_inferences.c.id,
                *prediction_conditions,
            )
        )
    for name, value in sorted(query.metadata.items()):
        conditions.append(
            exists().where(
                legacy_metadata.c.workspace_id == workspace_id,
                legacy_metadata.c.inference_pk == legacy_inferences.c.id,
                legacy_metadata.c.field == name,
                legacy_metadata.c.value == value,
            )
        )
    return conditions


def _after(position: tuple[int, int]) -> Any:
    micros, pk = position
    column = type_coerce(legacy_inferences.c.ts, BigInteger)
    return or_(column < micros, and_(column == micros, legacy_inferences.c.id < pk))


def _not_after(position: tuple[int, int]) -> Any:
    """At or before `position` in the newest-first order."""
    micros, pk = position
    column = type_coerce(legacy_inferences.c.ts, BigInteger)
    return or_(column > micros, and_(column == micros, legacy_inferences.c.id >= pk))


def page(
    conn: Connection,
    workspace_id: int,
    query: InferenceQuery,
    position: tuple[int, int] | None,
    wanted: int,
    stopped: tuple[int, int] | None,
    *,
    full: bool = False,
) -> list[InferenceRecord]:
    """Up to `wanted` matching inferences of the first form, newest first, after
    `position` and not past `stopped` (where the stored form's scan gave up)."""
    if not present(conn):
        return []
    where = _matching(conn, workspace_id, query)
    if position is not None:
        where.append(_after(position))
    if stopped is not None:
        where.append(_not_after(stopped))
    rows = conn.execute(
        select(legacy_inferences, models.c.name.label("model"), devices.c.name.label("device"))
        .select_from(_NAMED)
        .where(*where)
        .order_by(legacy_inferences.c.ts.desc(), legacy_inferences.c.id.desc())
        .limit(wanted)
    ).all()
    predictions, metadata = _children(conn, rows)
    return [
        _record(row, predictions.get(row.id, []), metadata.get(row.id, {}), full) for row in rows
    ]


def find(conn: Connection, workspace_id: int, inference_id: str) -> InferenceRecord | None:
    """An inference of the first form, with the item as sent."""
    if not present(conn):
        return None
    rows = _rows(
        conn,
        [
            legacy_inferences.c.workspace_id == workspace_id,
            legacy_inferences.c.inference_id == inference_id,
        ],
    )
    if not rows:
        return None
    predictions, metadata = _children(conn, rows)
    row = rows[0]
    return _record(row, predictions.get(row.id, []), metadata.get(row.id, {}), True)


def counts(
    conn: Connection, workspace_id: int, query: InferenceQuery, micros: int
) -> list[tuple[int, Prediction | None]]:
    """Per matching inference of the first form: its time's interval start (of `micros`
    microseconds) and each of its predictions the query selects (None for none), for
    the filtered selection's chart (store/selection.py)."""
    if not present(conn):
        return []
    rows = conn.execute(
        select(legacy_inferences.c.id, legacy_inferences.c.ts)
        .select_from(_NAMED)
        .where(*_matching(conn, workspace_id, query))
    ).all()
    predictions, _ = _children(conn, rows)
    low = query.min_confidence if query.min_confidence is not None else -1.0
    high = query.max_confidence if query.max_confidence is not None else 2.0
    found: list[tuple[int, Prediction | None]] = []
    for row in rows:
        bucket = to_micros(row.ts) // micros * micros
        chosen = [
            p
            for p in predictions.get(row.id, [])
            if low <= p.confidence <= high
            and (query.class_name is None or p.class_name == query.class_name)
        ]
        found.append((bucket, None))
        found += [(bucket, p) for p in chosen]
    return found


def is_empty(conn: Connection) -> bool:
    if not present(conn):
        return True
    return conn.execute(select(func.count()).select_from(legacy_inferences)).scalar_one() == 0


def key_of(conn: Connection, workspace_id: int, inference_id: str) -> int | None:
    """The key of an inference of the first form."""
    if not present(conn):
        return None
    found = conn.execute(
        select(legacy_inferences.c.id).where(
            legacy_inferences.c.workspace_id == workspace_id,
            legacy_inferences.c.inference_id == inference_id,
        )
    ).scalar_one_or_none()
    return None if found is None else int(found)


def image_key_of(conn: Connection, workspace_id: int, inference_id: str) -> str | None:
    if not present(conn):
        return None
    found: str | None = conn.execute(
        select(legacy_inferences.c.image_key).where(
            legacy_inferences.c.workspace_id == workspace_id,
            legacy_inferences.c.inference_id == inference_id,
        )
    ).scalar_one_or_none()
    return found
