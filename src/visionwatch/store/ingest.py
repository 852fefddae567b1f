"""The ingest write path: one transaction per batch, bulk statements.

The rollups are not touched here: the batch's raw rows are committed with a row of
`rollup_queue` naming them, and the aggregator (store/aggregate.py) folds them into the
rollups exactly once, soon after (docs/architecture.md).
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace
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
from visionwatch.images.blobs import BlobStore
from visionwatch.images.decode import CheckedImage
from visionwatch.items import Inference, MetadataValue, decode_metadata_value, split_model_id
from visionwatch.packed.ids import decode_id
from visionwatch.packed.stored import Label, pack_inference
from visionwatch.rollups import minute_rows
from visionwatch.store import dictionaries, legacy
from visionwatch.store.capture import rules_of
from visionwatch.store.devices import Heartbeat, heartbeat_row, upsert_devices
from visionwatch.store.images import keep_image
from visionwatch.store.metadata import set_metadata

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
    result, ensured = db.run_write(
        _ingest,
        db,
        workspace_id,
        rows,
        now,
        heartbeat,
        images or {},
        blobs,
        with_images or {},
    )
    if ensured is not None:
        dictionaries.remember(db, workspace_id, ensured)
    return result


@dataclass(frozen=True, slots=True)
class Rows:
    """A batch's rows, ready for the statements of `_sql`: its inferences as one JSON text
    and their binary columns as one blob (a parameter each), and small lists. Plain data,
    cheap to pickle: a parser process sends it back (visionwatch/parsers.py)."""

    sent: int  # items in the batch, repeated ids included
    ids: list[str]  # the first of each inference id, in the order sent
    models: list[tuple[str, str | None, str | None, str | None, datetime, datetime]]
    devices: list[tuple[str, datetime, datetime]]  # name, first and last inference time
    labels: list[Label]  # the batch's classes, which its rows name by position
    fields: list[str]  # the batch's metadata fields, likewise
    inferences: str
    blob: bytes
    deltas: str  # the batch's minute rollups (rollups.MinuteRows), JSON
    times: tuple[int, int]  # the first and last inference times, in microseconds

    @classmethod
    def of(cls, batch: list[Inference], now: datetime) -> "Rows":
        unique = list({inference.inference_id: inference for inference in reversed(batch)}.values())
        unique.reverse()
        times = {i.inference_id: to_micros(i.timestamp) for i in unique}
        # In id order: concurrent batches sharing ids lock them in one order (no deadlock).
        ordered = sorted(unique, key=lambda i: i.inference_id)
        labels: dict[Label, int] = {}
        fields: dict[str, int] = {}
        blob = bytearray()
        rows = []
        for i in ordered:
            packed = pack_inference(i, now)
            id_at = len(blob) + 1  # SQL counts bytes from 1
            blob += packed.inference_id
            body_at = len(blob) + 1
            blob += packed.body
            rows.append(
                (
                    i.inference_id,
                    id_at,
                    len(packed.inference_id),
                    i.model,
                    i.device,
                    times[i.inference_id],
                    body_at,
                    len(packed.body),
                    [labels.setdefault(label, len(labels)) for label in packed.labels],
                    [fields.setdefault(name, len(fields)) for name in packed.fields],
                    packed.values,
                )
            )
        return cls(
            sent=len(batch),
            ids=[i.inference_id for i in unique],
            models=_model_rows(unique),
            devices=_device_rows(unique),
            labels=list(labels),
            fields=list(fields),
            inferences=orjson.dumps(rows).decode(),
            blob=bytes(blob),
            deltas=orjson.dumps(minute_rows(ordered).as_json()).decode(),
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
    db: Database,
    workspace_id: int,
    rows: Rows,
    now: datetime,
    heartbeat: Heartbeat | None,
    images: dict[str, CheckedImage],
    blobs: BlobStore | None,
    with_images: dict[str, Inference],
) -> tuple[IngestResult, dictionaries.Ensured | None]:
    dialect = db.dialect
    if heartbeat is not None:
        upsert_devices(conn, dialect, workspace_id, [heartbeat_row(heartbeat)], now)
    unique = rows.ids
    if not unique:
        return IngestResult(accepted=0, duplicates=0), None
    dialects.lock_for_ingest(dialect, conn, workspace_id)
    _upsert_models(conn, dialect, workspace_id, rows.models)
    _upsert_devices(conn, dialect, workspace_id, rows.devices, now)
    ensured = dictionaries.ensure(db, conn, dialect, workspace_id, rows.labels, rows.fields)
    sql = _sql(dialect, legacy.present(conn))
    for statement in sql.scratch:
        conn.exec_driver_sql(statement)
    conn.exec_driver_sql(sql.label_tags, {"tags": dictionaries.tags_json(ensured.label_tags)})
    conn.exec_driver_sql(sql.field_tags, {"tags": dictionaries.tags_json(ensured.field_tags)})
    first, last, count = _insert_inferences(conn, sql, workspace_id, rows)
    accepted: list[str] = []
    pks: dict[str, int] = {}
    if count:
        # Every inference new: the batch's rollups as parsed. Else the aggregator derives
        # those of the new ones from their rows.
        deltas = rows.deltas if count == len(unique) else None
        conn.execute(
            insert(rollup_queue).values(
                workspace_id=workspace_id,
                first_pk=first,
                last_pk=last,
                first_ts=rows.times[0],
                last_ts=rows.times[1],
                enqueued_at=now,
                deltas=deltas,
            )
        )
        span = (workspace_id, first, last, *rows.times)
        if images or count != len(unique):  # which ones are new
            pks = {decode_id(row[0]): row[1] for row in conn.exec_driver_sql(sql.new_ids, span)}
            accepted = [i for i in unique if i in pks]
        else:  # the usual case: all of them
            accepted = unique
        _apply_pending_metadata(conn, db, workspace_id, accepted)
    kept = 0
    if images and blobs is not None:
        new = [with_images[i] for i in accepted if i in with_images]
        kept = _keep_images(conn, db, blobs, workspace_id, new, pks, images, now)
    result = IngestResult(
        accepted=len(accepted),
        duplicates=rows.sent - len(accepted),
        images_kept=kept,
        images_over_cap=sum(1 for i in accepted if i in images) - kept,
    )
    return result, ensured


@dataclass(frozen=True, slots=True)
class _Sql:
    scratch: tuple[str, ...]  # the batch's labels and fields by position, emptied
    label_tags: str
    field_tags: str
    before: str | None  # SQLite: the largest key before the insert
    inferences: str
    span: str | None  # SQLite: the keys inserted after `before`
    new_ids: str


# The fields of each JSON row (Rows.of), and their SQL types.
_ROW = (
    "inference_id",
    "id_at",
    "id_length",
    "model",
    "device",
    "ts",
    "body_at",
    "body_length",
    "labels",
    "fields",
    "values",
)


@cache
def _sql(dialect: Dialect, with_legacy: bool) -> _Sql:
    """The statements of an insert. Models and devices are found by name, a row's tags by
    the positions of its labels and fields in the batch (scratch tables the writer fills
    from the dictionaries); an id sent before has an older key (the workspace's ingest
    lock orders its batches). While rows of the first stored form wait to be rewritten
    (store/legacy.py), an id stored there counts as sent before too."""
    mark = dialects.placeholder(dialect)
    at = {name: n for n, name in enumerate(_ROW)}

    def field(name: str, kind: str = "TEXT") -> str:
        return dialects.json_field(dialect, at[name], kind)

    blob = dialects.named(dialect, "blob")
    inference_id = dialects.blob_slice(
        dialect, blob, field("id_at", "INTEGER"), field("id_length", "INTEGER")
    )
    body = dialects.blob_slice(
        dialect, blob, field("body_at", "INTEGER"), field("body_length", "INTEGER")
    )
    tags = (
        f"NULLIF({dialects.joined_tags(dialect, at['labels'], 'batch_labels')}"
        f" || {dialects.joined_tags(dialect, at['fields'], 'batch_fields')}"
        f" || {field('values')}, '')"
    )
    workspace = dialects.named(dialect, "workspace_id")
    legacy_check = ""
    if with_legacy:
        legacy_check = f"""AND NOT EXISTS (SELECT 1 FROM legacy_inferences x
            WHERE x.workspace_id = m.workspace_id AND x.inference_id = {field("inference_id")}
            {{legacy_window}})"""
    # CROSS JOIN fixes the order on SQLite: the rows, then each one's model and device.
    inferences = f"""
        INSERT INTO inferences (workspace_id, inference_id, model_id, device_id, ts, tags,
            body, image_key)
        SELECT m.workspace_id, {inference_id}, m.id, d.id, {field("ts", "BIGINT")}, {tags},
            {body}, NULL
        FROM {dialects.json_rows_named(dialect, "rows")} CROSS JOIN models m
        LEFT JOIN devices d ON d.workspace_id = m.workspace_id AND d.name = {field("device")}
        WHERE m.workspace_id = {workspace} AND m.name = {field("model")} {{sent_before}}
        {legacy_check}
        {{order}}
        ON CONFLICT {{conflict}} DO NOTHING
    """
    new_ids = f"""
        SELECT inference_id, id FROM inferences
        WHERE workspace_id = {mark} AND id BETWEEN {mark} AND {mark}
        AND ts BETWEEN {mark} AND {mark}
    """
    scratch = (
        *dictionaries.batch_tags(dialect, "batch_labels"),
        *dictionaries.batch_tags(dialect, "batch_fields"),
    )
    tags_source = dialects.json_rows_named(dialect, "tags")
    position = "j.key" if dialect is Dialect.SQLITE else "j.n - 1"
    tag_value = "j.value" if dialect is Dialect.SQLITE else "j.value #>> '{}'"
    if dialect is Dialect.POSTGRESQL:
        tags_source = "jsonb_array_elements(CAST(%(tags)s AS jsonb)) WITH ORDINALITY AS j(value, n)"

    def filled(table: str) -> str:
        return f"INSERT INTO {table} (pos, tag) SELECT {position}, {tag_value} FROM {tags_source}"

    window = dialects.named(dialect, "low"), dialects.named(dialect, "high")
    if dialect is Dialect.SQLITE:
        # One writer: the keys after the largest one are this insert's.
        return _Sql(
            scratch=scratch,
            label_tags=filled("batch_labels"),
            field_tags=filled("batch_fields"),
            before="SELECT COALESCE(MAX(id), 0) FROM inferences",
            inferences=inferences.format(
                sent_before="",
                legacy_window="",
                order="ORDER BY j.key",
                conflict="(workspace_id, inference_id)",
            ),
            span=f"SELECT MIN(id), MAX(id), COUNT(*) FROM inferences WHERE id > {mark}",
            new_ids=new_ids,
        )
    return _Sql(
        scratch=scratch,
        label_tags=filled("batch_labels"),
        field_tags=filled("batch_fields"),
        before=None,
        inferences=inferences.format(
            # The resend check probes the hash index on inference_id once a row. The
            # window's bounds prune the weeks; `+ 0` keeps the planner off the key
            # (workspace, ts, id), which it prefers for a week it has no statistics of
            # yet (a new week, until autovacuum analyzes it) and then scans the whole
            # window once a row: ingest fell to 0.02 of its floor on a camera's traffic.
            sent_before=f"""AND NOT EXISTS (SELECT 1 FROM inferences x
                WHERE x.workspace_id + 0 = m.workspace_id AND x.inference_id = {inference_id}
                AND x.ts BETWEEN {window[0]} AND {window[1]})""",
            legacy_window=f"AND x.ts BETWEEN {window[0]} AND {window[1]}",
            order="",
            conflict="",
        )
        + " RETURNING id",
        span=None,
        new_ids=new_ids,
    )


def _insert_inferences(
    conn: Connection, sql: _Sql, workspace_id: int, rows: Rows
) -> tuple[int, int, int]:
    """Insert the rows not stored yet: the first and last keys inserted, and how many."""
    params: dict[str, Any] = {
        "rows": rows.inferences,
        "blob": rows.blob,
        "workspace_id": workspace_id,
    }
    if sql.before is not None and sql.span is not None:
        before = conn.exec_driver_sql(sql.before).scalar_one()
        conn.exec_driver_sql(sql.inferences, params)
        first, last, count = conn.exec_driver_sql(sql.span, (before,)).one()
        return first or 0, last or 0, count
    # PostgreSQL's partitions are unique per week (a unique key must hold the partition
    # key), so an id sent before is looked for in the batch's times and a day either side:
    # a client that re-sends keeps its timestamp; the server's own time (none was sent)
    # moves by the delay of the retry. The workspace's ingest lock makes look-and-insert
    # one step.
    first, last = rows.times
    window = RESEND_WINDOW // timedelta(microseconds=1)
    params.update(low=first - window, high=last + window)
    keys = conn.exec_driver_sql(sql.inferences, params).scalars().all()
    return min(keys, default=0), max(keys, default=0), len(keys)


def _keep_images(
    conn: Connection,
    db: Database,
    blobs: BlobStore,
    workspace_id: int,
    new: list[Inference],
    pks: dict[str, int],
    images: dict[str, CheckedImage],
    now: datetime,
) -> int:
    """Point new inferences at their images, as far as the daily caps allow; how many kept.
    An inference that did not say its image's size takes the image's."""
    kept = 0
    rules = rules_of(conn, workspace_id)  # once for the batch
    for inference in new:
        image = images.get(inference.inference_id)
        if image is None:
            continue
        stored = keep_image(
            conn, db.dialect, blobs, workspace_id, inference.model, rules, image, now
        )
        if stored is None:
            continue
        sized = replace(
            inference,
            image_width=inference.image_width or stored.width,
            image_height=inference.image_height or stored.height,
        )
        conn.execute(
            update(inferences)
            .where(
                # The key on PostgreSQL: the workspace, the time (its partition), the id.
                inferences.c.workspace_id == workspace_id,
                inferences.c.ts == inference.timestamp,
                inferences.c.id == pks[inference.inference_id],
            )
            .values(image_key=stored.key, body=pack_inference(sized, now).body)
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


def _apply_pending_metadata(
    conn: Connection, db: Database, workspace_id: int, accepted: list[str]
) -> None:
    """Metadata that came before its inference was sent after the fact: it wins."""
    pending = list(_pending_for(conn, workspace_id, accepted))
    if not pending:
        return
    changes: dict[str, dict[str, MetadataValue]] = {}
    for row in pending:
        changes.setdefault(row.inference_id, {})[row.field] = decode_metadata_value(
            row.value, row.kind
        )
    set_metadata(conn, db, workspace_id, changes)
    conn.execute(
        delete(pending_metadata).where(
            pending_metadata.c.workspace_id == workspace_id,
            pending_metadata.c.inference_id.in_(sorted(changes)),
        )
    )


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
