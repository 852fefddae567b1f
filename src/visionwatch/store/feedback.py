"""Operators' verdicts on single inferences and on vision events, and the realised
precision they sum to.

Verdicts are few (people give them), so precision is summed from the verdict rows at read
time, by model, device, class or hour (an event's by use case, device, workflow, class or
hour); no rollup is kept for them.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import BigInteger, Connection, func, select, type_coerce

from visionwatch.db import dialect as dialects
from visionwatch.db.engine import Database
from visionwatch.db.schema import (
    devices,
    event_verdicts,
    inference_feedback,
    inferences,
    models,
    use_cases,
)
from visionwatch.db.types import from_micros
from visionwatch.packed.body import unpack_body
from visionwatch.packed.ids import encode_id
from visionwatch.packed.tags import read_tags
from visionwatch.rollups import ALL_DEVICES
from visionwatch.store import dictionaries, legacy
from visionwatch.store.stats import Filters, Period, resolve_scope
from visionwatch.store.vision_events import use_case_pk
from visionwatch.timeutil import HOUR
from visionwatch.verdicts import Verdict, Verdicts

Group = Literal["model", "device", "class", "hour"]
EventGroup = Literal["use_case", "device", "workflow", "class", "hour"]


def give_verdict(
    db: Database,
    workspace_id: int,
    inference_id: str,
    verdict: Verdict,
    class_name: str | None,
    corrected_class: str | None,
    now: datetime,
) -> "Judged | None":
    """Record (or replace) the verdict on an inference; the class it judges (the one given,
    else the inference's most predicted), or None when there is no such inference."""
    return db.run_write(
        _give, db, workspace_id, inference_id, verdict, class_name, corrected_class, now
    )


def _give(
    conn: Connection,
    db: Database,
    workspace_id: int,
    inference_id: str,
    verdict: Verdict,
    class_name: str | None,
    corrected_class: str | None,
    now: datetime,
) -> "Judged | None":
    legacy.move_ids(conn, db.dialect, workspace_id, [inference_id])  # judged in one form
    found = conn.execute(
        select(
            inferences.c.id,
            inferences.c.model_id,
            inferences.c.device_id,
            inferences.c.ts,
            inferences.c.tags,
            inferences.c.body,
        ).where(
            inferences.c.workspace_id == workspace_id,
            inferences.c.inference_id == encode_id(inference_id),
        )
    ).one_or_none()
    if found is None:
        return None
    judged = class_name or _top_class(db, conn, workspace_id, found.tags, found.body)
    values = {
        "workspace_id": workspace_id,
        "model_id": found.model_id,
        "device_id": found.device_id,
        "class_name": judged,
        "verdict": verdict,
        "corrected_class": corrected_class,
        "ts": found.ts,
        "given_at": now,
    }
    statement = dialects.insert(db.dialect, inference_feedback).values(
        inference_pk=found.id, **values
    )
    conn.execute(statement.on_conflict_do_update(index_elements=["inference_pk"], set_=values))
    return Judged(judged)


@dataclass(frozen=True, slots=True)
class Judged:
    """A verdict stored: the class it judges (None: the inference predicted nothing)."""

    class_name: str | None


@dataclass(frozen=True, slots=True)
class GivenVerdict:
    verdict: str
    class_name: str | None
    corrected_class: str | None
    given_at: datetime


def verdict_on(db: Database, workspace_id: int, inference_id: str) -> GivenVerdict | None:
    """The verdict an operator gave an inference, or None."""
    with db.read() as conn:
        pk = conn.execute(
            select(inferences.c.id).where(
                inferences.c.workspace_id == workspace_id,
                inferences.c.inference_id == encode_id(inference_id),
            )
        ).scalar_one_or_none()
        if pk is None:
            pk = legacy.key_of(conn, workspace_id, inference_id)
        row = conn.execute(
            select(
                inference_feedback.c.verdict,
                inference_feedback.c.class_name,
                inference_feedback.c.corrected_class,
                inference_feedback.c.given_at,
            ).where(
                inference_feedback.c.workspace_id == workspace_id,
                inference_feedback.c.inference_pk == pk,
            )
        ).one_or_none()
    if row is None:
        return None
    return GivenVerdict(row.verdict, row.class_name, row.corrected_class, row.given_at)


def _top_class(
    db: Database, conn: Connection, workspace_id: int, tags: str | None, body: bytes
) -> str | None:
    """The class an inference predicted most (ties: the first by name)."""
    decoded = unpack_body(body)
    found = read_tags(tags, decoded.labels, decoded.fields)
    names = dictionaries.label_names(db, conn, workspace_id, found.labels)
    counts = Counter(names[found.labels[score.label]][0] for score in decoded.predictions)
    if not counts:
        return None
    return min(counts, key=lambda name: (-counts[name], name))


def verdicts(
    conn: Connection,
    workspace_id: int,
    start: datetime,
    end: datetime,
    *,
    model_ids: Sequence[int] | None = None,
    device_id: int | None = None,
    class_name: str | None = None,
    group: Group | None = None,
    step: timedelta = HOUR,
) -> dict[Any, Verdicts]:
    """Verdicts on the inferences of [start, end), by `group` (key None without one); "hour"
    groups by buckets of `step` (an hour unless a chart asks for minutes or days)."""
    table = inference_feedback
    conditions = _judged_in(table, workspace_id, start, end, class_name)
    if model_ids is not None:
        conditions.append(table.c.model_id.in_(model_ids))
    if device_id is not None:
        conditions.append(table.c.device_id == device_id)
    key = {
        "model": models.c.name,
        "device": table.c.device_id,
        "class": table.c.class_name,
        "hour": _bucket_of(table.c.ts, step),
    }.get(group or "")
    join = (models, models.c.id == table.c.model_id) if group == "model" else None
    return _count(conn, table, conditions, key, join=join, hourly=group == "hour")


def _count(
    conn: Connection,
    table: Any,
    conditions: list[Any],
    key: Any,
    *,
    join: tuple[Any, Any] | None,
    hourly: bool,
) -> dict[Any, Verdicts]:
    """The verdicts of `table` that meet `conditions`, summed by `key` (an expression, or
    None for one sum), `join` (a table and its on-clause) naming the key's table."""
    keys = [] if key is None else [key]
    query = (
        select(*keys, table.c.verdict, func.count().label("n"))
        .where(*conditions)
        .group_by(*keys, table.c.verdict)
    )
    if join is not None:
        query = query.join_from(table, *join)
    return _counted(conn.execute(query), grouped=bool(keys), hourly=hourly)


def _judged_in(
    table: Any, workspace_id: int, start: datetime, end: datetime, class_name: str | None
) -> list[Any]:
    """A verdict table's rows of a workspace whose judged time is in [start, end), of a
    class when one is named."""
    conditions: list[Any] = [
        table.c.workspace_id == workspace_id,
        table.c.ts >= start,
        table.c.ts < end,
    ]
    if class_name is not None:
        conditions.append(table.c.class_name == class_name)
    return conditions


def _bucket_of(column: Any, step: timedelta) -> Any:
    """The start of the `step` (a whole number of seconds, from the epoch) holding a time
    column's value, in its stored microseconds."""
    micros = int(step.total_seconds()) * 1_000_000
    ts = type_coerce(column, BigInteger)
    return ts - ts % micros


def _counted(rows: Any, *, grouped: bool, hourly: bool) -> dict[Any, Verdicts]:
    """(key..., verdict, n) rows as verdicts by key (None when not grouped)."""
    found: dict[Any, Verdicts] = {}
    for row in rows:
        key: Any = row[0] if grouped else None
        if hourly:
            key = from_micros(int(key))
        found.setdefault(key, Verdicts()).add(row.verdict, int(row.n))
    return found


def precision(
    db: Database,
    workspace_id: int,
    filters: Filters,
    period: Period,
    *,
    class_name: str | None = None,
    group: Group | None = None,
    step: timedelta = HOUR,
) -> dict[Any, Verdicts]:
    """Verdicts over a period for a model and device by name (all when None), by `group`;
    devices are named, hours (buckets of `step`) are their starts."""
    with db.read() as conn:
        scope = resolve_scope(conn, workspace_id, filters)
        if scope is None:
            return {}
        found = verdicts(
            conn,
            workspace_id,
            period.start,
            period.end,
            model_ids=None if scope.model_id is None else [scope.model_id],
            device_id=None if scope.device_id == ALL_DEVICES else scope.device_id,
            class_name=class_name,
            group=group,
            step=step,
        )
        if group != "device":
            return found
        names = dict(
            conn.execute(
                select(devices.c.id, devices.c.name).where(devices.c.workspace_id == workspace_id)
            ).all()
        )
    return {names.get(key) if key is not None else None: value for key, value in found.items()}


def event_precision(
    db: Database,
    workspace_id: int,
    start: datetime,
    end: datetime,
    *,
    use_case: str | None = None,
    device: str | None = None,
    class_name: str | None = None,
    group: EventGroup | None = None,
) -> dict[Any, Verdicts] | None:
    """Verdicts on the events of [start, end) (by the judged event's time), of a use case
    by id or name (all when None), by `group` (use cases by id); None when the use case
    does not exist."""
    table = event_verdicts
    conditions = _judged_in(table, workspace_id, start, end, class_name)
    with db.read() as conn:
        if use_case is not None:
            found = use_case_pk(conn, workspace_id, use_case)
            if found is None:
                return None
            conditions.append(table.c.use_case_id == found)
        if device is not None:
            conditions.append(table.c.device == device)
        key = {
            "use_case": use_cases.c.public_id,
            "device": table.c.device,
            "workflow": table.c.workflow,
            "class": table.c.class_name,
            "hour": _bucket_of(table.c.ts, HOUR),
        }.get(group or "")
        join = (use_cases, use_cases.c.id == table.c.use_case_id) if group == "use_case" else None
        return _count(conn, table, conditions, key, join=join, hourly=group == "hour")
