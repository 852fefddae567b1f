"""Rollups from committed batches, in SQL, exactly once (see docs/architecture.md).

Ingest commits a batch's rows together with a row of `rollup_queue` that holds the
batch's minute rollups, made as it was parsed (`deltas`, keyed by names). `aggregate_pending`
takes queued rows, folds their minute rollups into every rollup table with `INSERT ...
SELECT ... GROUP BY ... ON CONFLICT DO UPDATE`, and deletes the queue rows, all in one
transaction: a crash anywhere leaves either nothing done or everything done, so every
inference is counted once. A queue row without deltas (a batch holding inferences stored
before) gets them first, from the stored rows of its range.

The work is the database's, not Python's: the statements below run in SQLite's or
PostgreSQL's own code (the driver releases the GIL meanwhile), and their cost grows with the
distinct keys of the rows aggregated at once, which repeat across the batches of one run.

Keys: per minute, hour and day; per device and for all devices (device key 0); per model;
and per class for the class rollups, exactly as `rollups.compute_deltas` defines them.
"""

from functools import cache

import orjson
from sqlalchemy import Connection, select, text, update

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.schema import (
    CLASS_SUMS,
    ROLLUP_SUMS,
    devices,
    inferences,
    models,
    rollup_queue,
)
from visionwatch.rollups import ALL_DEVICES, ALL_MODELS, ALL_MODELS_RESOLUTIONS, minute_rows
from visionwatch.store import legacy
from visionwatch.store.decoded import as_inference, decode_rows
from visionwatch.timeutil import RESOLUTION_STEPS

MINUTE_MICROS = 60_000_000
# Queue rows taken by one run: bounded so that a backlog is worked off in transactions of
# bounded size (and memory), each committing its share.
MAX_RANGES = 400

_KEY = ("workspace_id", "bucket", "model_id", "device_id")
_BINS_KEY = (*_KEY, "bin")
_CLASS_KEY = (*_KEY, "class_name")
_CLASS_BINS_KEY = ("workspace_id", "bucket", "model_id", "class_name", "bin")


def aggregate_pending(conn: Connection, dialect: Dialect, max_ranges: int = MAX_RANGES) -> int:
    """Fold up to `max_ranges` queued batches into the rollups; how many were done.

    Runs in the caller's write transaction, which must commit it whole.
    """
    taken = dialects.take_queue_rows(dialect, conn, max_ranges)
    if not taken:
        return 0
    for row in taken:
        if row.deltas is None:  # a batch with inferences sent before, or of the first form
            derive_deltas(conn, dialect, row.id, row.workspace_id, row.first_pk, row.last_pk)
    statements = _statements(dialect)
    for statement in statements[0]:
        conn.exec_driver_sql(statement)
    conn.execute(
        text("INSERT INTO agg_ranges VALUES (:id, :workspace_id, :first_pk, :last_pk)"),
        [
            {
                "id": row.id,
                "workspace_id": row.workspace_id,
                "first_pk": row.first_pk,
                "last_pk": row.last_pk,
            }
            for row in taken
        ],
    )
    for statement in statements[1]:
        conn.exec_driver_sql(statement)
    return len(taken)


def derive_deltas(
    conn: Connection,
    dialect: Dialect,
    queued: int,
    workspace_id: int,
    first_pk: int,
    last_pk: int,
) -> None:
    """Give a queue row the minute rollups of its range's rows, read back from them: what
    ingest could not know as it parsed (some inferences of the batch were stored before)."""
    legacy.move_range(conn, dialect, workspace_id, first_pk, last_pk)
    rows = conn.execute(
        select(
            inferences.c.id,
            inferences.c.inference_id,
            inferences.c.ts,
            inferences.c.tags,
            inferences.c.body,
            inferences.c.image_key,
            models.c.name.label("model"),
            devices.c.name.label("device"),
        )
        .select_from(
            inferences.join(models, models.c.id == inferences.c.model_id).outerjoin(
                devices, devices.c.id == inferences.c.device_id
            )
        )
        .where(
            inferences.c.workspace_id == workspace_id,
            inferences.c.id.between(first_pk, last_pk),
        )
    ).all()
    found = [as_inference(row) for row in decode_rows(None, conn, workspace_id, rows)]
    deltas = orjson.dumps(minute_rows(found).as_json()).decode()
    conn.execute(update(rollup_queue).where(rollup_queue.c.id == queued).values(deltas=deltas))


