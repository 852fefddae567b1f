"""Read rollups: cover a period with the coarsest aligned buckets, and sum them.

A period [start, end) on minute boundaries is split into whole days in the middle, whole
hours around them and minutes at the edges, so a week costs about 7 + 46 + 118 buckets
per model, whatever the traffic was. Minutes are kept for a while only (store/floors.py,
`Floors`): a minute older than its floor is read from the inferences' rows, which an edge
bounds (at most an hour each side, of one device when a device is asked for).

A row's sums are columns, added up by the database; its histograms and class figures are
packed (packed/rollup.py), added up here.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, TypeVar

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

from visionwatch.db.schema import ROLLUP_SUMS, inferences, rollups
from visionwatch.db.types import from_micros, to_micros
from visionwatch.histograms import ranked_positions
from visionwatch.packed.rollup import (
    NO_CLASS,
    Blobs,
    class_totals,
    unpack_bins,
    unpack_classes,
)
from visionwatch.rollups import ALL_DEVICES, ALL_MODELS, ClassDelta, Delta, compute_deltas
from visionwatch.store import dictionaries
from visionwatch.store.decoded import ROW_COLUMNS, WITH_NAMES, as_inference, decode_rows
from visionwatch.store.floors import Floors, read_floors
from visionwatch.timeutil import RESOLUTION_STEPS, floor_to

Segment = tuple[str, datetime, datetime]
MINUTE = RESOLUTION_STEPS["minute"]


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


def by_resolution(segments: Iterable[Segment]) -> dict[str, list[Segment]]:
    grouped: dict[str, list[Segment]] = {}
    for segment in segments:
        grouped.setdefault(segment[0], []).append(segment)
    return grouped


@dataclass(frozen=True, slots=True)
class _Part:
    """A piece of a period: rollup rows of a resolution, or (resolution None) raw rows."""

    resolution: str | None
    start: datetime
    end: datetime


def parts(
    conn: Connection, scope: Scope, start: datetime, end: datetime, coarsest: str = "day"
) -> list[_Part]:
    """What covers [start, end): rollup rows, and raw rows for minutes under their floor."""
    floors = read_floors(conn)
    found = []
    for resolution, low, high in cover(start, end, coarsest):
        if resolution != "minute" or floors is None:
            found.append(_Part(resolution, low, high))
            continue
        floor = from_micros(
            floors.minutes if scope.device_id == ALL_DEVICES else floors.device_minutes
        )
        if high <= floor:
            found.append(_Part(None, low, high))
        elif low >= floor:
            found.append(_Part(resolution, low, high))
        else:
            found += [_Part(None, low, floor), _Part(resolution, floor, high)]
    return found


Models = Literal["one", "every", "each"]


def _models(scope: Scope, resolution: str, per_model: bool) -> Models:
    """Which model keys a read of `scope` takes: its model's, every model's together (model
    0: hours and days of every device), or each model's."""
    if scope.model_id is not None:
        return "one"
    if not per_model and scope.device_id == ALL_DEVICES and resolution != "minute":
        return "every"
    return "each"


@lru_cache(maxsize=256)
def _query(resolution: str, models: Models, columns: tuple[str, ...]) -> Select[Any]:
    """Rows of one device key of a workspace in [from, to): their key and `columns`."""
    table = rollups[resolution]
    bucket = type_coerce(table.c.bucket, BigInteger)
    where = [
        table.c.workspace_id == bindparam("workspace_id"),
        table.c.device_id == bindparam("device_id"),
        bucket >= bindparam("from"),
        bucket < bindparam("to"),
    ]
    if models == "one":
        where.append(table.c.model_id == bindparam("model_id"))
    elif models == "every":
        where.append(table.c.model_id == ALL_MODELS)
    else:
        where.append(table.c.model_id != ALL_MODELS)
    return select(bucket.label("bucket"), table.c.model_id, *(table.c[c] for c in columns)).where(
        *where
    )


def _params(scope: Scope, part: _Part) -> dict[str, Any]:
    params: dict[str, Any] = {
        "workspace_id": scope.workspace_id,
        "device_id": scope.device_id,
        "from": to_micros(part.start),
        "to": to_micros(part.end),
    }
    if scope.model_id is not None:
        params["model_id"] = scope.model_id
    return params


