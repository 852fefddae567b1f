"""What /metrics exports per workspace, model and device, read from the rollups.

Only figures over a fixed window are read, never all-time sums: retention deletes old
rollups and only the busiest models are exported, so a sum over whatever is kept could
go down, which is fine for a gauge but not for a counter.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select

from visionwatch.db.engine import Database
from visionwatch.db.schema import devices, models, rollups, workspaces
from visionwatch.rollups import ALL_DEVICES
from visionwatch.store.rollup_read import Segment, cover, in_segments
from visionwatch.timeutil import MINUTE, floor_to


@dataclass(frozen=True, slots=True)
class WindowTotals:
    workspace: str
    model: str
    inferences: int
    errors: int
    predictions: int


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    workspace: str
    device: str
    last_seen: datetime


def window_totals(db: Database, now: datetime, window: timedelta, limit: int) -> list[WindowTotals]:
    """Per model, the inferences timestamped in the `window` (whole minutes) that ends with
    the minute of `now`, at most `limit` models: the busiest, then by name.

    Whole minutes because the finest rollups are per minute; the current minute is in, so
    an inference shows at the next scrape, not a minute later.
    """
    end = floor_to(now, MINUTE) + MINUTE
    sums: dict[tuple[str, str], list[int]] = {}
    with db.read_lagging() as conn:
        # A statement per segment: each reads one key range per workspace (see rollup_read).
        for segment in cover(end - window, end):
            for workspace, model, *counts in conn.execute(_window_query(segment)):
                into = sums.setdefault((workspace, model), [0, 0, 0])
                for i, count in enumerate(counts):
                    into[i] += int(count)
    ranked = sorted(sums.items(), key=lambda kv: (-kv[1][0], kv[0]))[:limit]
    return [WindowTotals(w, m, *counts) for (w, m), counts in ranked]


def _window_query(segment: Segment) -> Select[Any]:
    """Workspace, model, inferences, errors and predictions in one segment's buckets."""
    table = rollups[segment[0]]
    sums = (
        select(
            table.c.model_id,
            func.sum(table.c.requests).label("inferences"),
            func.sum(table.c.errors).label("errors"),
            func.sum(table.c.predictions).label("predictions"),
        )
        .where(
            # Every workspace named: the rollups' key leads with it, and so each workspace
            # reads a range of the key instead of the whole table.
            table.c.workspace_id.in_(select(workspaces.c.id)),
            table.c.device_id == ALL_DEVICES,
            in_segments(table, [segment]),
        )
        .group_by(table.c.model_id)
        .subquery()
    )
    return select(
        workspaces.c.name, models.c.name, sums.c.inferences, sums.c.errors, sums.c.predictions
    ).select_from(
        sums.join(models, models.c.id == sums.c.model_id).join(
            workspaces, workspaces.c.id == models.c.workspace_id
        )
    )


def devices_seen(db: Database, limit: int) -> list[DeviceSeen]:
    """When each device was last heard from, at most `limit` devices (the most recent)."""
    query = (
        select(workspaces.c.name.label("workspace"), devices.c.name, devices.c.last_seen)
        .select_from(devices.join(workspaces, workspaces.c.id == devices.c.workspace_id))
        .order_by(devices.c.last_seen.desc())
        .limit(limit)
    )
    with db.read_lagging() as conn:
        return [DeviceSeen(r.workspace, r.name, r.last_seen) for r in conn.execute(query)]
