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
from visionwatch.db.schema import CLASS_SUMS, ROLLUP_SUMS, TIME_BIN_BASE
from visionwatch.rollups import ALL_DEVICES, ALL_MODELS, ALL_MODELS_RESOLUTIONS, NO_CLASS
from visionwatch.timeutil import RESOLUTION_STEPS

MINUTE_MICROS = 60_000_000
# Queue rows taken by one run: bounded so that a backlog is worked off in transactions of
# bounded size (and memory), each committing its share.
MAX_RANGES = 400

_KEY = ("workspace_id", "bucket", "model_id", "device_id")
_BINS_KEY = (*_KEY, "bin")
_CLASS_KEY = (*_KEY, "class_name")
_CLASS_BINS_KEY = ("workspace_id", "bucket", "model_id", "class_name", "bin")
_PREDICTION_COLUMNS = (
    *_KEY,
    "inference_pk",
    "class_name",
    "bin",
    "confidence",
    "inference_time",
)


def aggregate_pending(conn: Connection, dialect: Dialect, max_ranges: int = MAX_RANGES) -> int:
    """Fold up to `max_ranges` queued ranges into the rollups; how many ranges were done.

    Runs in the caller's write transaction, which must commit it whole.
    """
    taken = dialects.take_queue_rows(dialect, conn, max_ranges)
    if not taken:
        return 0
    statements = _statements(dialect)
    for statement in statements[0]:
        conn.exec_driver_sql(statement)
    conn.execute(
        text("INSERT INTO agg_ranges VALUES (:id, :workspace_id, :first_pk, :last_pk)"),
        [row._asdict() for row in taken],
    )
    for statement in statements[1]:
        conn.exec_driver_sql(statement)
    return len(taken)


@cache
def _statements(dialect: Dialect) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The statements of one run, for `dialect`: those that make the scratch tables empty,
    and those that fill them from the ranges taken and fold them into the rollups.

    The raw rows are read once, into minute rows (`agg_*`, narrow); each resolution's
    rollups are then folded from those. Every histogram is sparse (a row per key and
    non-empty bin), so the work follows the bins seen, not the bins there could be.
    """
    cbin = dialects.confidence_bin_sql(dialect, "p.confidence")
    minute = f"i.ts / {MINUTE_MICROS} * {MINUTE_MICROS}"  # integer division in both
    device = f"COALESCE(i.device_id, {ALL_DEVICES})"
    keys = f"i.workspace_id, {minute}, i.model_id, {device}"
    named_keys = (
        f"i.workspace_id AS workspace_id, {minute} AS bucket, i.model_id AS model_id, "
        f"{device} AS device_id"
    )
    inferences = (
        "inferences i JOIN agg_ranges r ON i.workspace_id = r.workspace_id "
        "AND i.id BETWEEN r.first_pk AND r.last_pk"
    )

    def staged(table: str, columns: tuple[str, ...], select: str) -> str:
        return f"INSERT INTO {table} ({', '.join(columns)}) {select}"

    # The predictions with their inference's keys, read once: each of the groupings below
    # joined every prediction to its inference again.
    stage_predictions = staged(
        "agg_predictions",
        _PREDICTION_COLUMNS,
        f"""
        SELECT {keys}, i.id, p.class_name, {cbin}, p.confidence, i.inference_time
        FROM predictions p JOIN agg_ranges r ON p.workspace_id = r.workspace_id
            AND p.inference_pk BETWEEN r.first_pk AND r.last_pk
        JOIN inferences i ON i.id = p.inference_pk
        """,
    )
    predictions = "agg_predictions"

    rollup_sums = ", ".join(f"SUM({c})" for c in ROLLUP_SUMS)
    stage_sums = staged(
        "agg_sums",
        (*_KEY, *ROLLUP_SUMS),
        f"""
        SELECT workspace_id, bucket, model_id, device_id, {rollup_sums} FROM (
            SELECT {named_keys}, COUNT(*) AS requests, COUNT(i.error) AS errors,
                SUM(CASE WHEN i.error IS NULL AND i.prediction_count = 0 THEN 1 ELSE 0 END)
                    AS empty,
                SUM(i.prediction_count) AS predictions, 0.0 AS confidence_sum,
                COUNT(i.inference_time) AS timed,
                COALESCE(SUM(i.inference_time), 0.0) AS inference_time_sum
            FROM {inferences} GROUP BY 1, 2, 3, 4
            UNION ALL
            SELECT workspace_id, bucket, model_id, device_id, 0, 0, 0, 0, SUM(confidence), 0,
                0.0
            FROM {predictions} GROUP BY 1, 2, 3, 4
        ) AS parts
        GROUP BY 1, 2, 3, 4
        """,
    )
    # Confidence bins from the predictions, inference-time bins from the inferences: the
    # two ranges of `bin` do not meet, so the parts need no grouping together.
    stage_bins = staged(
        "agg_bins",
        (*_BINS_KEY, "count"),
        f"""
        SELECT workspace_id, bucket, model_id, device_id, bin, COUNT(*)
        FROM {predictions} GROUP BY 1, 2, 3, 4, 5
        UNION ALL
        SELECT {keys}, {TIME_BIN_BASE} + i.time_bin, COUNT(*)
        FROM {inferences} WHERE i.time_bin IS NOT NULL GROUP BY 1, 2, 3, 4, 5
        """,
    )
    # Each class an inference predicted counts it once; none counts it under NO_CLASS.
    class_sums = ", ".join(f"SUM({c})" for c in CLASS_SUMS)
    stage_classes = staged(
        "agg_class",
        (*_CLASS_KEY, *CLASS_SUMS),
        f"""
        SELECT workspace_id, bucket, model_id, device_id, class_name, {class_sums} FROM (
            SELECT workspace_id, bucket, model_id, device_id, class_name, 1 AS inferences,
                COUNT(*) AS predictions, SUM(confidence) AS confidence_sum, 0 AS errors,
                CASE WHEN MIN(inference_time) IS NULL THEN 0 ELSE 1 END AS timed,
                COALESCE(MIN(inference_time), 0.0) AS inference_time_sum
            FROM {predictions}
            GROUP BY workspace_id, bucket, model_id, device_id, inference_pk, class_name
            UNION ALL
            SELECT {keys}, '{NO_CLASS}', 1, 0, 0.0,
                CASE WHEN i.error IS NULL THEN 0 ELSE 1 END,
                CASE WHEN i.inference_time IS NULL THEN 0 ELSE 1 END,
                COALESCE(i.inference_time, 0.0)
            FROM {inferences}
            WHERE i.prediction_count = 0
        ) AS parts
        GROUP BY 1, 2, 3, 4, 5
        """,
    )
    stage_class_bins = staged(
        "agg_class_bins",
        (*_CLASS_BINS_KEY, "count"),
        f"""
        SELECT workspace_id, bucket, model_id, class_name, bin, COUNT(*)
        FROM {predictions} GROUP BY 1, 2, 3, 4, 5
        """,
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
            stage_predictions,
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
        "agg_predictions": _PREDICTION_COLUMNS,
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