def _raw(
    conn: Connection, scope: Scope, part: _Part
) -> Iterator[tuple[int, int, Delta, dict[str, ClassDelta]]]:
    """The minutes of raw rows in a part, as the rollups would count them: (minute,
    model id, totals, per class name)."""
    where = [
        inferences.c.workspace_id == scope.workspace_id,
        inferences.c.ts >= part.start,
        inferences.c.ts < part.end,
    ]
    if scope.model_id is not None:
        where.append(inferences.c.model_id == scope.model_id)
    if scope.device_id != ALL_DEVICES:
        where.append(inferences.c.device_id == scope.device_id)
    rows = conn.execute(
        select(*ROW_COLUMNS, inferences.c.model_id, inferences.c.device_id)
        .select_from(WITH_NAMES)
        .where(*where)
    ).all()
    if not rows:
        return
    decoded = decode_rows(None, conn, scope.workspace_id, rows)
    deltas = compute_deltas(
        (as_inference(found), row.model_id, None) for found, row in zip(decoded, rows, strict=True)
    )
    classes: dict[tuple[int, int], dict[str, ClassDelta]] = {}
    for (resolution, bucket, model, _, name), class_delta in deltas.classes.items():
        if resolution == "minute":
            classes.setdefault((to_micros(bucket), model), {})[name] = class_delta
    for (resolution, bucket, model, _), delta in deltas.rollups.items():
        if resolution == "minute":
            minute = to_micros(bucket)
            yield minute, model, delta, classes.get((minute, model), {})


def _group(group: str | None, interval: timedelta | None, bucket: int, model: int) -> Any:
    if group is None:
        return None
    if group == "model":
        return model
    assert interval is not None
    micros = int(interval.total_seconds()) * 1_000_000
    return from_micros(bucket - bucket % micros)


def _totals_of(result: dict[Any, Delta], key: Any) -> Delta:
    """The group's totals, made on its first row only: a Delta is two Counters, and a
    default made for every row of a histogram was most of reading it."""
    found = result.get(key)
    if found is None:
        found = result[key] = Delta()
    return found


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
    columns: tuple[str, ...] = ROLLUP_SUMS
    if with_bins == "time":
        columns += ("time_bins",)
    elif with_bins:
        columns += ("confidence_bins", "time_bins")
    result: dict[Any, Delta] = {}
    for part in parts(conn, scope, start, end, coarsest):
        if part.resolution is None:
            for minute, model, counted, _ in _raw(conn, scope, part):
                totals = _totals_of(result, _group(group, interval, minute, model))
                totals.add(_with_bins(counted, with_bins))
            continue
        models = _models(scope, part.resolution, group == "model")
        query = _query(part.resolution, models, columns)
        for row in conn.execute(query, _params(scope, part)):
            totals = _totals_of(result, _group(group, interval, row[0], row[1]))
            totals.requests += row.requests
            totals.errors += row.errors
            totals.empty += row.empty
            totals.predictions += row.predictions
            totals.confidence_sum += row.confidence_sum
            totals.timed += row.timed
            totals.inference_time_sum += row.inference_time_sum
            if with_bins:
                if with_bins is True:
                    unpack_bins(row.confidence_bins, totals.confidence_bins)
                unpack_bins(row.time_bins, totals.time_bins)
    return result


def _with_bins(counted: Delta, with_bins: bool | Literal["time"]) -> Delta:
    """What a read asks of a Delta: its sums, with both histograms, or with one."""
    if with_bins is True:
        return counted
    kept = Delta(**{name: getattr(counted, name) for name in ROLLUP_SUMS})
    if with_bins == "time":
        kept.time_bins = counted.time_bins
    return kept


def time_percentiles(
    conn: Connection,
    scope: Scope,
    start: datetime,
    end: datetime,
    interval: timedelta,
    percents: tuple[int, ...],
) -> dict[datetime, dict[int, int]]:
    """Per interval of [start, end) with a timed request: the inference-time bin (0 up)
    holding each nearest-rank percentile of `percents`."""
    totals = sum_rollups(
        conn, scope, start, end, group="interval", interval=interval, with_bins="time"
    )
    return percentiles_of(totals, percents)