@cache
def _statements(dialect: Dialect) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The statements of one run, for `dialect`: those that make the scratch tables empty,
    and those that fill them from the batches taken and fold them into the rollups.

    The batches' minute rollups (`rollup_queue.deltas`, rollups.MinuteRows, keyed by
    names) go into scratch tables of minute rows keyed by ids (`agg_*`, narrow); each
    resolution's rollups are then folded from those. Every histogram is sparse (a row per
    key and non-empty bin), so the work follows the bins seen, not the bins there could be.
    """
    queue = "agg_ranges r JOIN rollup_queue q ON q.id = r.id"

    def staged(
        table: str, columns: tuple[str, ...], part: str, values: list[str], device: bool
    ) -> str:
        source = dialects.json_array_of(dialect, "q.deltas", part, "e")
        device_join = (
            "LEFT JOIN devices d ON d.workspace_id = q.workspace_id AND d.name = "
            + dialects.json_item(dialect, "e", 2, "TEXT")
            if device
            else ""
        )
        device_id = [f"COALESCE(d.id, {ALL_DEVICES})"] if device else []
        selected = [
            "q.workspace_id",
            dialects.json_item(dialect, "e", 0, "BIGINT"),
            "m.id",
            *device_id,
            *values,
        ]
        return f"""
            INSERT INTO {table} ({", ".join(columns)})
            SELECT {", ".join(selected)}
            FROM {queue} CROSS JOIN {source}
            JOIN models m ON m.workspace_id = q.workspace_id
                AND m.name = {dialects.json_item(dialect, "e", 1, "TEXT")}
            {device_join}
        """

    def items(first: int, kinds: tuple[str, ...]) -> list[str]:
        return [dialects.json_item(dialect, "e", first + n, kind) for n, kind in enumerate(kinds)]

    sums_kinds = ("BIGINT",) * 4 + ("DOUBLE PRECISION", "BIGINT", "DOUBLE PRECISION")
    class_kinds = ("BIGINT", "BIGINT", "DOUBLE PRECISION", "BIGINT", "BIGINT", "DOUBLE PRECISION")
    stage_sums = staged("agg_sums", (*_KEY, *ROLLUP_SUMS), "s", items(3, sums_kinds), True)
    stage_bins = staged("agg_bins", (*_BINS_KEY, "count"), "b", items(3, ("BIGINT",) * 2), True)
    stage_classes = staged(
        "agg_class",
        (*_CLASS_KEY, *CLASS_SUMS),
        "c",
        [dialects.json_item(dialect, "e", 3, "TEXT"), *items(4, class_kinds)],
        True,
    )
    stage_class_bins = staged(
        "agg_class_bins",
        (*_CLASS_BINS_KEY, "count"),
        "cb",
        items(2, ("TEXT", "BIGINT", "BIGINT")),
        False,
    )
    folds = []
    for resolution, step in RESOLUTION_STEPS.items():
        micros = int(step.total_seconds()) * 1_000_000
        for per_device in (True, False):
            folds.append(
                _fold(f"rollup_{resolution}", "agg_sums", micros, per_device, _KEY, ROLLUP_SUMS)
            )
            folds.append(
                _fold(
                    f"rollup_bins_{resolution}",
                    "agg_bins",
                    micros,
                    per_device,
                    _BINS_KEY,
                    ("count",),
                )
            )
            folds.append(
                _fold(
                    f"class_rollup_{resolution}",
                    "agg_class",
                    micros,
                    per_device,
                    _CLASS_KEY,
                    CLASS_SUMS,
                )
            )
        # The histograms of all models and devices, by the hour and day: what a workspace's
        # dashboards read, in a tenth of the rows with ten models (not by the minute: a
        # period's minutes are its edges, and a minute rarely holds several models).
        if resolution in ALL_MODELS_RESOLUTIONS:
            folds.append(
                _fold(
                    f"rollup_bins_{resolution}",
                    "agg_bins",
                    micros,
                    False,
                    _BINS_KEY,
                    ("count",),
                    all_models=True,
                )
            )
        folds.append(
            _fold(
                f"class_bins_{resolution}",
                "agg_class_bins",
                micros,
                None,
                _CLASS_BINS_KEY,
                ("count",),
            )
        )
    return (
        _scratch(dialect),
        (
            stage_sums,
            stage_bins,
            stage_classes,
            stage_class_bins,
            *folds,
            "DELETE FROM rollup_queue WHERE id IN (SELECT id FROM agg_ranges)",
        ),
    )


def _scratch(dialect: Dialect) -> tuple[str, ...]:
    """The connection's own tables of one run: the ranges taken, and their minute rows."""
    types = {
        "confidence_sum": "DOUBLE PRECISION",
        "inference_time_sum": "DOUBLE PRECISION",
        "confidence": "DOUBLE PRECISION",
        "inference_time": "DOUBLE PRECISION",
        "class_name": "VARCHAR(256)",
    }

    def columns(names: tuple[str, ...]) -> str:
        return ", ".join(f"{name} {types.get(name, 'BIGINT')}" for name in names)

    tables = {
        "agg_ranges": ("id", "workspace_id", "first_pk", "last_pk"),
        "agg_sums": (*_KEY, *ROLLUP_SUMS),
        "agg_bins": (*_BINS_KEY, "count"),
        "agg_class": (*_CLASS_KEY, *CLASS_SUMS),
        "agg_class_bins": (*_CLASS_BINS_KEY, "count"),
    }
    return tuple(
        statement
        for name, names in tables.items()
        for statement in dialects.scratch_table(dialect, name, columns(names))
    )


def _fold(
    table: str,
    source: str,
    step_micros: int,
    per_device: bool | None,
    key: tuple[str, ...],
    sums: tuple[str, ...],
    all_models: bool = False,
) -> str:
    """Add the staged minute rows of `source` into `table` at its grain: per device (the rows
    that have one), for all devices (every row, under device key 0), or (None) as they are
    keyed, for a table without devices; per model, or for all models (model key 0)."""
    bucket = "bucket" if step_micros == MINUTE_MICROS else f"bucket / {step_micros} * {step_micros}"
    selected = [{"bucket": bucket}.get(column, column) for column in key]
    if all_models:
        selected[key.index("model_id")] = str(ALL_MODELS)
    where = "WHERE true"  # before ON CONFLICT: SQLite would read the conflict clause as a join's
    if per_device is not None:
        selected[key.index("device_id")] = "device_id" if per_device else str(ALL_DEVICES)
        if per_device:
            where = f"WHERE device_id <> {ALL_DEVICES}"
    groups = ", ".join(str(n + 1) for n in range(len(key)))
    additions = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums)
    return f"""
        INSERT INTO {table} ({", ".join((*key, *sums))})
        SELECT {", ".join(selected)}, {", ".join(f"SUM({c})" for c in sums)} FROM {source}
        {where} GROUP BY {groups}
        ON CONFLICT ({", ".join(key)}) DO UPDATE SET {additions}
    """
