"""The ingest write path: one transaction per batch, bulk statements.

The rollups are not touched here: the batch's raw rows are committed with a row of
`rollup_queue` naming them, and the aggregator (store/aggregate.py) folds them into the
rollups exactly once, soon after (docs/architecture.md).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import orjson
from sqlalchemy import Connection, Row, delete, func, insert, select, update

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database
from visionwatch.db.schema import (
    inferences,
    models,
    pending_metadata,
    rollup_queue,
)
from visionwatch.db.types import to_micros
from visionwatch.histograms import time_bin
from visionwatch.images.blobs import BlobStore
from visionwatch.images.decode import CheckedImage
from visionwatch.items import Inference, encode_metadata_value, split_model_id
from visionwatch.store.capture import rules_of
from visionwatch.store.devices import Heartbeat, heartbeat_row, upsert_devices
from visionwatch.store.images import keep_image
from visionwatch.store.packed_items import pack

# How far from a batch's times PostgreSQL looks for an inference id sent before.
RESEND_WINDOW = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    images_kept: int = 0
    images_over_cap: int = 0


def ingest(
    db: Database,
    workspace_id: int,
    batch: list[Inference],
    now: datetime,
    heartbeat: Heartbeat | None = None,
    images: dict[str, CheckedImage] | None = None,
    blobs: BlobStore | None = None,
) -> IngestResult:
    """Store a validated batch whole or not at all; an inference id already stored counts once.

    A `heartbeat` of the sender (an inference server's report) is recorded
    in the same transaction. `images` (checked, by inference id) go to `blobs`
    for the new inferences, as far as their models' daily caps allow.
    """
    with_images = {i.inference_id: i for i in batch if i.inference_id in images} if images else {}
    return store_rows(
        db, workspace_id, Rows.of(batch, now), now, heartbeat, images, blobs, with_images
    )


def store_rows(
    db: Database,
    workspace_id: int,
    rows: "Rows",
    now: datetime,
    heartbeat: Heartbeat | None = None,
    images: dict[str, CheckedImage] | None = None,
    blobs: BlobStore | None = None,
    with_images: dict[str, Inference] | None = None,
) -> IngestResult:
    """`ingest` for rows prepared beforehand (`Rows.of`, maybe in another process): inside
    the transaction the writer (on SQLite, everyone's one writer) runs SQL only."""
    result: IngestResult = db.run_write(
        _ingest,
        db.dialect,
        workspace_id,
        rows,
        now,
        heartbeat,
        images or {},
        blobs,
        with_images or {},
    )
    return result


@dataclass(frozen=True, slots=True)
class Rows:
    """A batch's rows, ready for the statements of `_sql`: JSON text (one parameter per
    table) and small lists. Plain data, cheap to pickle: a parser process sends it back
    (visionwatch/parsers.py)."""

    sent: int  # items in the batch, repeated ids included
    ids: list[str]  # the first of each inference id, in the order sent
    models: list[tuple[str, str | None, str | None, str | None, datetime, datetime]]
    devices: list[tuple[str, datetime, datetime]]  # name, first and last inference time
    inferences: str
    predictions: str
    metadata: dict[tuple[str, str], tuple[str, str]]  # (inference id, field): (value, kind)
    times: tuple[int, int]  # the first and last inference times, in microseconds

    @classmethod
    def of(cls, batch: list[Inference], now: datetime) -> "Rows":
        unique = list({inference.inference_id: inference for inference in reversed(batch)}.values())
        unique.reverse()
        received = to_micros(now)
        times = {i.inference_id: to_micros(i.timestamp) for i in unique}
        # In id order: concurrent batches sharing ids lock them in one order (no deadlock).
        ordered = sorted(unique, key=lambda i: i.inference_id)
        inference_rows = [
            (
                i.inference_id,
                i.model,
                i.device,
                times[i.inference_id],
                received,
                i.inference_time,
                i.task,
                i.image_width,
                i.image_height,
                i.error,
                len(i.predictions),
                None if i.inference_time is None else time_bin(i.inference_time),
                # Last: JSON's ->> walks a row from its start.
                pack(i.item.encode() if isinstance(i.item, str) else orjson.dumps(i.item)),
            )
            for i in ordered
        ]
        # Each with its inference's position among the rows and its time: a batch whose
        # inferences are all new gets consecutive keys in that order (SQLite), and its
        # predictions need no lookup of their inference (see _sql).
        prediction_rows = [
            (
                i.inference_id,
                index,
                p.class_name,
                p.class_id,
                p.confidence,
                *p.box,
                position,
                times[i.inference_id],
            )
            for position, i in enumerate(ordered)
            for index, p in enumerate(i.predictions)
        ]
        metadata = {
            (i.inference_id, field): encode_metadata_value(value)
            for i in ordered
            for field, value in i.metadata.items()
        }
        return cls(
            sent=len(batch),
            ids=[i.inference_id for i in unique],
            models=_model_rows(unique),
            devices=_device_rows(unique),
            inferences=orjson.dumps(inference_rows).decode(),
            predictions=orjson.dumps(prediction_rows).decode(),
            metadata=metadata,
            times=(min(times.values(), default=0), max(times.values(), default=0)),
        )


def _model_rows(
    batch: list[Inference],
) -> list[tuple[str, str | None, str | None, str | None, datetime, datetime]]:
    """Per model: its project, version, task, and its inferences' first and last times."""
    tasks = {i.model: i.task for i in batch if i.task is not None}
    return [
        (name, *split_model_id(name), tasks.get(name), first, last)
        for name, first, last in _first_and_last((i.model, i.timestamp) for i in batch)
    ]


def _device_rows(batch: list[Inference]) -> list[tuple[str, datetime, datetime]]:
    return _first_and_last((i.device, i.timestamp) for i in batch if i.device is not None)


def _first_and_last(
    named: Iterable[tuple[str, datetime]],
) -> list[tuple[str, datetime, datetime]]:
    """Per name, in name order (concurrent batches lock their rows in one order): the first
    and last of its times."""
    seen: dict[str, tuple[datetime, datetime]] = {}
    for name, moment in named:
        first, last = seen.get(name, (moment, moment))
        seen[name] = (min(first, moment), max(last, moment))
    return [(name, first, last) for name, (first, last) in sorted(seen.items())]


def _ingest(
    conn: Connection,
    dialect: Dialect,
    workspace_id: int,
    rows: Rows,
    now: datetime,
    heartbeat: Heartbeat | None,
    images: dict[str, CheckedImage],
    blobs: BlobStore | None,
    with_images: dict[str, Inference],
) -> IngestResult:
    if heartbeat is not None:
        upsert_devices(conn, dialect, workspace_id, [heartbeat_row(heartbeat)], now)
    unique = rows.ids
    if not unique:
        return IngestResult(accepted=0, duplicates=0)
    dialects.lock_for_ingest(dialect, conn, workspace_id)
    _upsert_models(conn, dialect, workspace_id, rows.models)
    _upsert_devices(conn, dialect, workspace_id, rows.devices, now)
    sql = _sql(dialect)
    first, last, count = _insert_inferences(conn, sql, workspace_id, rows)
    accepted: list[str] = []
    pks: dict[str, int] = {}
    if count:
        span = (workspace_id, first, last, *rows.times)
        if rows.predictions == "[]":
            pass
        elif sql.new_predictions is not None and count == len(unique) == last - first + 1:
            conn.exec_driver_sql(sql.new_predictions, (workspace_id, first, rows.predictions))
        else:
            conn.exec_driver_sql(sql.predictions, (rows.predictions, *span))
        _insert_metadata(conn, sql, workspace_id, rows, span)
        conn.execute(
            insert(rollup_queue).values(
                workspace_id=workspace_id, first_pk=first, last_pk=last, enqueued_at=now
            )
        )
        if images or count != len(unique):  # which ones are new
            pks = {row[0]: row[1] for row in conn.exec_driver_sql(sql.new_ids, span)}
            accepted = [i for i in unique if i in pks]
        else:  # the usual case: all of them
            accepted = unique
    kept = 0
    if images and blobs is not None:
        new = [with_images[i] for i in accepted if i in with_images]
        kept = _keep_images(conn, dialect, blobs, workspace_id, new, pks, images, now)
    return IngestResult(
        accepted=len(accepted),
        duplicates=rows.sent - len(accepted),
        images_kept=kept,
        images_over_cap=sum(1 for i in accepted if i in images) - kept,
    )


@dataclass(frozen=True, slots=True)
class _Sql:
    before: str | None  # SQLite: the largest key before the insert
    inferences: str
    span: str | None  # SQLite: the keys inserted after `before`
    predictions: str
    # SQLite: the predictions of a batch whose inferences were all new, keyed by position.
    new_predictions: str | None
    metadata: str
    new_ids: str


# The fields of each JSON row, and their SQL types.
_INFERENCE_FIELDS = (
    ("inference_id", "TEXT"),
    ("model", "TEXT"),
    ("device", "TEXT"),
    ("ts", "BIGINT"),
    ("received_at", "BIGINT"),
    ("inference_time", "DOUBLE PRECISION"),
    ("task", "TEXT"),
    ("image_width", "BIGINT"),
    ("image_height", "BIGINT"),
    ("error", "TEXT"),
    ("prediction_count", "BIGINT"),
    ("time_bin", "BIGINT"),
    ("item", "TEXT"),
)
_PREDICTION_FIELDS = (
    ("inference_id", "TEXT"),
    ("idx", "BIGINT"),
    ("class_name", "TEXT"),
    ("class_id", "BIGINT"),
    ("confidence", "DOUBLE PRECISION"),
    ("x", "DOUBLE PRECISION"),
    ("y", "DOUBLE PRECISION"),
    ("width", "DOUBLE PRECISION"),
    ("height", "DOUBLE PRECISION"),
    ("position", "BIGINT"),
    ("ts", "BIGINT"),
)
_METADATA_FIELDS = (
    ("inference_id", "TEXT"),
    ("field", "TEXT"),
    ("value", "TEXT"),
    ("kind", "TEXT"),
)


@cache
def _sql(dialect: Dialect) -> _Sql:
    """The statements of an insert. Models and devices are found by name, and the batch's
    own inferences by id within the span of keys it inserted: an id sent before has an
    older key (the workspace's ingest lock orders its batches)."""
    mark = dialects.placeholder(dialect)

    def fields(spec: tuple[tuple[str, str], ...]) -> tuple[str, dict[str, str]]:
        source, sql = dialects.json_rows(dialect, tuple(kind for _, kind in spec))
        return source, dict(zip((name for name, _ in spec), sql, strict=True))

    source, f = fields(_INFERENCE_FIELDS)
    f_id = f["inference_id"]
    # CROSS JOIN fixes the order on SQLite: the rows, then each one's model and device.
    inferences = f"""
        INSERT INTO inferences (workspace_id, inference_id, model_id, device_id, ts,
            received_at, inference_time, task, image_width, image_height, error,
            prediction_count, image_key, item, time_bin)
        SELECT m.workspace_id, {f["inference_id"]}, m.id, d.id, {f["ts"]}, {f["received_at"]},
            {f["inference_time"]}, {f["task"]}, {f["image_width"]}, {f["image_height"]},
            {f["error"]}, {f["prediction_count"]}, NULL, {f["item"]}, {f["time_bin"]}
        FROM {source} CROSS JOIN models m
        LEFT JOIN devices d ON d.workspace_id = m.workspace_id AND d.name = {f["device"]}
        WHERE m.workspace_id = {mark} AND m.name = {f["model"]} {{sent_before}}
        {{order}}
        ON CONFLICT {{conflict}} DO NOTHING
    """
    # CROSS JOIN: SQLite then reads the rows first and finds each one's inference by its id
    # (left to itself it scanned the workspace's inferences for each row). The batch's
    # times keep PostgreSQL to the partitions that hold them.
    mine = f"""CROSS JOIN inferences i WHERE i.workspace_id = {mark}
        AND i.inference_id = {{inference_id}} AND i.id BETWEEN {mark} AND {mark}
        AND i.ts BETWEEN {mark} AND {mark}"""
    source, f = fields(_PREDICTION_FIELDS)
    predictions = f"""
        INSERT INTO predictions (workspace_id, inference_pk, idx, ts, class_name, class_id,
            confidence, x, y, width, height)
        SELECT i.workspace_id, i.id, {f["idx"]}, i.ts, {f["class_name"]}, {f["class_id"]},
            {f["confidence"]}, {f["x"]}, {f["y"]}, {f["width"]}, {f["height"]}
        FROM {source} {mine.format(inference_id=f["inference_id"])}
    """
    new_predictions = f"""
        INSERT INTO predictions (workspace_id, inference_pk, idx, ts, class_name, class_id,
            confidence, x, y, width, height)
        SELECT {mark}, {mark} + {f["position"]}, {f["idx"]}, {f["ts"]}, {f["class_name"]},
            {f["class_id"]}, {f["confidence"]}, {f["x"]}, {f["y"]}, {f["width"]}, {f["height"]}
        FROM {source}
    """
    source, f = fields(_METADATA_FIELDS)
    metadata = f"""
        INSERT INTO inference_metadata (workspace_id, inference_pk, field, value, kind, ts)
        SELECT i.workspace_id, i.id, {f["field"]}, {f["value"]}, {f["kind"]}, i.ts
        FROM {source} {mine.format(inference_id=f["inference_id"])}
    """
    new_ids = f"""
        SELECT inference_id, id FROM inferences
        WHERE workspace_id = {mark} AND id BETWEEN {mark} AND {mark}
        AND ts BETWEEN {mark} AND {mark}
    """
    if dialect is Dialect.SQLITE:
        # One writer: the keys after the largest one are this insert's, given in the order
        # of the rows (ORDER BY: the positions of new_predictions rely on it).
        return _Sql(
            before="SELECT COALESCE(MAX(id), 0) FROM inferences",
            inferences=inferences.format(
                sent_before="", order="ORDER BY j.key", conflict="(workspace_id, inference_id)"
            ),
            span=f"SELECT MIN(id), MAX(id), COUNT(*) FROM inferences WHERE id > {mark}",
            predictions=predictions,
            new_predictions=new_predictions,
            metadata=metadata,
            new_ids=new_ids,
        )
    return _Sql(
        before=None,
        inferences=inferences.format(
            sent_before=f"""AND NOT EXISTS (SELECT 1 FROM inferences x
                WHERE x.workspace_id = m.workspace_id AND x.inference_id = {f_id}
                AND x.ts BETWEEN {mark} AND {mark})""",
            order="",
            conflict="",
        )
        + " RETURNING id",
        span=None,
        predictions=predictions,
        new_predictions=None,
        metadata=metadata,
        new_ids=new_ids,
    )


def _insert_inferences(
    conn: Connection, sql: _Sql, workspace_id: int, rows: Rows
) -> tuple[int, int, int]:
    """Insert the rows not stored yet: the first and last keys inserted, and how many."""
    if sql.before is not None and sql.span is not None:
        before = conn.exec_driver_sql(sql.before).scalar_one()
        conn.exec_driver_sql(sql.inferences, (rows.inferences, workspace_id))
        first, last, count = conn.exec_driver_sql(sql.span, (before,)).one()
        return first or 0, last or 0, count
    # PostgreSQL's partitions are unique per week (a unique key must hold the partition
    # key), so an id sent before is looked for in the batch's times and a day either side:
    # a client that re-sends keeps its timestamp; the server's own time (none was sent)
    # moves by the delay of the retry. The workspace's ingest lock makes look-and-insert
    # one step.
    first, last = rows.times
    window = RESEND_WINDOW // timedelta(microseconds=1)
    params = (rows.inferences, workspace_id, first - window, last + window)
    keys = conn.exec_driver_sql(sql.inferences, params).scalars().all()
    return min(keys, default=0), max(keys, default=0), len(keys)


def _keep_images(
    conn: Connection,
    dialect: Dialect,
    blobs: BlobStore,
    workspace_id: int,
    new: list[Inference],
    pks: dict[str, int],
    images: dict[str, CheckedImage],
    now: datetime,
) -> int:
    """Point new inferences at their images, as far as the daily caps allow; how many kept."""
    kept = 0
    rules = rules_of(conn, workspace_id)  # once for the batch
    for inference in new:
        image = images.get(inference.inference_id)
        if image is None:
            continue
        stored = keep_image(conn, dialect, blobs, workspace_id, inference.model, rules, image, now)
        if stored is None:
            continue
        conn.execute(
            update(inferences)
            .where(
                inferences.c.id == pks[inference.inference_id],
                inferences.c.ts == inference.timestamp,  # its partition, on PostgreSQL
            )
            .values(
                image_key=stored.key,
                image_width=inference.image_width or stored.width,
                image_height=inference.image_height or stored.height,
            )
        )
        kept += 1
    return kept


def _upsert_models(
    conn: Connection, dialect: Dialect, workspace_id: int, found: list[tuple[Any, ...]]
) -> None:
    """The inference insert finds its models by name: no keys need come back."""
    rows = [
        {
            "workspace_id": workspace_id,
            "name": name,
            "project": project,
            "version": version,
            "task": task,
            "first_seen": first,
            "last_seen": last,
        }
        for name, project, version, task, first, last in found
    ]
    statement = dialects.insert(dialect, models)
    statement = statement.on_conflict_do_update(
        index_elements=["workspace_id", "name"],
        set_={
            "last_seen": dialects.greatest(
                dialect, models.c.last_seen, statement.excluded.last_seen
            ),
            "first_seen": dialects.least(
                dialect, models.c.first_seen, statement.excluded.first_seen
            ),
            "task": func.coalesce(statement.excluded.task, models.c.task),
        },
    )
    conn.execute(statement, rows)


def _upsert_devices(
    conn: Connection,
    dialect: Dialect,
    workspace_id: int,
    found: list[tuple[str, datetime, datetime]],
    now: datetime,
) -> None:
    """A device is last seen at its newest inference, not when its batch arrives: a batch sent
    late (a spool drained, a history imported) must not make a silent device look alive."""
    if not found:
        return
    rows: list[dict[str, object]] = [
        {"name": name, "first_seen": first, "last_seen": last} for name, first, last in found
    ]
    upsert_devices(conn, dialect, workspace_id, rows, now)


def _insert_metadata(
    conn: Connection,
    sql: _Sql,
    workspace_id: int,
    rows: Rows,
    span: tuple[int, int, int, int, int],
) -> None:
    values = rows.metadata
    # Metadata that came before its inference: it was sent after the fact, so it wins.
    pending = list(_pending_for(conn, workspace_id, rows.ids))
    if pending:
        values = dict(values)
        for row in pending:
            values[(row.inference_id, row.field)] = (row.value, row.kind)
        conn.execute(
            delete(pending_metadata).where(
                pending_metadata.c.workspace_id == workspace_id,
                pending_metadata.c.inference_id.in_({row.inference_id for row in pending}),
            )
        )
    if values:
        listed = [(inference_id, field, *value) for (inference_id, field), value in values.items()]
        conn.exec_driver_sql(sql.metadata, (orjson.dumps(listed).decode(), *span))


def _pending_for(conn: Connection, workspace_id: int, ids: list[str]) -> Iterable[Row[Any]]:
    # Pending metadata is rare: one indexed probe spares the lookup of every id.
    probe = select(pending_metadata.c.inference_id).where(
        pending_metadata.c.workspace_id == workspace_id
    )
    if conn.execute(probe.limit(1)).first() is None:
        return
    # Chunks keep the statement under SQLite's and PostgreSQL's parameter limits.
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        yield from conn.execute(
            select(pending_metadata).where(
                pending_metadata.c.workspace_id == workspace_id,
                pending_metadata.c.inference_id.in_(chunk),
            )
        )
