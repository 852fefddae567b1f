"""Apply rollup deltas with additive upserts: no read-modify-write, safe across replicas."""

from datetime import datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, Table, case, func, literal_column

from visionwatch.db import bulk
from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.schema import (
    CLASS_SUMS,
    CONFIDENCE_COLUMNS,
    ROLLUP_SUMS,
    TIME_COLUMNS,
    class_rollups,
    rollups,
)
from visionwatch.db.types import to_micros
from visionwatch.rollups import ClassDelta, Delta, Deltas

_ROLLUP_KEY = ("workspace_id", "bucket", "model_id", "device_id")
_CLASS_KEY = (*_ROLLUP_KEY, "class_name")


# A delta's sums in the order of the table's columns (the attributes share the names).
_rollup_sums = attrgetter(*ROLLUP_SUMS)
_class_sums = attrgetter(*CLASS_SUMS)
_ROLLUP_COLUMNS = (*_ROLLUP_KEY, *ROLLUP_SUMS, *CONFIDENCE_COLUMNS, *TIME_COLUMNS)
_CLASS_COLUMNS = (*_CLASS_KEY, *CLASS_SUMS, *CONFIDENCE_COLUMNS)


def apply_deltas(conn: Connection, dialect: Dialect, workspace_id: int, deltas: Deltas) -> None:
    by_resolution: dict[str, list[tuple[Any, ...]]] = {}
    # Sorted keys: concurrent transactions lock rows in one order, so they
    # cannot deadlock on PostgreSQL.
    for key in sorted(deltas.rollups):
        resolution, bucket, model, device = key
        row = _rollup_row(workspace_id, bucket, model, device, deltas.rollups[key])
        by_resolution.setdefault(resolution, []).append(row)
    for resolution, rows in by_resolution.items():
        _upsert(
            conn,
            dialect,
            rollups[resolution],
            _ROLLUP_COLUMNS,
            rows,
            _ROLLUP_KEY,
            ROLLUP_SUMS,
            CONFIDENCE_COLUMNS + TIME_COLUMNS,
        )
    class_rows: dict[str, list[tuple[Any, ...]]] = {}
    for class_key in sorted(deltas.classes):
        resolution, bucket, model, device, name = class_key
        row = _class_row(workspace_id, bucket, model, device, name, deltas.classes[class_key])
        class_rows.setdefault(resolution, []).append(row)
    for resolution, rows in class_rows.items():
        _upsert(
            conn,
            dialect,
            class_rollups[resolution],
            _CLASS_COLUMNS,
            rows,
            _CLASS_KEY,
            CLASS_SUMS,
            CONFIDENCE_COLUMNS,
        )


def _rollup_row(
    workspace_id: int, bucket: datetime, model: int, device: int, delta: Delta
) -> tuple[Any, ...]:
    """A row in _ROLLUP_COLUMNS order."""
    return (
        workspace_id,
        to_micros(bucket),
        model,
        device,
        *_rollup_sums(delta),
        *_bins(len(CONFIDENCE_COLUMNS), delta.confidence_bins),
        *_bins(len(TIME_COLUMNS), delta.time_bins),
    )


def _class_row(
    workspace_id: int, bucket: datetime, model: int, device: int, name: str, delta: ClassDelta
) -> tuple[Any, ...]:
    """A row in _CLASS_COLUMNS order."""
    return (
        workspace_id,
        to_micros(bucket),
        model,
        device,
        name,
        *_class_sums(delta),
        *_bins(len(CONFIDENCE_COLUMNS), delta.confidence_bins),
    )


def _bins(size: int, counts: dict[int, int]) -> list[int | None]:
    values: list[int | None] = [None] * size  # null means zero
    for index, count in counts.items():
        if count:
            values[index] = count
    return values


def _upsert(
    conn: Connection,
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    key: tuple[str, ...],
    sums: tuple[str, ...],
    bins: tuple[str, ...],
) -> None:
    def build() -> Any:
        statement = dialects.insert(dialect, table)
        excluded = statement.excluded
        assignments: dict[str, Any] = {name: table.c[name] + excluded[name] for name in sums}
        zero: Any = literal_column("0")
        for name in bins:
            # Keep nulls null (sparse), and add when the delta has a count.
            assignments[name] = case(
                (excluded[name].is_(None), table.c[name]),
                else_=func.coalesce(table.c[name], zero) + excluded[name],
            )
        return statement.on_conflict_do_update(index_elements=list(key), set_=assignments)

    bulk.executemany(conn, f"upsert {table.name}", build, columns, rows)
