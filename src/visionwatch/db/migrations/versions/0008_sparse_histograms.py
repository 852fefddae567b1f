"""Rollup histograms stored sparsely: a row per key and non-empty bin, in tables of their own.

A rollup row had a column per histogram bin (100 confidence bins, 122 inference-time bins),
nearly all empty where keys are many (devices, models, minutes): those rows were most of the
disk and of the aggregator's writes. The rollup tables keep their sums and lose the bins;
`rollup_bins_*` holds both histograms (time bins from TIME_BIN_BASE on), also for all models
(model 0) and devices, and `class_bins_*` the class confidence histograms of all devices
(per device they were always empty). On
SQLite every rollup table is WITHOUT ROWID: its key is its identity, and a rowid table kept
the key twice (the table and its unique index).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

RESOLUTIONS = ("minute", "hour", "day")
CONFIDENCE_BINS = 100
TIME_BINS = 122
TIME_BIN_BASE = CONFIDENCE_BINS
CONFIDENCE_COLUMNS = [f"c{i:02d}" for i in range(CONFIDENCE_BINS)]
TIME_COLUMNS = [f"t{i:03d}" for i in range(TIME_BINS)]
ROLLUP_KEY = ["workspace_id", "device_id", "bucket", "model_id"]
ROLLUP_SUMS = [
    "requests",
    "errors",
    "empty",
    "predictions",
    "confidence_sum",
    "timed",
    "inference_time_sum",
]
CLASS_KEY = [*ROLLUP_KEY, "class_name"]
CLASS_SUMS = [
    "inferences",
    "predictions",
    "confidence_sum",
    "errors",
    "timed",
    "inference_time_sum",
]
CLASS_BINS_KEY = ["workspace_id", "bucket", "model_id", "class_name"]
FLOATS = {"confidence_sum", "inference_time_sum"}


def _key_columns(names: list[str]) -> list[sa.Column[object]]:
    types: dict[str, sa.types.TypeEngine[Any]] = {
        "bucket": sa.BigInteger(),
        "class_name": sa.String(256),
        "bin": sa.SmallInteger(),
    }
    return [sa.Column(name, types.get(name, sa.Integer()), nullable=False) for name in names]


def _sum_columns(names: list[str]) -> list[sa.Column[object]]:
    return [
        sa.Column(name, sa.Float() if name in FLOATS else sa.Integer(), nullable=False)
        for name in names
    ]


def _set_aside(table: str) -> str:
    """Rename `table` out of the way (with its key's name, global on PostgreSQL)."""
    old = f"{table}_old"
    op.rename_table(table, old)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_{table} TO pk_{old}")
    return old


def _copy(source: str, target: str, columns: list[str]) -> None:
    names = ", ".join(columns)
    op.execute(f"INSERT INTO {target} ({names}) SELECT {names} FROM {source}")


def _unpivot(
    source: str, target: str, key: list[str], columns: list[str], base: int, where: str = ""
) -> None:
    """Copy the non-empty bins of a wide row's `columns` into sparse rows, in one pass."""
    selected = ", ".join(f"w.{name}" for name in key)
    condition = f"AND {where}" if where else ""
    if op.get_bind().dialect.name == "postgresql":
        values = ", ".join(f"({base + n}, w.{column})" for n, column in enumerate(columns))
        op.execute(
            f"INSERT INTO {target} ({', '.join(key)}, bin, count) "
            f"SELECT {selected}, v.bin, v.count FROM {source} w "
            f"CROSS JOIN LATERAL (VALUES {values}) AS v(bin, count) "
            f"WHERE v.count > 0 {condition}"
        )
        return
    # json_each over the row's bins as an array: its key is the bin (at most 127 arguments
    # to a function in SQLite; each histogram is within that).
    array = ", ".join(f"w.{column}" for column in columns)
    op.execute(
        f"INSERT INTO {target} ({', '.join(key)}, bin, count) "
        f"SELECT {selected}, {base} + j.key, j.value FROM {source} w, json_each(json_array({array})) j "
        f"WHERE j.value > 0 {condition}"
    )


def upgrade() -> None:
    for resolution in RESOLUTIONS:
        rollup, classes = f"rollup_{resolution}", f"class_rollup_{resolution}"
        bins, class_bins = f"rollup_bins_{resolution}", f"class_bins_{resolution}"
        old_rollup, old_classes = _set_aside(rollup), _set_aside(classes)

        op.create_table(
            rollup,
            *_key_columns(ROLLUP_KEY),
            *_sum_columns(ROLLUP_SUMS),
            sa.PrimaryKeyConstraint(*ROLLUP_KEY, name=f"pk_{rollup}"),
            sqlite_with_rowid=False,
        )
        _copy(old_rollup, rollup, [*ROLLUP_KEY, *ROLLUP_SUMS])
        op.create_table(
            bins,
            *_key_columns([*ROLLUP_KEY, "bin", "count"]),
            sa.PrimaryKeyConstraint(*ROLLUP_KEY, "bin", name=f"pk_{bins}"),
            sqlite_with_rowid=False,
        )
        _unpivot(old_rollup, bins, ROLLUP_KEY, CONFIDENCE_COLUMNS, 0)
        _unpivot(old_rollup, bins, ROLLUP_KEY, TIME_COLUMNS, TIME_BIN_BASE)
        # The histograms of all models (model 0) and devices, which workspace-wide reads use,
        # by the hour and day.
        if resolution != "minute":
            op.execute(
                f"INSERT INTO {bins} (workspace_id, device_id, bucket, model_id, bin, count) "
                f"SELECT workspace_id, 0, bucket, 0, bin, SUM(count) FROM {bins} "
                f"WHERE device_id = 0 GROUP BY workspace_id, bucket, bin"
            )

        op.create_table(
            classes,
            *_key_columns(CLASS_KEY),
            *_sum_columns(CLASS_SUMS),
            sa.PrimaryKeyConstraint(*CLASS_KEY, name=f"pk_{classes}"),
            sqlite_with_rowid=False,
        )
        _copy(old_classes, classes, [*CLASS_KEY, *CLASS_SUMS])
        op.create_table(
            class_bins,
            *_key_columns([*CLASS_BINS_KEY, "bin", "count"]),
            sa.PrimaryKeyConstraint(*CLASS_BINS_KEY, "bin", name=f"pk_{class_bins}"),
            sqlite_with_rowid=False,
        )
        _unpivot(old_classes, class_bins, CLASS_BINS_KEY, CONFIDENCE_COLUMNS, 0, "w.device_id = 0")
        op.drop_table(old_rollup)
        op.drop_table(old_classes)


def _pivot(column: str, bin_: int) -> str:
    return f"SUM(CASE WHEN b.bin = {bin_} THEN b.count END) AS {column}"


def downgrade() -> None:
    for resolution in RESOLUTIONS:
        rollup, classes = f"rollup_{resolution}", f"class_rollup_{resolution}"
        bins, class_bins = f"rollup_bins_{resolution}", f"class_bins_{resolution}"
        narrow_rollup, narrow_classes = _set_aside(rollup), _set_aside(classes)
        op.create_table(
            rollup,
            *_key_columns(ROLLUP_KEY),
            *_sum_columns(ROLLUP_SUMS),
            *(sa.Column(c, sa.Integer()) for c in [*CONFIDENCE_COLUMNS, *TIME_COLUMNS]),
            sa.PrimaryKeyConstraint(*ROLLUP_KEY, name=f"pk_{rollup}"),
        )
        pivots = [_pivot(c, n) for n, c in enumerate(CONFIDENCE_COLUMNS)]
        pivots += [_pivot(c, TIME_BIN_BASE + n) for n, c in enumerate(TIME_COLUMNS)]
        joined = " AND ".join(f"b.{name} = r.{name}" for name in ROLLUP_KEY)
        # The rows of all models (model 0) have no row of sums: they are left behind.
        sums = ", ".join(f"r.{name}" for name in [*ROLLUP_KEY, *ROLLUP_SUMS])
        op.execute(
            f"INSERT INTO {rollup} SELECT {sums}, {', '.join(pivots)} "
            f"FROM {narrow_rollup} r LEFT JOIN {bins} b ON {joined} GROUP BY {sums}"
        )
        op.create_table(
            classes,
            *_key_columns(CLASS_KEY),
            sa.Column("inferences", sa.Integer(), nullable=False),
            sa.Column("predictions", sa.Integer(), nullable=False),
            sa.Column("confidence_sum", sa.Float(), nullable=False),
            *(sa.Column(c, sa.Integer()) for c in CONFIDENCE_COLUMNS),
            sa.Column("errors", sa.Integer(), nullable=False, server_default="0"),
            sa.Column("timed", sa.Integer(), nullable=False, server_default="0"),
            sa.Column("inference_time_sum", sa.Float(), nullable=False, server_default="0"),
            sa.PrimaryKeyConstraint(*CLASS_KEY, name=f"pk_{classes}"),
        )
        pivots = [_pivot(c, n) for n, c in enumerate(CONFIDENCE_COLUMNS)]
        joined = " AND ".join(f"b.{name} = r.{name}" for name in CLASS_BINS_KEY)
        sums = ", ".join(f"r.{name}" for name in [*CLASS_KEY, *CLASS_SUMS])
        columns = ", ".join([*CLASS_KEY, *CLASS_SUMS, *CONFIDENCE_COLUMNS])
        op.execute(
            f"INSERT INTO {classes} ({columns}) SELECT {sums}, {', '.join(pivots)} "
            f"FROM {narrow_classes} r LEFT JOIN {class_bins} b ON {joined} AND r.device_id = 0 "
            f"GROUP BY {sums}"
        )
        op.drop_table(class_bins)
        op.drop_table(bins)
        op.drop_table(narrow_classes)
        op.drop_table(narrow_rollup)
