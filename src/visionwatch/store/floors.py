"""How long minute rollups are kept, and the floors that say from which minute they are
complete (docs/architecture.md, "Rollups").

Minutes are kept for every device for what a week's period and the one before it start
with, and per device for what a device's page charts by the minute. The aggregator raises
the floors as time passes; readers take minutes under a floor from the inferences' rows,
and retention deletes them.
"""

import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.schema import rollup_floors
from visionwatch.db.types import to_micros

MINUTE_MICROS = 60_000_000
MINUTES_KEPT = timedelta(days=14)
DEVICE_MINUTES_KEPT = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class Kept:
    """How long minute rollups are kept, for every device and per device."""

    minutes: timedelta = MINUTES_KEPT
    device_minutes: timedelta = DEVICE_MINUTES_KEPT


@dataclass(frozen=True, slots=True)
class Floors:
    """The oldest minute each kind of minute rollup is complete from: every run writes
    the minutes from its own floor on, and floors only rise."""

    minutes: int  # microseconds, every device
    device_minutes: int  # per device


def advance_floors(conn: Connection, dialect: Dialect, now: datetime, kept: Kept) -> Floors:
    """Raise the floors to `kept` before `now` (never lower them: a replica that keeps
    minutes longer writes more, and readers trust what every replica writes)."""
    wanted = {
        "minutes": _minute(to_micros(now - kept.minutes)),
        "device_minutes": _minute(to_micros(now - kept.device_minutes)),
    }
    stored = dict(conn.execute(select(rollup_floors.c.grain, rollup_floors.c.floor)).all())
    for grain, floor in wanted.items():
        if grain not in stored:
            conn.execute(dialects.insert(dialect, rollup_floors).values(grain=grain, floor=floor))
        elif stored[grain] < floor:
            conn.execute(
                update(rollup_floors).where(rollup_floors.c.grain == grain).values(floor=floor)
            )
        stored[grain] = max(stored.get(grain, floor), floor)
    raised = Floors(stored["minutes"], stored["device_minutes"])
    transaction = conn.get_transaction()
    if transaction is not None:
        _SEEN[transaction] = raised  # what this transaction now reads
    return raised


def read_floors(conn: Connection) -> Floors | None:
    """The floors as stored (None before the first run), looked up once a transaction: its
    reads all see one moment (`Database.read`), and a page's dozen reads of rollups each
    asked again (a round trip each on PostgreSQL)."""
    transaction = conn.get_transaction()
    if transaction is not None and transaction in _SEEN:
        return _SEEN[transaction]
    stored = dict(conn.execute(select(rollup_floors.c.grain, rollup_floors.c.floor)).all())
    found = Floors(stored["minutes"], stored["device_minutes"]) if "minutes" in stored else None
    if transaction is None:
        transaction = conn.get_transaction()  # the statement began it
    if transaction is not None:
        _SEEN[transaction] = found
    return found


# The floors each open transaction read, forgotten with it.
_SEEN: "weakref.WeakKeyDictionary[Any, Floors | None]" = weakref.WeakKeyDictionary()


def _minute(micros: int) -> int:
    return micros - micros % MINUTE_MICROS
