"""Time partitions of the raw tables on PostgreSQL: made ahead, split out of the default
partition, and dropped whole by retention (docs/architecture.md, "Time partitions").

Each raw table is partitioned by range of `ts` (integer microseconds) into weeks that
start on Monday 00:00 UTC, with a default partition that takes whatever no week holds
yet (a backfill years old, a clock far in the future), so that a write never fails for
want of a partition. A table and the tables that hang off it (an event's facts) share
their weeks, and go together.

SQLite keeps plain tables: nothing here runs there.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from visionwatch.db import dialect as dialects
from visionwatch.db.engine import Database
from visionwatch.db.types import EPOCH, from_micros, to_micros

# An inference (one row: docs/architecture.md, "The stored form"); an event and its facts.
INFERENCE_TABLES = ("inferences",)
EVENT_TABLES = ("vision_events", "event_metadata", "event_data_fields", "event_classes")
TABLES = INFERENCE_TABLES + EVENT_TABLES

# Weeks, measured against days (benchmarks/README.md, "Partitions"): at 90 days of
# retention a day each is 90 partitions a table, and every lookup by key alone (an
# inference's page, the aggregator's key ranges) probes them all.
WIDTH = timedelta(days=7)
# Partitions are made this far ahead of now by the upkeep job.
AHEAD = timedelta(days=14)
# 1970-01-05, the first Monday after the epoch: weeks start on Mondays.
_ORIGIN = EPOCH + timedelta(days=4)
_BOUNDS = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")
# Upkeep and retention change a parent's partitions under brief locks; rather than queue
# behind a long read (and hold every write queued behind them), they give up and try
# again on their next run.
LOCK_TIMEOUT = "5s"


@dataclass(frozen=True, slots=True)
class Partition:
    table: str  # the parent
    name: str
    start: datetime
    end: datetime


def period_start(moment: datetime, width: timedelta = WIDTH) -> datetime:
    """The start of the partition that holds `moment`."""
    return _ORIGIN + ((moment - _ORIGIN) // width) * width


def partition_name(table: str, start: datetime) -> str:
    return f"{table}_p{start:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def is_partitioned(conn: Connection, table: str) -> bool:
    found = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:table)"), {"table": table}
    ).scalar()
    return found == "p"


def partitions(conn: Connection, table: str) -> list[Partition]:
    """The range partitions of `table`, oldest first (the default is not one of them)."""
    rows = conn.execute(
        text(
            """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = to_regclass(:table)"""
        ),
        {"table": table},
    ).all()
    found = []
    for name, bound in rows:
        match = _BOUNDS.search(bound)
        if match is None:  # DEFAULT
            continue
        start, end = (from_micros(int(value)) for value in match.groups())
        found.append(Partition(table, name, start, end))
    return sorted(found, key=lambda partition: partition.start)


def ensure(
    conn: Connection, tables: Sequence[str], start: datetime, end: datetime, width: timedelta
) -> list[str]:
    """Make the partitions of `tables` that cover [start, end); the names made.

    Rows the default partition holds for a new partition's range move into it, in this
    transaction (the default is locked against writes while they do)."""
    made = []
    for table in tables:
        have = {partition.start for partition in partitions(conn, table)}
        moment = period_start(start, width)
        while moment < end:
            if moment not in have:
                _make(conn, table, moment, moment + width)
                made.append(partition_name(table, moment))
            moment += width
    return made


def _make(conn: Connection, table: str, start: datetime, end: datetime) -> None:
    name, default = partition_name(table, start), default_name(table)
    low, high = to_micros(start), to_micros(end)
    # LIKE then ATTACH: CREATE ... PARTITION OF would lock the parent against every read;
    # ATTACH only against other changes of its partitions.
    conn.execute(text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS)'))
    conn.execute(text(f'LOCK TABLE "{default}" IN EXCLUSIVE MODE'))
    moved = f'"{default}" WHERE ts >= {low} AND ts < {high}'
    conn.execute(text(f'INSERT INTO "{name}" SELECT * FROM {moved}'))
    conn.execute(text(f"DELETE FROM {moved}"))
    conn.execute(
        text(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" FOR VALUES FROM ({low}) TO ({high})')
    )


def upkeep(conn: Connection, now: datetime, width: timedelta = WIDTH) -> list[str]:
    """The upkeep job's work: partitions from this week to the one holding now + `AHEAD`,
    and one for each week the default partition holds rows of (a backfill, say); the
    names made."""
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    made = []
    for group in (INFERENCE_TABLES, EVENT_TABLES):
        ahead = period_start(now + AHEAD, width) + width
        made += ensure(conn, group, period_start(now, width), ahead, width)
        for start in _weeks_in_default(conn, group, width):
            made += ensure(conn, group, start, start + width, width)
    return made


def _weeks_in_default(conn: Connection, group: Sequence[str], width: timedelta) -> list[datetime]:
    step, origin = width // timedelta(microseconds=1), to_micros(_ORIGIN)
    weeks: set[int] = set()
    for table in group:
        weeks |= set(
            conn.execute(
                text(
                    f"SELECT DISTINCT floor((ts - {origin})::numeric / {step})::bigint"
                    f' FROM "{default_name(table)}"'
                )
            ).scalars()
        )
    return [from_micros(origin + week * step) for week in sorted(weeks)]


def is_lock_timeout(error: BaseException) -> bool:
    """Whether `error` is LOCK_TIMEOUT running out (SQLSTATE 55P03)."""
    return getattr(getattr(error, "orig", None), "sqlstate", None) == "55P03"


def expired(conn: Connection, table: str, cutoff: datetime) -> list[datetime]:
    """The starts of the partitions of `table` that end at or before `cutoff`."""
    return [partition.start for partition in partitions(conn, table) if partition.end <= cutoff]


def lock(conn: Connection, group: Sequence[str], start: datetime) -> None:
    """Hold the partitions of `group` that start at `start` until the transaction ends: a
    write into them (a late backfill) commits before, or waits and lands in the default."""
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    for table in group:
        name = partition_name(table, start)
        if conn.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar() is not None:
            conn.execute(text(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE'))


def queued(conn: Connection, name: str) -> bool:
    """Whether a row of the inferences' partition `name` waits for the aggregator."""
    return bool(
        conn.execute(
            text(
                f"""SELECT EXISTS (SELECT 1 FROM rollup_queue q WHERE EXISTS (
                SELECT 1 FROM "{name}" p WHERE p.workspace_id = q.workspace_id
                AND (q.first_ts IS NULL OR p.ts BETWEEN q.first_ts AND q.last_ts)
                AND p.id BETWEEN q.first_pk AND q.last_pk))"""
            )
        ).scalar()
    )


def drop(conn: Connection, group: Sequence[str], start: datetime) -> None:
    """Drop the partitions of `group` that start at `start`, in this transaction."""
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    for table in reversed(group):  # what hangs off first
        conn.execute(text(f'DROP TABLE IF EXISTS "{partition_name(table, start)}"'))


def keep_up(db: Database, now: datetime) -> list[str]:
    """The partition-upkeep job: on PostgreSQL, `upkeep` in a transaction of its own."""
    if not dialects.has_time_partitions(db.dialect):
        return []
    with db.write() as conn:
        return upkeep(conn, now)
