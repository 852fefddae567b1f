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
from typing import Any, Literal

from sqlalchemy import (
    CTE,
    BigInteger,
    Connection,
    Row,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement

from visionwatch.db.dialect import seeks_each_bucket
from visionwatch.db.schema import (
    CLASS_SUMS,
    ROLLUP_SUMS,
    TIME_BIN_BASE,
    class_bins,
    class_rollups,
    rollup_bins,
    rollups,
)
from visionwatch.db.types import from_micros, to_micros
from visionwatch.histograms import ranked_positions
from visionwatch.rollups import ALL_DEVICES, ALL_MODELS, ALL_MODELS_RESOLUTIONS, ClassDelta, Delta
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


def _where(
    table: Table, with_model: bool, buckets: Literal["range", "each", "caller"] = "range"
) -> list[ColumnElement[bool]]:
    """Conditions with parameters (see _params): one statement serves every segment, and
    SQLAlchemy computes its cache key once, not per request. The buckets are the range
    [from, to), or ("each") every bucket of it one by one, or the caller's to choose.

    "each" is for reads of one model's rows (or model 0's): the key is (workspace, device,
    bucket, model, ...), so a range of buckets walks every model's rows of each bucket,
    where a bucket at a time seeks to the one model's (docs/architecture.md, "Reads")."""
    bucket = type_coerce(table.c.bucket, BigInteger)
    conditions = [table.c.workspace_id == bindparam("workspace_id")]
    if "device_id" in table.c:  # class bins are kept for all devices only
        conditions.append(table.c.device_id == bindparam("device_id"))
    if buckets == "range":
        conditions += [bucket >= bindparam("from"), bucket < bindparam("to")]
    elif buckets == "each":
        steps = _bucket_steps()
        conditions.append(bucket.in_(select(steps.c.at)))
    if with_model:
        conditions.append(table.c.model_id == bindparam("model_id"))
    return conditions


def _bucket_steps() -> CTE:
    """The buckets of a segment, made by the statement: a recursive CTE from `from` by
    `step` to `to`. Its parameters do not grow with the buckets (a minute chart of a week
    has 10,080), so SQLAlchemy's compiled form of the statement is reused whole."""
    start, step, end = (cast(bindparam(name), BigInteger) for name in ("from", "step", "to"))
    first = select(start.label("at")).cte("buckets", recursive=True)
    return first.union_all(select((first.c.at + step).label("at")).where(first.c.at + step < end))


def _params(scope: Scope, segment: Segment) -> dict[str, Any]:
    _, start, end = segment
    params: dict[str, Any] = {
        "workspace_id": scope.workspace_id,
        "device_id": scope.device_id,
        "from": to_micros(start),
        "to": to_micros(end),
        "step": int(RESOLUTION_STEPS[segment[0]].total_seconds()) * 1_000_000,
    }
    if scope.model_id is not None:
        params["model_id"] = scope.model_id
    return params


@lru_cache(maxsize=1024)  # shapes: resolution, bins, grouping, model or not
def _rollup_query(
    resolution: str,
    bins: bool,
    group: str | None,
    interval: timedelta | None,
    model: bool,
    all_models: bool = False,
    time_only: bool = False,
    each: bool = False,
) -> Select[Any]:
    """The sums of the rollup rows or (`bins`) the counts per bin of their histograms, with
    the group's key last. `all_models`: the histograms of every model and device, kept
    under model 0 (a tenth of the rows with ten models); otherwise those rows are left out.
    `each`: a histogram of one model's rows (or model 0's) read a bucket at a time
    (`_where`); sums are always a range, a row per model and bucket read for every model."""
    table = rollup_bins[resolution] if bins else rollups[resolution]
    if bins:
        query = select(table.c.bin, func.sum(table.c.count).label("bin_count")).group_by(
            table.c.bin
        )
        if time_only:  # inference time's histogram only (its percentiles), not confidence's
            query = query.where(table.c.bin >= TIME_BIN_BASE)
        if all_models:
            query = query.where(table.c.model_id == ALL_MODELS)
        elif not model:
            query = query.where(table.c.model_id != ALL_MODELS)
    else:
        query = select(*_sums(table, ROLLUP_SUMS))
    query = query.where(*_where(table, model, "each" if each else "range"))
    if group is not None:
        key = _group_column(table, group, interval)
        query = query.add_columns(key.label("group_key")).group_by(key)
    return query


@lru_cache(maxsize=1024)
def _class_query(resolution: str, bins: bool, model: bool) -> Select[Any]:
    """Per model and class: the sums, or (`bins`) the count per confidence bin, last."""
    table = class_bins[resolution] if bins else class_rollups[resolution]
    columns = (
        (table.c.bin, func.sum(table.c.count).label("bin_count"))
        if bins
        else _sums(table, CLASS_SUMS)
    )
    keys = (table.c.model_id, table.c.class_name, *((table.c.bin,) if bins else ()))
    return (
        select(table.c.model_id, table.c.class_name, *columns)
        .where(*_where(table, model))
        .group_by(*keys)
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
    with_bins: bool | Literal["time"] = True,
) -> dict[Any, Delta]:
    """Delta over [start, end), grouped by nothing (key None), "model" or "interval"; with
    both histograms, none, or (`"time"`) inference time's only."""
    coarsest = "day"
    if group == "interval":
        assert interval is not None
        coarsest = next(name for name, step in RESOLUTION_STEPS.items() if step == interval)
    result: dict[Any, Delta] = {}
    model = scope.model_id is not None
    # A statement per segment: each is one range of its table's key, where the segments of
    # a resolution OR-ed in one statement made SQLite walk every bucket of the key's device.
    for segment in cover(start, end, coarsest):
        resolution, params = segment[0], _params(scope, segment)
        query = _rollup_query(resolution, False, group, interval, model)
        for row in conn.execute(query, params):
            totals = _totals_of(result, _group_value(group, row))
            totals.requests += row.requests or 0
            totals.errors += row.errors or 0
            totals.empty += row.empty or 0
            totals.predictions += row.predictions or 0
            totals.confidence_sum += row.confidence_sum or 0.0
            totals.timed += row.timed or 0
            totals.inference_time_sum += row.inference_time_sum or 0.0
        if not with_bins:
            continue
        all_models = (
            not model
            and scope.device_id == ALL_DEVICES
            and group != "model"
            and resolution in ALL_MODELS_RESOLUTIONS
        )
        each = (model or all_models) and seeks_each_bucket(conn)
        query = _rollup_query(
            resolution, True, group, interval, model, all_models, with_bins == "time", each
        )
        for row in conn.execute(query, params):
            totals = _totals_of(result, _group_value(group, row))
            bin_, count = row.bin, int(row.bin_count)
            if bin_ < TIME_BIN_BASE:
                totals.confidence_bins[bin_] += count
            else:
                totals.time_bins[bin_ - TIME_BIN_BASE] += count
    return result


# A bin and its count packed in one integer (bin << PACKED_BITS | count): a bucket's bins
# come back as one string of them, and sorting the integers sorts by bin.
PACKED_BITS = 40
COUNT_MASK = (1 << PACKED_BITS) - 1


@lru_cache(maxsize=64)
def _time_bins_query(model: bool, all_models: bool, resolution: str) -> Select[Any]:
    """The inference-time bins of each bucket of a range, one row a bucket: (bucket, its
    bins and counts packed, comma-separated, or NULL without any). Of one model (or model
    0's, every model's) the stored rows; else the models' rows added up per bin first.

    A row a bucket, not a row a bin: a week's chart of hours of every model was 4,000 rows
    of (bucket, bin, count), and turning them into Python values took longer than the
    database's read. The buckets are made by the statement (`_bucket_steps`) and each is
    read by a subquery of its own, a seek to its model's time bins (docs/architecture.md,
    "Reads")."""
    buckets = _bucket_steps()
    table = rollup_bins[resolution]
    bucket = type_coerce(table.c.bucket, BigInteger)
    where = [
        *_where(table, model, buckets="caller"),
        bucket == buckets.c.at,
        table.c.bin >= TIME_BIN_BASE,
    ]
    if all_models:
        where.append(table.c.model_id == ALL_MODELS)
    elif not model:
        where.append(table.c.model_id != ALL_MODELS)
        summed = (
            select(table.c.bin, func.sum(table.c.count).label("count"))
            .where(*where)
            .group_by(table.c.bin)
            .correlate(buckets)
            .subquery()
        )
        bins = select(_packed(summed.c.bin, summed.c["count"])).correlate(buckets)
        return select(buckets.c.at, bins.scalar_subquery())
    bins = select(_packed(table.c.bin, table.c["count"])).where(*where).correlate(buckets)
    return select(buckets.c.at, bins.scalar_subquery())


def _packed(bin_: ColumnElement[Any], count: ColumnElement[Any]) -> ColumnElement[Any]:
    """The bins and counts of a bucket as one comma-separated text of packed integers."""
    shifted = type_coerce(bin_, BigInteger) * (1 << PACKED_BITS)  # no smallint overflow
    return func.aggregate_strings(cast(shifted + count, Text), ",")


def time_percentiles(
    conn: Connection,
    scope: Scope,
    start: datetime,
    end: datetime,
    interval: timedelta,
    percents: tuple[int, ...],
) -> dict[datetime, dict[int, int]]:
    """Per interval of [start, end) with a timed request: the inference-time bin (0 up)
    holding each nearest-rank percentile of `percents`. What `sum_rollups(...,
    with_bins="time")` gives and `percentile_bins` reads, without a Counter per interval."""
    coarsest = next(name for name, step in RESOLUTION_STEPS.items() if step == interval)
    micros = int(interval.total_seconds()) * 1_000_000
    model = scope.model_id is not None
    packed: dict[int, list[int]] = {}  # interval start -> its buckets' packed bins
    for segment in cover(start, end, coarsest):
        resolution = segment[0]
        all_models = (
            not model and scope.device_id == ALL_DEVICES and resolution in ALL_MODELS_RESOLUTIONS
        )
        query = _time_bins_query(model, all_models, resolution)
        for bucket, bins in conn.execute(query, _params(scope, segment)).all():
            if bins is not None:
                packed.setdefault(bucket - bucket % micros, []).extend(map(int, bins.split(",")))
    found = {}
    for group_key, values in packed.items():
        values.sort()
        at = ranked_positions([value & COUNT_MASK for value in values], percents)
        if at:
            found[from_micros(group_key)] = {
                percent: (values[position] >> PACKED_BITS) - TIME_BIN_BASE
                for percent, position in at.items()
            }
    return found


def _totals_of(result: dict[Any, Delta], key: Any) -> Delta:
    """The group's totals, made on its first row only: a Delta is two Counters, and a
    default made for every row of a histogram was most of reading it."""
    found = result.get(key)
    if found is None:
        found = result[key] = Delta()
    return found


def sum_classes(
    conn: Connection, scope: Scope, start: datetime, end: datetime, *, with_bins: bool = True
) -> dict[tuple[int, str], ClassDelta]:
    """Per (model, class) totals over [start, end). Their confidence histograms are kept for
    all devices only: for one device they are empty."""
    result: dict[tuple[int, str], ClassDelta] = {}
    model = scope.model_id is not None
    with_bins = with_bins and scope.device_id == ALL_DEVICES
    for segment in cover(start, end):  # a statement per segment, as sum_rollups
        resolution, params = segment[0], _params(scope, segment)
        query = _class_query(resolution, False, model)
        # Plain tuples in CLASS_SUMS' order: a 1,000-class model reads thousands of rows.
        for model_id, class_name, *sums in conn.execute(query, params):
            key = (model_id, class_name)
            found = result.get(key)
            totals = found if found is not None else result.setdefault(key, ClassDelta())
            inferences, predictions, confidence_sum, errors, timed, time_sum = sums
            totals.inferences += inferences or 0
            totals.predictions += predictions or 0
            totals.confidence_sum += confidence_sum or 0.0
            totals.errors += errors or 0
            totals.timed += timed or 0
            totals.inference_time_sum += time_sum or 0.0
        if not with_bins:
            continue
        query = _class_query(resolution, True, model)
        for row in conn.execute(query, params):
            totals = result.setdefault((row.model_id, row.class_name), ClassDelta())
            totals.confidence_bins[row.bin] += int(row.bin_count)
    return result


@lru_cache(maxsize=64)
def _class_predictions_query(resolution: str, model: bool, each: bool) -> Select[Any]:
    """Per model and class: its predictions and the sum of their confidences, as plain rows;
    `each`: the buckets of one model read one at a time (`_where`)."""
    table = class_rollups[resolution]
    return (
        select(
            table.c.model_id,
            table.c.class_name,
            func.sum(table.c.predictions),
            func.sum(table.c.confidence_sum),
        )
        .where(*_where(table, model, "each" if each else "range"))
        .group_by(table.c.model_id, table.c.class_name)
    )


def class_predictions(
    conn: Connection, scope: Scope, start: datetime, end: datetime
) -> dict[tuple[int, str], tuple[int, float]]:
    """Per (model, class) over [start, end): its predictions and the sum of their
    confidences, added up segment by segment as `sum_classes` does. The two sums a class
    table shows, where `sum_classes` reads six and builds a ClassDelta for each of a
    1,000-class model's classes in every segment."""
    model = scope.model_id is not None
    each = model and seeks_each_bucket(conn)
    totals: dict[tuple[int, str], tuple[int, float]] = {}
    for segment in cover(start, end):
        query = _class_predictions_query(segment[0], model, each)
        for model_id, class_name, predictions, confidence_sum in conn.execute(
            query, _params(scope, segment)
        ):
            key = (model_id, class_name)
            count, total = totals.get(key, (0, 0.0))
            totals[key] = (count + (predictions or 0), total + (confidence_sum or 0.0))
    return totals


def device_requests(
    conn: Connection,
    workspace_id: int,
    start: datetime,
    end: datetime,
    device_ids: list[int] | None = None,
) -> dict[int, int]:
    """Requests per device id over [start, end), from the per-device rollup rows; of the
    devices `device_ids` only (a page of a fleet), or of every device."""
    result: Counter[int] = Counter()
    for resolution, segments in by_resolution(cover(start, end)).items():
        table = rollups[resolution]
        which = (
            table.c.device_id != ALL_DEVICES
            if device_ids is None
            else table.c.device_id.in_(device_ids)
        )
        query = (
            select(table.c.device_id, func.sum(table.c.requests))
            .where(table.c.workspace_id == workspace_id, which, in_segments(table, segments))
            .group_by(table.c.device_id)
        )
        for device, requests in conn.execute(query):
            result[device] += int(requests or 0)
    return dict(result)


def _bin_count(table: Table) -> ColumnElement[Any]:
    # Not "count": to mypy, row.count is the method every tuple has.
    return func.sum(table.c.count).label("bin_count")


@cache
def _sums(table: Table, names: tuple[str, ...]) -> list[ColumnElement[Any]]:
    """The sums of `names`, each labelled with its name: rows are read by name."""
    return [func.sum(table.c[name]).label(name) for name in names]


def _group_column(table: Table, group: str, interval: timedelta | None) -> Any:
    if group == "model":
        return table.c.model_id
    if group == "interval" and interval is not None:
        micros = int(interval.total_seconds()) * 1_000_000
        bucket = type_coerce(table.c.bucket, BigInteger)
        return (bucket - bucket % micros).label("g")
    raise ValueError(f"unknown grouping {group!r}")


def _group_value(group: str | None, row: Row[Any]) -> Any:
    """The row's group: none, a model id, or an interval's start."""
    return None if group is None else _group_key(group, row.group_key)


def _group_key(group: str | None, value: Any) -> Any:
    if group is None:
        return None
    if group == "interval":
        return from_micros(int(value))
    return value


@lru_cache(maxsize=64)
def _class_series_query(resolution: str, interval: timedelta, model: bool) -> Select[Any]:
    """Per interval: the inferences with a class, its predictions and their confidences."""
    table = class_rollups[resolution]
    key = _group_column(table, "interval", interval)
    return (
        select(
            key.label("group_key"),
            func.sum(table.c.inferences).label("inferences"),
            func.sum(table.c.predictions).label("predictions"),
            func.sum(table.c.confidence_sum).label("confidence_sum"),
        )
        .where(*_where(table, model), table.c.class_name == bindparam("class_name"))
        .group_by(key)
    )


def class_series(
    conn: Connection,
    scope: Scope,
    class_name: str,
    start: datetime,
    end: datetime,
    interval: timedelta,
) -> dict[datetime, ClassDelta]:
    """One class's totals per interval over [start, end): inferences that predicted it at
    least once, its predictions and the sum of their confidences."""
    coarsest = next(name for name, step in RESOLUTION_STEPS.items() if step == interval)
    result: dict[datetime, ClassDelta] = {}
    for segment in cover(start, end, coarsest):
        params = {**_params(scope, segment), "class_name": class_name}
        query = _class_series_query(segment[0], interval, scope.model_id is not None)
        for row in conn.execute(query, params):
            totals = result.setdefault(from_micros(int(row.group_key)), ClassDelta())
            totals.inferences += int(row.inferences or 0)
            totals.predictions += int(row.predictions or 0)
            totals.confidence_sum += float(row.confidence_sum or 0.0)
    return result
