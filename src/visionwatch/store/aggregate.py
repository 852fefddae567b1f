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

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
from sqlalchemy import Connection, text

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.schema import CLASS_SUMS, CONFIDENCE_COLUMNS, ROLLUP_SUMS, TIME_COLUMNS
from visionwatch.histograms import CONFIDENCE_BINS, TIME_BINS
from visionwatch.rollups import ALL_DEVICES, NO_CLASS
from visionwatch.timeutil import RESOLUTION_STEPS

MINUTE_MICROS = 60_000_000
# Queue rows taken by one run: bounded so that a backlog is worked off in transactions of
# bounded size (and memory), each committing its share.
MAX_RANGES = 400

_KEY = ("workspace_id", "bucket", "model_id", "device_id")
_ROLLUP_COLUMNS = (*_KEY, *ROLLUP_SUMS, *CONFIDENCE_COLUMNS, *TIME_COLUMNS)
_CLASS_COLUMNS = (*_KEY, "class_name", *CLASS_SUMS)
_CLASS_BIN_COLUMNS = ("workspace_id", "bucket", "model_id", "class_name", *CONFIDENCE_COLUMNS)
# Where a rollup row's histogram starts: after its sums, confidences, then times.
_CONFIDENCE_AT = len(ROLLUP_SUMS)
_TIME_AT = _CONFIDENCE_AT + CONFIDENCE_BINS
_CONFIDENCE_SUM_AT = ROLLUP_SUMS.index("confidence_sum")


def aggregate_pending(conn: Connection, dialect: Dialect, max_ranges: int = MAX_RANGES) -> int:
    """Fold up to `max_ranges` queued ranges into the rollups; how many ranges were done.

    Runs in the caller's write transaction, which must commit it whole.
    """
    taken = dialects.take_queue_rows(dialect, conn, max_ranges)
    if not taken:
        return 0
    sql = _sql(dialect)
    for statement in sql.scratch:
        conn.exec_driver_sql(statement)
    conn.execute(
        text("INSERT INTO agg_ranges VALUES (:id, :workspace_id, :first_pk, :last_pk)"),
        [row._asdict() for row in taken],
    )
    _stage_histograms(conn, sql)
    conn.exec_driver_sql(sql.class_rows)
    for statement in sql.folds:
        conn.exec_driver_sql(statement)
    conn.exec_driver_sql("DELETE FROM rollup_queue WHERE id IN (SELECT id FROM agg_ranges)")
    return len(taken)


def _stage_histograms(conn: Connection, sql: "_Sql") -> None:
    """Fill `agg_rollup` (a row per minute, model and device key) and `agg_class_bins` (a row
    per minute, model and class, all devices).

    The database groups the rows by histogram bin; the bins become columns here. Pivoting in
    SQL (a SUM(CASE ...) per column) evaluates every column for every raw row: a hundred
    times the work, which made up most of a run.
    """
    rollup_rows: dict[tuple[Any, ...], list[Any]] = {}
    for found in _fetch(conn, sql.inference_sums):
        sums = [*found[4:]]
        sums.insert(_CONFIDENCE_SUM_AT, 0.0)  # added from the predictions below
        rollup_rows[tuple(found[:4])] = [*sums, *([None] * (CONFIDENCE_BINS + TIME_BINS))]
    for workspace_id, bucket, model_id, device_id, index, count in _fetch(conn, sql.time_bins):
        rollup_rows[(workspace_id, bucket, model_id, device_id)][_TIME_AT + index] = count
    class_bins: dict[tuple[Any, ...], list[Any]] = {}
    for (
        workspace_id,
        bucket,
        model_id,
        device_id,
        name,
        index,
        count,
        total,
    ) in _fetch(conn, sql.prediction_bins):
        row = rollup_rows[(workspace_id, bucket, model_id, device_id)]
        row[_CONFIDENCE_SUM_AT] += total
        row[_CONFIDENCE_AT + index] = (row[_CONFIDENCE_AT + index] or 0) + count
        bins = class_bins.get((workspace_id, bucket, model_id, name))
        if bins is None:
            bins = class_bins[(workspace_id, bucket, model_id, name)] = [None] * CONFIDENCE_BINS
        bins[index] = (bins[index] or 0) + count
    _insert(conn, sql.insert_rollup, ((*key, *row) for key, row in rollup_rows.items()))
    _insert(conn, sql.insert_class_bins, ((*key, *bins) for key, bins in class_bins.items()))


