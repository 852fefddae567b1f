"""The ingest write path: one transaction per batch, bulk statements.

The rollups are not touched here: the batch's raw rows are committed with a row of
`rollup_queue` naming them, and the aggregator (store/aggregate.py) folds them into the
rollups exactly once, soon after (docs/architecture.md).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Row, delete, func, insert, select, update

from visionwatch.db import bulk
from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database
from visionwatch.db.schema import (
    inference_metadata,
    inferences,
    models,
    pending_metadata,
    predictions,
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
    result: IngestResult = db.run_write(
        _ingest, db.dialect, workspace_id, batch, now, heartbeat, images or {}, blobs
    )
    return result


def _ingest(
    conn: Connection,
    dialect: Dialect,
    workspace_id: int,
    batch: list[Inference],
    now: datetime,
    heartbeat: Heartbeat | None,
    images: dict[str, CheckedImage],
    blobs: BlobStore | None,
) -> IngestResult:
    if heartbeat is not None:
        upsert_devices(conn, dialect, workspace_id, [heartbeat_row(heartbeat)], now)
    unique = list({inference.inference_id: inference for inference in reversed(batch)}.values())
    unique.reverse()  # the first of repeated ids in a batch wins, in the order sent
    if not unique:
        return IngestResult(accepted=0, duplicates=0)
    dialects.lock_for_ingest(dialect, conn, workspace_id)
    model_ids = _upsert_models(conn, dialect, workspace_id, unique)
    device_ids = _upsert_devices(conn, dialect, workspace_id, unique, now)
    inserted = conn.execute(
        dialects.insert(dialect, inferences)
        .on_conflict_do_nothing(index_elements=["workspace_id", "inference_id"])
        .returning(inferences.c.id, inferences.c.inference_id),
        [
            {
                "workspace_id": workspace_id,
                "inference_id": i.inference_id,
                "model_id": model_ids[i.model],
                "device_id": device_ids.get(i.device) if i.device else None,
                "ts": i.timestamp,
                "received_at": now,
                "inference_time": i.inference_time,
                "task": i.task,
                "image_width": i.image_width,
                "image_height": i.image_height,
                "error": i.error,
                "prediction_count": len(i.predictions),
                "image_key": None,
                "item": orjson.dumps(i.item).decode(),
                "time_bin": None if i.inference_time is None else time_bin(i.inference_time),
            }
            # In id order: concurrent batches sharing ids lock them in one order (no deadlock).
            for i in sorted(unique, key=lambda i: i.inference_id)
        ],
    ).all()
    pks = {row.inference_id: row.id for row in inserted}
    new = [i for i in unique if i.inference_id in pks]
    if new:
        _insert_predictions(conn, workspace_id, new, pks)
        _insert_metadata(conn, dialect, workspace_id, new, pks)
        conn.execute(
            insert(rollup_queue).values(
                workspace_id=workspace_id,
                first_pk=min(pks.values()),
                last_pk=max(pks.values()),
                enqueued_at=now,
            )
        )
    kept = 0
    if images and blobs is not None:
        kept = _keep_images(conn, dialect, blobs, workspace_id, new, pks, images, now)
    return IngestResult(
        accepted=len(new),
        duplicates=len(batch) - len(new),
        images_kept=kept,
        images_over_cap=sum(1 for i in new if i.inference_id in images) - kept,
    )


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
            .where(inferences.c.id == pks[inference.inference_id])
            .values(
                image_key=stored.key,
                image_width=inference.image_width or stored.width,
                image_height=inference.image_height or stored.height,
            )
        )
        kept += 1
    return kept


def _upsert_models(
    conn: Connection, dialect: Dialect, workspace_id: int, batch: list[Inference]
) -> dict[str, int]:
    newest: dict[str, Inference] = {}
    for inference in batch:
        seen = newest.get(inference.model)
        if seen is None or inference.timestamp > seen.timestamp:
            newest[inference.model] = inference
    tasks = {i.model: i.task for i in batch if i.task is not None}
    rows = []
    for name in sorted(newest):
        project, version = split_model_id(name)
        last_seen = newest[name].timestamp
        rows.append(
            {
                "workspace_id": workspace_id,
                "name": name,
                "project": project,
                "version": version,
                "task": tasks.get(name),
                "first_seen": last_seen,
                "last_seen": last_seen,
            }
        )
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
    ).returning(models.c.id, models.c.name)
    return {row.name: row.id for row in conn.execute(statement, rows)}


def _upsert_devices(
    conn: Connection, dialect: Dialect, workspace_id: int, batch: list[Inference], now: datetime
) -> dict[str, int]:
    """A device is last seen at its newest inference, not when its batch arrives: a batch sent
    late (a spool drained, a history imported) must not make a silent device look alive."""
    seen: dict[str, tuple[datetime, datetime]] = {}
    for inference in batch:
        if inference.device is not None:
            first, last = seen.get(inference.device, (inference.timestamp, inference.timestamp))
            seen[inference.device] = (
                min(first, inference.timestamp),
                max(last, inference.timestamp),
            )
    if not seen:
        return {}
    rows: list[dict[str, object]] = [
        {"name": name, "first_seen": first, "last_seen": last}
        for name, (first, last) in sorted(seen.items())
    ]
    return upsert_devices(conn, dialect, workspace_id, rows, now)


_PREDICTION_COLUMNS = (
    "workspace_id",
    "inference_pk",
    "idx",
    "ts",
    "class_name",
    "class_id",
    "confidence",
    "x",
    "y",
    "width",
    "height",
)
_METADATA_COLUMNS = ("workspace_id", "inference_pk", "field", "value", "kind", "ts")


def _insert_predictions(
    conn: Connection, workspace_id: int, new: list[Inference], pks: dict[str, int]
) -> None:
    rows: list[tuple[Any, ...]] = []
    for i in new:
        pk, ts = pks[i.inference_id], to_micros(i.timestamp)
        rows.extend(
            (
                *(workspace_id, pk, index, ts),
                *(p.class_name, p.class_id, p.confidence, p.x, p.y, p.width, p.height),
            )
            for index, p in enumerate(i.predictions)
        )
    bulk.executemany(conn, "insert predictions", predictions.insert, _PREDICTION_COLUMNS, rows)


def _insert_metadata(
    conn: Connection,
    dialect: Dialect,
    workspace_id: int,
    new: list[Inference],
    pks: dict[str, int],
) -> None:
    values: dict[tuple[str, str], tuple[str, str]] = {}
    for inference in new:
        for field, value in inference.metadata.items():
            values[(inference.inference_id, field)] = encode_metadata_value(value)
    # Metadata that came before its inference: it was sent after the fact, so it wins.
    ids = [i.inference_id for i in new]
    pending = list(_pending_for(conn, workspace_id, ids))
    for row in pending:
        values[(row.inference_id, row.field)] = (row.value, row.kind)
    if pending:
        conn.execute(
            delete(pending_metadata).where(
                pending_metadata.c.workspace_id == workspace_id,
                pending_metadata.c.inference_id.in_({row.inference_id for row in pending}),
            )
        )
    if not values:
        return
    timestamps = {i.inference_id: to_micros(i.timestamp) for i in new}
    rows = [
        (workspace_id, pks[inference_id], field, value, kind, timestamps[inference_id])
        for (inference_id, field), (value, kind) in values.items()
    ]
    bulk.executemany(conn, "insert metadata", inference_metadata.insert, _METADATA_COLUMNS, rows)


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