def percentiles_of(
    totals: Mapping[datetime, Delta], percents: tuple[int, ...]
) -> dict[datetime, dict[int, int]]:
    """`time_percentiles` of intervals' totals read with their time histograms."""
    found = {}
    for moment, delta in totals.items():
        if not delta.time_bins:
            continue
        pairs = sorted(delta.time_bins.items())
        at = ranked_positions([count for _, count in pairs], percents)
        if at:
            found[moment] = {percent: pairs[position][0] for percent, position in at.items()}
    return found


Classes = TypeVar("Classes")  # a classes blob as a read decodes it


def _class_rows(
    conn: Connection,
    scope: Scope,
    start: datetime,
    end: datetime,
    coarsest: str = "day",
    *,
    decode: Callable[[bytes], Classes],
) -> Iterator[tuple[int, int, Classes | dict[str, ClassDelta]]]:
    """(bucket, model, classes) of every piece of the period: a row's classes blob as
    `decode` reads it, or (raw rows) the class totals by name."""
    for part in parts(conn, scope, start, end, coarsest):
        if part.resolution is None:
            for minute, model, _, classes in _raw(conn, scope, part):
                yield minute, model, classes
            continue
        query = _query(part.resolution, _models(scope, part.resolution, True), ("classes",))
        for row in conn.execute(query, _params(scope, part)):
            if row.classes:
                yield row[0], row[1], decode(row.classes)


def _without_bins(data: bytes) -> Blobs:
    """A classes blob without its class histograms: for reads that show none (a day's row
    holds up to a hundred bins a class, most of what decoding it costs)."""
    return unpack_classes(data, with_bins=False)


class _ClassNames:
    """Class ids of the rollups' blobs by name, looked up once per read."""

    def __init__(self, conn: Connection, workspace_id: int) -> None:
        self.conn = conn
        self.workspace_id = workspace_id
        self.names: dict[int, str] = {NO_CLASS: ""}

    def of(self, ids: Iterable[int]) -> dict[int, str]:
        missing = {i for i in ids if i not in self.names}
        if missing:
            found = dictionaries.label_names(None, self.conn, self.workspace_id, missing)
            self.names.update((i, found[i][0]) for i in missing if i in found)
        return self.names


def sum_classes(
    conn: Connection, scope: Scope, start: datetime, end: datetime, *, with_bins: bool = True
) -> dict[tuple[int, str], ClassDelta]:
    """Per (model, class) totals over [start, end). Their confidence histograms are kept for
    all devices only: for one device they are empty."""
    result: dict[tuple[int, str], ClassDelta] = {}
    names = _ClassNames(conn, scope.workspace_id)
    with_bins = with_bins and scope.device_id == ALL_DEVICES
    decode = unpack_classes if with_bins else _without_bins
    for _, model, classes in _class_rows(conn, scope, start, end, decode=decode):
        if isinstance(classes, dict):
            for name, figures in classes.items():
                totals = result.setdefault((model, name), ClassDelta())
                totals.add(
                    figures
                    if with_bins
                    else ClassDelta(
                        figures.inferences,
                        figures.predictions,
                        figures.confidence_sum,
                        figures.errors,
                        figures.timed,
                        figures.inference_time_sum,
                    )
                )
            continue
        named = names.of(classes.classes)
        for class_id, figure in classes.classes.items():
            key = (model, named[class_id])
            found = result.get(key)
            if found is None:
                found = result[key] = ClassDelta()
            totals = found
            totals.inferences += figure.inferences
            totals.predictions += figure.predictions
            totals.confidence_sum += figure.confidence_sum
            totals.errors += figure.errors
            totals.timed += figure.timed
            totals.inference_time_sum += figure.inference_time_sum
        if with_bins:
            named = names.of(class_id for class_id, _ in classes.class_bins)
            for (class_id, bin_), count in classes.class_bins.items():
                result.setdefault((model, named[class_id]), ClassDelta()).confidence_bins[bin_] += (
                    count
                )
    return result


def class_predictions(
    conn: Connection, scope: Scope, start: datetime, end: datetime
) -> dict[tuple[int, str], tuple[int, float]]:
    """Per (model, class) over [start, end): its predictions and the sum of their
    confidences, the two sums a class table shows."""
    totals: dict[tuple[int, str], tuple[int, float]] = {}
    names = _ClassNames(conn, scope.workspace_id)
    # The blob's two figures a class table shows, not a ClassFigures per class (a model of
    # a thousand classes made a thousand objects a row).
    for _, model, classes in _class_rows(conn, scope, start, end, decode=class_totals):
        if isinstance(classes, dict):
            listed = [(name, f.predictions, f.confidence_sum) for name, f in classes.items()]
        else:
            named = names.of(class_id for class_id, _, _ in classes)
            listed = [(named[c], p, s) for c, p, s in classes]
        for name, predictions, confidence_sum in listed:
            key = (model, name)
            count, total = totals.get(key, (0, 0.0))
            totals[key] = (count + predictions, total + confidence_sum)
    return totals


