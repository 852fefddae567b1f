"""What /metrics exports per workspace, model and device, read from the day rollups."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from visionwatch.db.engine import Database
from visionwatch.db.schema import devices, models, rollups, workspaces
from visionwatch.rollups import ALL_DEVICES


@dataclass(frozen=True, slots=True)
class ModelTotals:
    workspace: str
    model: str
    requests: int
    errors: int
    predictions: int


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    workspace: str
    device: str
    last_seen: datetime


def model_totals(db: Database, limit: int) -> list[ModelTotals]:
    """All-time totals per model, at most `limit` models (the busiest)."""
    day = rollups["day"]
    requests = func.sum(day.c.requests)
    query = (
        select(
            workspaces.c.name.label("workspace"),
            models.c.name.label("model"),
            requests.label("requests"),
            func.sum(day.c.errors).label("errors"),
            func.sum(day.c.predictions).label("predictions"),
        )
        .select_from(
            day.join(models, models.c.id == day.c.model_id).join(
                workspaces, workspaces.c.id == day.c.workspace_id
            )
        )
        .where(day.c.device_id == ALL_DEVICES)
        .group_by(workspaces.c.name, models.c.name)
        .order_by(requests.desc(), workspaces.c.name, models.c.name)
        .limit(limit)
    )
    with db.read() as conn:
        return [
            ModelTotals(r.workspace, r.model, int(r.requests), int(r.errors), int(r.predictions))
            for r in conn.execute(query)
        ]


def devices_seen(db: Database, limit: int) -> list[DeviceSeen]:
    """When each device was last heard from, at most `limit` devices (the most recent)."""
    query = (
        select(workspaces.c.name.label("workspace"), devices.c.name, devices.c.last_seen)
        .select_from(devices.join(workspaces, workspaces.c.id == devices.c.workspace_id))
        .order_by(devices.c.last_seen.desc())
        .limit(limit)
    )
    with db.read() as conn:
        return [DeviceSeen(r.workspace, r.name, r.last_seen) for r in conn.execute(query)]
