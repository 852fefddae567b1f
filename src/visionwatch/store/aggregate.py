"""Rollups from committed batches, exactly once (see docs/architecture.md).

Ingest commits a batch's rows together with a row of `rollup_queue` that holds the
batch's minute rollups, made as it was parsed (`deltas`: rollups.MinuteRows, keyed by
names). `aggregate_pending` takes queued rows, folds their minute rollups into the rows of
every grain they belong to, adds what those rows held, writes them back, and deletes the
queue rows, all in one transaction: a crash anywhere leaves either nothing done or
everything done, so every inference is counted once. A queue row without deltas (a batch
holding inferences stored before) gets them first, from the stored rows of its range.

Grains (rollups.targets): by the minute for every device, and per device for the last
hours (store/floors.py); by the hour and day per device, for every device, and for every model
(model 0) of every device. A rollup row's histograms and class figures are packed
(packed/rollup.py), so one row per key holds what four sparse tables did.

The work per run follows the keys it touches, which repeat across its batches: a row is
read and written once per run however many batches share it.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, select

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.schema import (
    ROLLUP_SUMS,
    devices,
    inferences,
    labels,
    models,
    rollup_queue,
    rollups,
)
from visionwatch.db.types import from_micros, to_micros
from visionwatch.packed.rollup import (
    NO_CLASS,
    Blobs,
    ClassFigures,
    pack_bins,
    pack_classes,
    unpack_bins,
    unpack_classes,
)
from visionwatch.rollups import ALL_DEVICES, ALL_MODELS, TIME_BIN_BASE, minute_rows
from visionwatch.store import legacy
from visionwatch.store.decoded import ROW_COLUMNS, WITH_NAMES, as_inference, decode_rows
from visionwatch.store.floors import Floors, Kept, advance_floors
from visionwatch.timeutil import RESOLUTION_STEPS, utcnow

MINUTE_MICROS = 60_000_000
# Queue rows taken by one run: bounded so that a backlog is worked off in transactions of
# bounded size (and memory), each committing its share.
MAX_RANGES = 400
Key = tuple[str, int, int, int, int]  # resolution, workspace, device, bucket, model
_UPSERT_CHUNK = 2000


@dataclass(slots=True)
class Row:
    """A rollup row being made: its sums (ROLLUP_SUMS' order) and its blobs."""

    sums: list[Any] = field(default_factory=lambda: [0, 0, 0, 0, 0.0, 0, 0.0])
    blobs: Blobs = field(default_factory=Blobs)

    def add_sums(self, values: Iterable[Any]) -> None:
        sums = self.sums
        for n, value in enumerate(values):
            sums[n] += value


def aggregate_pending(
    conn: Connection, dialect: Dialect, max_ranges: int = MAX_RANGES, kept: Kept | None = None
) -> int:
    """Fold up to `max_ranges` queued batches into the rollups; how many were done.

    Runs in the caller's write transaction, which must commit it whole.
    """
    taken = dialects.take_queue_rows(dialect, conn, max_ranges)
    if not taken:
        return 0
    kept = kept or Kept()
    now = utcnow()
    floors = advance_floors(conn, dialect, now, kept)
    batches = []
    for row in taken:
        # No deltas: a batch with inferences sent before, or of the first form.
        deltas = derive(conn, dialect, row) if row.deltas is None else orjson.loads(row.deltas)
        batches.append((row.workspace_id, deltas))
    made = fold(conn, batches, floors)
    _add_stored(conn, made)
    _write(conn, dialect, made)
    conn.execute(delete(rollup_queue).where(rollup_queue.c.id.in_([row.id for row in taken])))
    return len(taken)


def derive(conn: Connection, dialect: Dialect, queued: Any) -> dict[str, Any]:
    """The minute rollups of a queued batch's stored rows (rollups.MinuteRows, as JSON
    has it)."""
    workspace_id = queued.workspace_id
    legacy.move_range(conn, dialect, workspace_id, queued.first_pk, queued.last_pk)
    where = [
        inferences.c.workspace_id == workspace_id,
        inferences.c.id.between(queued.first_pk, queued.last_pk),
    ]
    if queued.first_ts is not None:  # the rows' key range on PostgreSQL
        where.append(
            inferences.c.ts.between(from_micros(queued.first_ts), from_micros(queued.last_ts))
        )
    rows = conn.execute(select(*ROW_COLUMNS).select_from(WITH_NAMES).where(*where)).all()
    found = [as_inference(row) for row in decode_rows(None, conn, workspace_id, rows)]
    return minute_rows(found).as_json()


def fold(
    conn: Connection, batches: list[tuple[int, dict[str, Any]]], floors: Floors
) -> dict[Key, Row]:
    """The rollup rows the batches add to, with what they add (not yet what is stored)."""
    names = _Names(conn)
    minutes: dict[tuple[int, int, int, int], Row] = {}  # workspace, minute, model, device
    class_bins: dict[tuple[int, int, int], Blobs] = {}  # workspace, minute, model
    for workspace_id, deltas in batches:
        ids = names.of(workspace_id, deltas)
        for row in deltas["s"]:
            _minute_row(minutes, workspace_id, ids, row).add_sums(row[3:])
        for row in deltas["b"]:
            blobs = _minute_row(minutes, workspace_id, ids, row).blobs
            if row[3] < TIME_BIN_BASE:
                blobs.confidence_bins[row[3]] += row[4]
            else:
                blobs.time_bins[row[3] - TIME_BIN_BASE] += row[4]
        for row in deltas["c"]:
            inferences_, predictions, confidences, errors, timed, times = row[4:]
            figures = ClassFigures(inferences_, predictions, errors, timed, confidences, times)
            found = _minute_row(minutes, workspace_id, ids, row).blobs.classes
            class_id = ids.classes[row[3]]
            if class_id in found:
                found[class_id].add(figures)
            else:
                found[class_id] = figures
        for minute, model, name, bin_, count in deltas["cb"]:
            where = (workspace_id, minute, ids.models[model])
            binned = class_bins.get(where)
            if binned is None:
                binned = class_bins[where] = Blobs()
            binned.class_bins[(ids.classes[name], bin_)] += count
    made: dict[Key, Row] = {}
    for (workspace_id, minute, model, device), row in minutes.items():
        for key in targets(workspace_id, minute, model, device, floors):
            target = made.get(key)
            if target is None:
                target = made[key] = Row()
            target.add_sums(row.sums)
            target.blobs.confidence_bins.update(row.blobs.confidence_bins)
            target.blobs.time_bins.update(row.blobs.time_bins)
            if key[4] != ALL_MODELS:
                target.blobs.add(Blobs(classes=row.blobs.classes))
    for (workspace_id, minute, model), binned in class_bins.items():
        for key in targets(workspace_id, minute, model, ALL_DEVICES, floors):
            if key[4] != ALL_MODELS:
                made[key].blobs.class_bins.update(binned.class_bins)
    return made


@dataclass(frozen=True, slots=True)
class _Ids:
    models: dict[str, int]
    devices: dict[str, int]
    classes: dict[str, int]


def _minute_row(
    minutes: dict[tuple[int, int, int, int], Row], workspace_id: int, ids: _Ids, row: list[Any]
) -> Row:
    """The minute row a delta row (minute, model, device, ...) adds to."""
    device = ids.devices[row[2]] if row[2] else ALL_DEVICES
    key = (workspace_id, row[0], ids.models[row[1]], device)
    found = minutes.get(key)
    if found is None:
        found = minutes[key] = Row()
    return found


def targets(
    workspace_id: int, minute: int, model: int, device: int, floors: Floors
) -> Iterator[Key]:
    """The rollup rows a minute of a model on a device counts in."""
    if minute >= floors.minutes:
        yield ("minute", workspace_id, ALL_DEVICES, minute, model)
    if device != ALL_DEVICES and minute >= floors.device_minutes:
        yield ("minute", workspace_id, device, minute, model)
    for resolution in ("hour", "day"):
        step = int(RESOLUTION_STEPS[resolution].total_seconds()) * 1_000_000
        bucket = minute - minute % step
        yield (resolution, workspace_id, ALL_DEVICES, bucket, model)
        yield (resolution, workspace_id, ALL_DEVICES, bucket, ALL_MODELS)
        if device != ALL_DEVICES:
            yield (resolution, workspace_id, device, bucket, model)


class _Names:
    """Ids by name of a run's models, devices and classes (a class: its name's first label)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def of(self, workspace_id: int, deltas: dict[str, Any]) -> _Ids:
        return _Ids(
            models=self.models(workspace_id, {row[1] for part in "sbc" for row in deltas[part]}),
            devices=self.devices(
                workspace_id, {row[2] for part in "sbc" for row in deltas[part] if row[2]}
            ),
            classes=self.classes(
                workspace_id, {row[3] for row in deltas["c"]} | {row[2] for row in deltas["cb"]}
            ),
        )

    def models(self, workspace_id: int, names: set[str]) -> dict[str, int]:
        return self._ids(models, workspace_id, names)

    def devices(self, workspace_id: int, names: set[str]) -> dict[str, int]:
        return self._ids(devices, workspace_id, names)

    def classes(self, workspace_id: int, names: set[str]) -> dict[str, int]:
        found = {"": NO_CLASS}
        wanted = sorted(names - {""})
        for start in range(0, len(wanted), 500):
            rows = self.conn.execute(
                select(labels.c.name, func.min(labels.c.id))
                .where(
                    labels.c.workspace_id == workspace_id,
                    labels.c.name.in_(wanted[start : start + 500]),
                )
                .group_by(labels.c.name)
            )
            found.update((name, int(label_id)) for name, label_id in rows)
        return found

    def _ids(self, table: Any, workspace_id: int, names: set[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        wanted = sorted(names)
        for start in range(0, len(wanted), 500):
            rows = self.conn.execute(
                select(table.c.name, table.c.id).where(
                    table.c.workspace_id == workspace_id,
                    table.c.name.in_(wanted[start : start + 500]),
                )
            )
            found.update((name, int(row_id)) for name, row_id in rows)
        return found


def _add_stored(conn: Connection, made: dict[Key, Row]) -> None:
    """Add what the database holds of the rows made.

    Asked as the key's columns each IN a list (workspaces, devices, buckets), which both
    databases answer by probing the key for each combination; a row-value IN of whole
    keys SQLite answered by scanning the table. Rows of combinations not made are
    skipped here."""
    by_resolution: dict[str, list[tuple[int, int, int, int]]] = {}
    for resolution, *rest in made:
        by_resolution.setdefault(resolution, []).append(tuple(rest))  # type: ignore[arg-type]
    for resolution, keys in by_resolution.items():
        table = rollups[resolution]
        by_place: dict[tuple[int, int], set[int]] = {}  # (workspace, device): buckets
        for workspace_id, device, bucket, _ in keys:
            by_place.setdefault((workspace_id, device), set()).add(bucket)
        # Places of one workspace that share their buckets (all devices' and each
        # device's rows of a run mostly do) are asked together.
        groups: dict[tuple[int, frozenset[int]], list[int]] = {}
        for (workspace_id, device), buckets in by_place.items():
            groups.setdefault((workspace_id, frozenset(buckets)), []).append(device)
        for (workspace_id, shared), devices_ in groups.items():
            listed = sorted(shared)
            for start in range(0, len(listed), 500):
                stored = conn.execute(
                    select(
                        table.c.device_id,
                        table.c.bucket,
                        table.c.model_id,
                        *(table.c[name] for name in ROLLUP_SUMS),
                        table.c.confidence_bins,
                        table.c.time_bins,
                        table.c.classes,
                    ).where(
                        table.c.workspace_id == workspace_id,
                        table.c.device_id.in_(devices_),
                        table.c.bucket.in_([from_micros(b) for b in listed[start : start + 500]]),
                    )
                )
                for row in stored:
                    target = made.get((resolution, workspace_id, row[0], to_micros(row[1]), row[2]))
                    if target is None:
                        continue  # a model of this place and bucket the run does not touch
                    target.add_sums(row[3:10])
                    unpack_bins(row.confidence_bins, target.blobs.confidence_bins)
                    unpack_bins(row.time_bins, target.blobs.time_bins)
                    unpack_classes(row.classes, target.blobs)


def _write(conn: Connection, dialect: Dialect, made: dict[Key, Row]) -> None:
    """Write the rows made whole, in a statement per table and chunk: their values are
    what the database held plus what the run adds."""
    by_resolution: dict[str, list[tuple[Key, Row]]] = {}
    for key, row in made.items():
        by_resolution.setdefault(key[0], []).append((key, row))
    for resolution, rows in by_resolution.items():
        statement = _upsert(dialect, resolution)
        for start in range(0, len(rows), _UPSERT_CHUNK):
            listed = []
            blob = bytearray()
            for (_, workspace_id, device, bucket, model), row in rows[
                start : start + _UPSERT_CHUNK
            ]:
                found: list[Any] = [workspace_id, device, bucket, model, *row.sums]
                for packed in (
                    pack_bins(row.blobs.confidence_bins),
                    pack_bins(row.blobs.time_bins),
                    pack_classes(row.blobs.classes, row.blobs.class_bins),
                ):
                    found += [len(blob) + 1, len(packed)]
                    blob += packed
                listed.append(found)
            conn.exec_driver_sql(
                statement, {"rows": orjson.dumps(listed).decode(), "blob": bytes(blob)}
            )


_KEY_COLUMNS = ("workspace_id", "device_id", "bucket", "model_id")
_KINDS = (
    *("BIGINT",) * 4,
    *("BIGINT",) * 4,
    "DOUBLE PRECISION",
    "BIGINT",
    "DOUBLE PRECISION",
    *("INTEGER",) * 6,  # where each blob lies: substring takes integers
)


def _upsert(dialect: Dialect, resolution: str) -> str:
    """INSERT ... ON CONFLICT DO UPDATE of whole rows from one JSON text of rows (key,
    sums, where each blob lies in one binary parameter): one statement, where executemany
    runs one per row (docs/architecture.md, "The write path")."""
    columns = (*_KEY_COLUMNS, *ROLLUP_SUMS)
    fields = [dialects.json_field(dialect, n, kind) for n, kind in enumerate(_KINDS)]
    blob = dialects.named(dialect, "blob")
    blobs = [dialects.blob_slice(dialect, blob, fields[at], fields[at + 1]) for at in (11, 13, 15)]
    packed = ("confidence_bins", "time_bins", "classes")
    return f"""
        INSERT INTO rollups_{resolution} ({", ".join((*columns, *packed))})
        SELECT {", ".join((*fields[:11], *blobs))}
        FROM {dialects.json_rows_named(dialect, "rows")}
        WHERE true
        ON CONFLICT ({", ".join(_KEY_COLUMNS)}) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in (*ROLLUP_SUMS, *packed))}
    """
