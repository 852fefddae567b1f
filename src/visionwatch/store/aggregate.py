"""Rollups from committed raw rows, in SQL, exactly once (see docs/architecture.md).

Ingest commits an inference's raw rows together with a row of `rollup_queue` naming the
range of inference keys it inserted. `aggregate_pending` takes queued ranges, folds their
raw rows into every rollup table with `INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO
UPDATE`, and deletes the queue rows, all in one transaction: a crash anywhere leaves either
nothing done or everything done, so every inference is counted once.

The work is the database's, not Python's: the statements below run in SQLite's or
PostgreSQL's own code (the driver releases the GIL meanwhile), and their cost grows with the
distinct keys of the rows aggregated at once, which repeat across the batches of one run.

Keys: per minute, hour and day; per device and for all devices (device key 0); per model;
and per class for the class rollups, exactly as `rollups.compute_deltas` defines them.
"""

from functools import cache

from sqlalchemy import Connection, text

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.schema import CLASS_SUMS, CONFIDENCE_COLUMNS, ROLLUP_SUMS, TIME_COLUMNS
from visionwatch.rollups import ALL_DEVICES, NO_CLASS
from visionwatch.timeutil import RESOLUTION_STEPS

MINUTE_MICROS = 60_000_000
# Queue rows taken by one run: bounded so that a backlog is worked off in transactions of
# bounded size (and memory), each committing its share.
MAX_RANGES = 400

_KEY = ("workspace_id", "bucket", "model_id", "device_id")
_ROLLUP_COLUMNS = (*_KEY, *ROLLUP_SUMS, *CONFIDENCE_COLUMNS, *TIME_COLUMNS)
_CLASS_COLUMNS = (*_KEY, "class_name", *CLASS_SUMS, *CONFIDENCE_COLUMNS)


def aggregate_pending(conn: Connection, dialect: Dialect, max_ranges: int = MAX_RANGES) -> int:
    """Fold up to `max_ranges` queued ranges into the rollups; how many ranges were done.

    Runs in the caller's write transaction, which must commit it whole.
    """
    taken = dialects.take_queue_rows(dialect, conn, max_ranges)
    if not taken:
        return 0
    for statement in _scratch(dialect):
        conn.exec_driver_sql(statement)
    conn.execute(
        text("INSERT INTO agg_ranges VALUES (:id, :workspace_id, :first_pk, :last_pk)"),
        [row._asdict() for row in taken],
    )
    for statement in _statements(dialect):
        conn.exec_driver_sql(statement)
    conn.exec_driver_sql("DELETE FROM rollup_queue WHERE id IN (SELECT id FROM agg_ranges)")
    return len(taken)


@cache
def _scratch(dialect: Dialect) -> tuple[str, ...]:
    """The connection's own tables of one run: the ranges taken, and their minute rows."""
    sums = {
        "confidence_sum": "DOUBLE PRECISION",
        "inference_time_sum": "DOUBLE PRECISION",
        "class_name": "VARCHAR(256)",
    }

    def columns(names: tuple[str, ...]) -> str:
        return ", ".join(f"{name} {sums.get(name, 'BIGINT')}" for name in names)

    return (
        *dialects.scratch_table(
            dialect, "agg_ranges", "id BIGINT, workspace_id BIGINT, first_pk BIGINT, last_pk BIGINT"
        ),
        *dialects.scratch_table(dialect, "agg_rollup", columns(_ROLLUP_COLUMNS)),
        *dialects.scratch_table(dialect, "agg_class", columns(_CLASS_COLUMNS)),
    )


