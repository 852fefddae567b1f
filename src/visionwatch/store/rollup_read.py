"""Read rollups: cover a period with the coarsest aligned buckets, and sum them.

A period [start, end) on minute boundaries is split into whole days in the
middle, whole hours around them and minutes at the edges, so a week costs
about 7 + 46 + 118 buckets per model, whatever the traffic was.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement

from visionwatch.db.schema import (
    CLASS_SUMS,
    CONFIDENCE_COLUMNS,
    ROLLUP_SUMS,
    TIME_COLUMNS,
    class_rollups,
    rollups,
)
from visionwatch.db.types import from_micros, to_micros
from visionwatch.histograms import CONFIDENCE_BINS
from visionwatch.rollups import ALL_DEVICES, ClassDelta, Delta
from visionwatch.timeutil import RESOLUTION_STEPS, floor_to

Segment = tuple[str, datetime, datetime]


@dataclass(frozen=True, slots=True)
class Scope:
    """Which rollup rows a query reads: one workspace, maybe one model, one device key."""

    workspace_id: int
    model_id: int | None = None
    device_id: int = ALL_DEVICES


def cover(start: datetime, end: datetime, coarsest: str = "day") -> list[Segment]:
    """Aligned segments (resolution, from, to) that exactly tile [start, end)."""
    steps = [(name, step) for name, step in RESOLUTION_STEPS.items()]
    steps = steps[: [name for name, _ in steps].index(coarsest) + 1]
    segments: list[Segment] = []
    moment = start
    while moment < end:
        for name, step in reversed(steps):  # noqa: B007 (both are used after the loop)
            if floor_to(moment, step) == moment and moment + step <= end:
                break
        else:
            raise ValueError("periods must start and end on minute boundaries")
        if segments and segments[-1][0] == name and segments[-1][2] == moment:
            segments[-1] = (name, segments[-1][1], moment + step)
        else:
            segments.append((name, moment, moment + step))
        moment += step
    return segments


def in_segments(table: Table, segments: list[Segment]) -> ColumnElement[bool]:
    """The table's buckets that lie in `segments` (all of the table's resolution)."""
    bucket = type_coerce(table.c.bucket, BigInteger)
    return or_(*(and_(bucket >= to_micros(s), bucket < to_micros(e)) for _, s, e in segments))


def _where(table: Table, with_model: bool, segments: int) -> list[ColumnElement[bool]]:
    """Conditions with parameters (see _params): one statement serves every period of the
    same shape, and SQLAlchemy computes its cache key once, not per request (a statement of
    two hundred sums took longer to key than to run)."""
    bucket = type_coerce(table.c.bucket, BigInteger)
    conditions = [
        table.c.workspace_id == bindparam("workspace_id"),
        table.c.device_id == bindparam("device_id"),
        or_(
            *(
                and_(bucket >= bindparam(f"from_{n}"), bucket < bindparam(f"to_{n}"))
                for n in range(segments)
            )
        ),
    ]
    if with_model:
        conditions.append(table.c.model_id == bindparam("model_id"))
    return conditions


def _params(scope: Scope, segments: list[Segment]) -> dict[str, Any]:
    params: dict[str, Any] = {"workspace_id": scope.workspace_id, "device_id": scope.device_id}
    if scope.model_id is not None:
        params["model_id"] = scope.model_id
    for n, (_, start, end) in enumerate(segments):
        params[f"from_{n}"], params[f"to_{n}"] = to_micros(start), to_micros(end)
    return params


@lru_cache(maxsize=1024)  # shapes: resolution, bins, grouping, model or not, segments
def _rollup_query(
    resolution: str, bins: bool, group: str | None, interval: timedelta | None, model: bool, n: int
) -> Select[Any]:
    table = rollups[resolution]
    names = ROLLUP_SUMS + ((CONFIDENCE_COLUMNS + TIME_COLUMNS) if bins else ())
    query = select(*_sums(table, names)).where(*_where(table, model, n))
    if group is not None:
        key = _group_column(table, group, interval)
        query = query.add_columns(key).group_by(key)
    return query


@lru_cache(maxsize=1024)
def _class_query(resolution: str, bins: bool, model: bool, n: int) -> Select[Any]:
    table = class_rollups[resolution]
    names = CLASS_SUMS + (CONFIDENCE_COLUMNS if bins else ())
    return (
        select(table.c.model_id, table.c.class_name, *_sums(table, names))
        .where(*_where(table, model, n))
        .group_by(table.c.model_id, table.c.class_name)
    )


def by_resolution(segments: Iterable[Segment]) -> dict[str, list[Segment]]:
    grouped: dict[str, list[Segment]] = {}
    for segment in segments:
        grouped.setdefault(segment[0], []).append(segment)
    return grouped


def sum_rollups(
    conn: Connection,
    scope: Scope,
    start: datetime,
    end: datetime,
    *,
    group: str | None = None,
    interval: timedelta | None = None,
    with_bins: bool = True,
) -> dict[Any, Delta]:
    """Delta over [start, end), grouped by nothing (key None), "model" or "interval"."""
    coarsest = "day"
    if group == "interval":
        assert interval is not None
        coarsest = next(name for name, step in RESOLUTION_STEPS.items() if step == interval)
    result: dict[Any, Delta] = {}
    model = scope.model_id is not None
    for resolution, segments in by_resolution(cover(start, end, coarsest)).items():
        query = _rollup_query(resolution, with_bins, group, interval, model, len(segments))
        for row in conn.execute(query, _params(scope, segments)):
            group_key = _group_value(group, row[-1])
            totals = result.setdefault(group_key, Delta())
            values = row[:-1] if group is not None else row
            totals.requests += values[0] or 0
            totals.errors += values[1] or 0
            totals.empty += values[2] or 0
            totals.predictions += values[3] or 0
            totals.confidence_sum += values[4] or 0.0
            totals.timed += values[5] or 0
            totals.inference_time_sum += values[6] or 0.0
            if with_bins:
                _add_bins(totals.confidence_bins, values[7 : 7 + CONFIDENCE_BINS])
                _add_bins(totals.time_bins, values[7 + CONFIDENCE_BINS :])
    return result


def sum_classes(
    conn: Connection, scope: Scope, start: datetime, end: datetime, *, with_bins: bool = True
) -> dict[tuple[int, str], ClassDelta]:
    """Per (model, class) totals over [start, end)."""
    result: dict[tuple[int, str], ClassDelta] = {}
    model = scope.model_id is not None
    for resolution, segments in by_resolution(cover(start, end)).items():
        query = _class_query(resolution, with_bins, model, len(segments))
        for row in conn.execute(query, _params(scope, segments)):
            totals = result.setdefault((row[0], row[1]), ClassDelta())
            totals.inferences += row[2] or 0
            totals.predictions += row[3] or 0
            totals.confidence_sum += row[4] or 0.0
            totals.errors += row[5] or 0
            totals.timed += row[6] or 0
            totals.inference_time_sum += row[7] or 0.0
            if with_bins:
                _add_bins(totals.confidence_bins, row[8:])
    return result


def device_requests(
    conn: Connection, workspace_id: int, start: datetime, end: datetime
) -> dict[int, int]:
    """Requests per device id over [start, end), from the per-device rollup rows."""
    result: Counter[int] = Counter()
    for resolution, segments in by_resolution(cover(start, end)).items():
        table = rollups[resolution]
        query = (
            select(table.c.device_id, func.sum(table.c.requests))
            .where(
                table.c.workspace_id == workspace_id,
                table.c.device_id != ALL_DEVICES,
                in_segments(table, segments),
            )
            .group_by(table.c.device_id)
        )
        for device, requests in conn.execute(query):
            result[device] += int(requests or 0)
    return dict(result)


@cache
def _sums(table: Table, names: tuple[str, ...]) -> list[ColumnElement[Any]]:
    # Built once: over two hundred SUM() expressions cost more to build than to run.
    return [func.sum(table.c[name]) for name in names]


def _group_column(table: Table, group: str, interval: timedelta | None) -> Any:
    if group == "model":
        return table.c.model_id
    if group == "interval" and interval is not None:
        micros = int(interval.total_seconds()) * 1_000_000
        bucket = type_coerce(table.c.bucket, BigInteger)
        return (bucket - bucket % micros).label("g")
    raise ValueError(f"unknown grouping {group!r}")


def _group_value(group: str | None, value: Any) -> Any:
    if group is None:
        return None
    if group == "interval":
        return from_micros(int(value))
    return value


def _add_bins(totals: Counter[int], values: Iterable[int | None]) -> None:
    for index, value in enumerate(values):
        if value:
            totals[index] += int(value)