def _fetch(conn: Connection, query: str) -> list[list[Any]]:
    found = conn.exec_driver_sql(query).scalar_one()
    return [] if found is None else orjson.loads(found)


def _insert(conn: Connection, statement: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """Stage wide rows: COPY on PostgreSQL (executemany took 0.3 ms a row of two hundred
    parameters there), a row of parameters each on SQLite."""
    listed = list(rows)
    if not listed:
        return
    if statement.startswith("COPY"):
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in listed:
                copy.write_row(row)
        return
    conn.exec_driver_sql(statement, listed)


@dataclass(frozen=True, slots=True)
class _Sql:
    scratch: tuple[str, ...]
    inference_sums: str
    time_bins: str
    prediction_bins: str
    insert_rollup: str
    insert_class_bins: str
    class_rows: str
    folds: tuple[str, ...]


@cache
def _sql(dialect: Dialect) -> _Sql:
    """The statements of one run, for `dialect`."""
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

    mark = dialects.placeholder(dialect)

    def insert(table: str, columns: tuple[str, ...]) -> str:
        if dialect is Dialect.POSTGRESQL:
            return f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        # A row of parameters each, not json_each: JSON's ->> walks a row from its start for
        # each field, quadratic in a row of two hundred fields.
        marks = ", ".join([mark] * len(columns))
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"

    def named(*columns: str) -> str:
        return ", ".join(f"{column} AS a{n}" for n, column in enumerate(columns))

    # In ROLLUP_SUMS order, but for confidence_sum (from the predictions).
    keys = ("i.workspace_id", minute, "i.model_id", device)
    sums = named(
        *keys,
        "COUNT(*)",
        "COUNT(i.error)",
        "SUM(CASE WHEN i.error IS NULL AND i.prediction_count = 0 THEN 1 ELSE 0 END)",
        "SUM(i.prediction_count)",
        "COUNT(i.inference_time)",
        "COALESCE(SUM(i.inference_time), 0.0)",
    )
    inference_sums = f"""
        SELECT {sums}
        FROM inferences i {ranges}
        GROUP BY 1, 2, 3, 4
    """
    time_bins = f"""
        SELECT {named(*keys, "i.time_bin", "COUNT(*)")}
        FROM inferences i {ranges}
        WHERE i.time_bin IS NOT NULL GROUP BY 1, 2, 3, 4, 5
    """
    prediction_bins = f"""
        SELECT {named(*keys, "p.class_name", cbin, "COUNT(*)", "SUM(p.confidence)")}
        FROM predictions p {prediction_ranges}
        GROUP BY 1, 2, 3, 4, 5, 6
    """
    # Each class an inference predicted counts it once; none counts it under NO_CLASS.
    class_sums = ", ".join(f"SUM({c})" for c in CLASS_SUMS)
    class_rows = f"""
        INSERT INTO agg_class ({", ".join(_CLASS_COLUMNS)})
        SELECT workspace_id, bucket, model_id, device_id, class_name, {class_sums} FROM (
            SELECT i.workspace_id, {minute} AS bucket, i.model_id, {device} AS device_id,
                p.class_name, 1 AS inferences, COUNT(*) AS predictions,
                SUM(p.confidence) AS confidence_sum, 0 AS errors,
                CASE WHEN i.inference_time IS NULL THEN 0 ELSE 1 END AS timed,
                COALESCE(i.inference_time, 0.0) AS inference_time_sum
            FROM predictions p {prediction_ranges}
            GROUP BY i.id, p.class_name
            UNION ALL
            SELECT i.workspace_id, {minute}, i.model_id, {device}, '{NO_CLASS}', 1, 0, 0.0,
                CASE WHEN i.error IS NULL THEN 0 ELSE 1 END,
                CASE WHEN i.inference_time IS NULL THEN 0 ELSE 1 END,
                COALESCE(i.inference_time, 0.0)
            FROM inferences i {ranges}
            WHERE i.prediction_count = 0
        ) AS parts
        GROUP BY 1, 2, 3, 4, 5
    """
    # All devices' class rows: the sums of every staged class row, and the histograms.
    no_bins = ", ".join(f"NULL AS {c}" for c in CONFIDENCE_COLUMNS)
    no_sums = ", ".join(f"0 AS {c}" for c in CLASS_SUMS)
    all_classes = f"""(
        SELECT workspace_id, bucket, model_id, class_name, {", ".join(CLASS_SUMS)}, {no_bins}
        FROM agg_class
        UNION ALL
        SELECT workspace_id, bucket, model_id, class_name, {no_sums},
            {", ".join(CONFIDENCE_COLUMNS)}
        FROM agg_class_bins
    ) AS parts"""
    folds = []
    for resolution, step in RESOLUTION_STEPS.items():
        micros = int(step.total_seconds()) * 1_000_000
        rollup = f"rollup_{resolution}"
        bins = (*CONFIDENCE_COLUMNS, *TIME_COLUMNS)
        folds.append(_fold(rollup, "agg_rollup", micros, True, (), ROLLUP_SUMS, bins))
        folds.append(_fold(rollup, "agg_rollup", micros, False, (), ROLLUP_SUMS, bins))
        # A device's class rows keep counts and sums only: no read asks for one device's
        # class percentiles, and their histograms were most of the aggregator's writes.
        classes = f"class_rollup_{resolution}"
        extra = ("class_name",)
        folds.append(_fold(classes, "agg_class", micros, True, extra, CLASS_SUMS, ()))
        folds.append(
            _fold(classes, all_classes, micros, False, extra, CLASS_SUMS, CONFIDENCE_COLUMNS)
        )
    return _Sql(
        scratch=_scratch(dialect),
        inference_sums=dialects.as_json(dialect, inference_sums, 10),
        time_bins=dialects.as_json(dialect, time_bins, 6),
        prediction_bins=dialects.as_json(dialect, prediction_bins, 8),
        insert_rollup=insert("agg_rollup", _ROLLUP_COLUMNS),
        insert_class_bins=insert("agg_class_bins", _CLASS_BIN_COLUMNS),
        class_rows=class_rows,
        folds=tuple(folds),
    )


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
        *dialects.scratch_table(dialect, "agg_class_bins", columns(_CLASS_BIN_COLUMNS)),
    )


def _fold(
    table: str,
    source: str,
    step_micros: int,
    per_device: bool,
    extra_key: tuple[str, ...],
    sums: tuple[str, ...],
    bins: tuple[str, ...],
) -> str:
    """Add the staged minute rows of `source` into `table` at its grain: per device (the rows
    that have one), or for all devices (every row, under device key 0)."""
    key = (*_KEY, *extra_key)
    bucket = "bucket" if step_micros == MINUTE_MICROS else f"bucket / {step_micros} * {step_micros}"
    device = "device_id" if per_device else str(ALL_DEVICES)
    where = f"WHERE device_id <> {ALL_DEVICES}" if per_device else ""
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
    # "WHERE true" before ON CONFLICT: SQLite would read the conflict clause as a join's.
    return f"""
        INSERT INTO {table} ({", ".join((*key, *sums, *bins))})
        SELECT {selected} FROM {source}
        {where or "WHERE true"} GROUP BY {groups}
        ON CONFLICT ({", ".join(key)}) DO UPDATE SET {", ".join(additions)}
    """