@cache
def _statements(dialect: Dialect) -> tuple[str, ...]:
    """The SQL of one run, after `agg_ranges` holds the queue rows taken."""
    cbin = dialects.confidence_bin_sql(dialect, "p.confidence")
    minute = f"i.ts / {MINUTE_MICROS} * {MINUTE_MICROS}"  # integer division in both
    device = f"COALESCE(i.device_id, {ALL_DEVICES})"
    ranges = (
        "JOIN agg_ranges r ON i.workspace_id = r.workspace_id "
        "AND i.id BETWEEN r.first_pk AND r.last_pk"
    )
    prediction_ranges = (
        "JOIN agg_ranges r ON p.workspace_id = r.workspace_id "
        "AND p.inference_pk BETWEEN r.first_pk AND r.last_pk "
        "JOIN inferences i ON i.id = p.inference_pk"
    )
    # Columns named as in the staging tables: the first SELECT of a UNION names them.
    no_bins = ", ".join(f"NULL AS {c}" for c in CONFIDENCE_COLUMNS)
    no_times = ", ".join(f"NULL AS {c}" for c in TIME_COLUMNS)
    confidence_bins = ", ".join(
        f"SUM(CASE WHEN {cbin} = {n} THEN 1 END) AS {c}" for n, c in enumerate(CONFIDENCE_COLUMNS)
    )
    time_bins = ", ".join(
        f"SUM(CASE WHEN i.time_bin = {n} THEN 1 END) AS {c}" for n, c in enumerate(TIME_COLUMNS)
    )
    sum_all = ", ".join(f"SUM({c})" for c in (*ROLLUP_SUMS, *CONFIDENCE_COLUMNS, *TIME_COLUMNS))
    rollup_rows = f"""
        INSERT INTO agg_rollup ({", ".join(_ROLLUP_COLUMNS)})
        SELECT workspace_id, bucket, model_id, device_id, {sum_all} FROM (
            SELECT i.workspace_id, {minute} AS bucket, i.model_id, {device} AS device_id,
                COUNT(*) AS requests, COUNT(i.error) AS errors,
                SUM(CASE WHEN i.error IS NULL AND i.prediction_count = 0 THEN 1 ELSE 0 END)
                    AS empty,
                SUM(i.prediction_count) AS predictions, 0.0 AS confidence_sum,
                COUNT(i.inference_time) AS timed,
                COALESCE(SUM(i.inference_time), 0.0) AS inference_time_sum,
                {no_bins}, {time_bins}
            FROM inferences i {ranges}
            WHERE true GROUP BY 1, 2, 3, 4
            UNION ALL
            SELECT i.workspace_id, {minute}, i.model_id, {device},
                0, 0, 0, 0, SUM(p.confidence), 0, 0.0, {confidence_bins}, {no_times}
            FROM predictions p {prediction_ranges}
            WHERE true GROUP BY 1, 2, 3, 4
        ) AS parts
        WHERE true GROUP BY 1, 2, 3, 4
    """
    sum_class = ", ".join(f"SUM({c})" for c in (*CLASS_SUMS, *CONFIDENCE_COLUMNS))
    class_rows = f"""
        INSERT INTO agg_class ({", ".join(_CLASS_COLUMNS)})
        SELECT workspace_id, bucket, model_id, device_id, class_name, {sum_class} FROM (
            SELECT i.workspace_id, {minute} AS bucket, i.model_id, {device} AS device_id,
                p.class_name, 1 AS inferences, COUNT(*) AS predictions,
                SUM(p.confidence) AS confidence_sum, 0 AS errors,
                CASE WHEN i.inference_time IS NULL THEN 0 ELSE 1 END AS timed,
                COALESCE(i.inference_time, 0.0) AS inference_time_sum,
                {confidence_bins}
            FROM predictions p {prediction_ranges}
            WHERE true GROUP BY i.id, p.class_name
            UNION ALL
            SELECT i.workspace_id, {minute}, i.model_id, {device}, '{NO_CLASS}', 1, 0, 0.0,
                CASE WHEN i.error IS NULL THEN 0 ELSE 1 END,
                CASE WHEN i.inference_time IS NULL THEN 0 ELSE 1 END,
                COALESCE(i.inference_time, 0.0), {no_bins}
            FROM inferences i {ranges}
            WHERE i.prediction_count = 0
        ) AS parts
        WHERE true GROUP BY 1, 2, 3, 4, 5
    """
    statements = [
        rollup_rows,
        class_rows,
    ]
    for resolution, step in RESOLUTION_STEPS.items():
        micros = int(step.total_seconds()) * 1_000_000
        for per_device in (True, False):
            statements.append(
                _fold(
                    f"rollup_{resolution}",
                    "agg_rollup",
                    micros,
                    per_device,
                    (),
                    (*ROLLUP_SUMS,),
                    (*CONFIDENCE_COLUMNS, *TIME_COLUMNS),
                )
            )
            statements.append(
                _fold(
                    f"class_rollup_{resolution}",
                    "agg_class",
                    micros,
                    per_device,
                    ("class_name",),
                    (*CLASS_SUMS,),
                    CONFIDENCE_COLUMNS,
                )
            )
    return tuple(statements)


def _fold(
    table: str,
    staging: str,
    step_micros: int,
    per_device: bool,
    extra_key: tuple[str, ...],
    sums: tuple[str, ...],
    bins: tuple[str, ...],
) -> str:
    """Add the staged minute rows into `table` at its grain: per device (the rows that have
    one), or for all devices (every row, under device key 0)."""
    key = (*_KEY, *extra_key)
    bucket = "bucket" if step_micros == MINUTE_MICROS else f"bucket / {step_micros} * {step_micros}"
    device = "device_id" if per_device else str(ALL_DEVICES)
    where = f"device_id <> {ALL_DEVICES}" if per_device else "true"
    selected = ", ".join(
        [
            "workspace_id",
            f"{bucket}",
            "model_id",
            device,
            *extra_key,
            *(f"SUM({c})" for c in (*sums, *bins)),
        ]
    )
    groups = ", ".join(str(n + 1) for n in range(len(key)))
    additions = [f"{c} = {table}.{c} + excluded.{c}" for c in sums]
    # Bins are null when zero (sparse): a null delta keeps the bin as it is.
    additions += [
        f"{c} = CASE WHEN excluded.{c} IS NULL THEN {table}.{c} "
        f"ELSE COALESCE({table}.{c}, 0) + excluded.{c} END"
        for c in bins
    ]
    return f"""
        INSERT INTO {table} ({", ".join((*key, *sums, *bins))})
        SELECT {selected} FROM {staging}
        WHERE {where} GROUP BY {groups}
        ON CONFLICT ({", ".join(key)}) DO UPDATE SET {", ".join(additions)}
    """