def device_requests(
    conn: Connection,
    workspace_id: int,
    start: datetime,
    end: datetime,
    device_ids: list[int] | None = None,
) -> dict[int, int]:
    """Requests per device id over [start, end), from the per-device rollup rows (and rows
    for minutes under the devices' floor); of the devices `device_ids` only (a page of a
    fleet), or of every device."""
    result: Counter[int] = Counter()
    scope = Scope(workspace_id, device_id=-1)  # any device: the floor of a device's minutes
    for part in parts(conn, scope, start, end):
        if part.resolution is None:
            which = (
                inferences.c.device_id.is_not(None)
                if device_ids is None
                else inferences.c.device_id.in_(device_ids)
            )
            query = (
                select(inferences.c.device_id, func.count())
                .where(
                    inferences.c.workspace_id == workspace_id,
                    inferences.c.ts >= part.start,
                    inferences.c.ts < part.end,
                    which,
                )
                .group_by(inferences.c.device_id)
            )
        else:
            table = rollups[part.resolution]
            chosen = (
                table.c.device_id != ALL_DEVICES
                if device_ids is None
                else table.c.device_id.in_(device_ids)
            )
            query = (
                select(table.c.device_id, func.sum(table.c.requests))
                .where(
                    table.c.workspace_id == workspace_id,
                    chosen,
                    table.c.model_id != ALL_MODELS,
                    in_segments(table, [(part.resolution, part.start, part.end)]),
                )
                .group_by(table.c.device_id)
            )
        for device, requests in conn.execute(query):
            result[device] += int(requests or 0)
    return dict(result)


def model_devices(
    conn: Connection,
    workspace_id: int,
    start: datetime,
    end: datetime,
    model_ids: list[int] | None = None,
    device_ids: list[int] | None = None,
) -> set[tuple[int, int]]:
    """(model, device) ids with requests together over [start, end): from the per-device
    rollup rows, and rows for minutes under the devices' floor; of the models and devices
    named, or of all."""
    found: set[tuple[int, int]] = set()
    scope = Scope(workspace_id, device_id=-1)  # any device: the floor of a device's minutes
    for part in parts(conn, scope, start, end):
        if part.resolution is None:
            model, device = inferences.c.model_id, inferences.c.device_id
            where = [
                inferences.c.workspace_id == workspace_id,
                inferences.c.ts >= part.start,
                inferences.c.ts < part.end,
                device.is_not(None),
            ]
        else:
            table = rollups[part.resolution]
            model, device = table.c.model_id, table.c.device_id
            where = [
                table.c.workspace_id == workspace_id,
                device != ALL_DEVICES,
                model != ALL_MODELS,
                table.c.requests > 0,
                in_segments(table, [(part.resolution, part.start, part.end)]),
            ]
        if model_ids is not None:
            where.append(model.in_(model_ids))
        if device_ids is not None:
            where.append(device.in_(device_ids))
        query = select(model, device).where(*where).distinct()
        found.update((int(m), int(d)) for m, d in conn.execute(query))
    return found


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
    micros = int(interval.total_seconds()) * 1_000_000
    wanted = dictionaries.name_id(conn, scope.workspace_id, class_name)
    result: dict[datetime, ClassDelta] = {}
    for bucket, _, classes in _class_rows(conn, scope, start, end, coarsest, decode=_without_bins):
        if isinstance(classes, dict):
            figure: Any = classes.get(class_name)
        else:
            figure = classes.classes.get(wanted) if wanted is not None else None
        if figure is None:
            continue
        totals = result.setdefault(from_micros(bucket - bucket % micros), ClassDelta())
        totals.inferences += figure.inferences
        totals.predictions += figure.predictions
        totals.confidence_sum += figure.confidence_sum
    return result


__all__ = ["Floors", "Scope", "by_resolution", "cover", "in_segments"]
