"""Devices: heartbeats, and the list with online/offline status."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy import Connection, func, select

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database
from visionwatch.db.schema import devices


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A device saying it is alive, with what it knows about itself (None: unchanged)."""

    device: str
    version: str | None = None
    hostname: str | None = None
    tags: list[str] | None = None
    info: dict[str, str] | None = None  # system info, deployment type


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    first_seen: datetime
    last_seen: datetime
    version: str | None
    hostname: str | None
    tags: list[str]
    info: dict[str, str]
    online: bool


def heartbeat_row(beat: Heartbeat) -> dict[str, object]:
    return {
        "name": beat.device,
        "version": beat.version,
        "hostname": beat.hostname,
        "tags": None if beat.tags is None else orjson.dumps(beat.tags).decode(),
        "info": None if beat.info is None else orjson.dumps(beat.info).decode(),
    }


def record_heartbeat(db: Database, workspace_id: int, beat: Heartbeat, now: datetime) -> None:
    def work(conn: Connection) -> None:
        upsert_devices(conn, db.dialect, workspace_id, [heartbeat_row(beat)], now)

    db.run_write(work)


def upsert_devices(
    conn: Connection,
    dialect: Dialect,
    workspace_id: int,
    rows: list[dict[str, object]],
    now: datetime,
) -> None:
    """Create or touch devices, seen now unless a row says when (and its version, tags...)."""
    statement = dialects.insert(dialect, devices)
    updates: dict[str, object] = {
        "last_seen": dialects.greatest(dialect, devices.c.last_seen, statement.excluded.last_seen),
        "first_seen": dialects.least(dialect, devices.c.first_seen, statement.excluded.first_seen),
    }
    for column in ("version", "hostname", "tags", "info"):
        updates[column] = func.coalesce(statement.excluded[column], devices.c[column])
    values = [
        {
            "workspace_id": workspace_id,
            "first_seen": now,
            "last_seen": now,
            "version": None,
            "hostname": None,
            "tags": None,
            "info": None,
            **row,
        }
        for row in rows
    ]
    statement = statement.on_conflict_do_update(
        index_elements=["workspace_id", "name"], set_=updates
    )
    conn.execute(statement, values)


def list_devices(
    db: Database, workspace_id: int, now: datetime, offline_after: timedelta
) -> list[Device]:
    with db.read() as conn:
        rows = conn.execute(
            select(devices).where(devices.c.workspace_id == workspace_id).order_by(devices.c.name)
        ).all()
    return [
        Device(
            name=r.name,
            first_seen=r.first_seen,
            last_seen=r.last_seen,
            version=r.version,
            hostname=r.hostname,
            tags=orjson.loads(r.tags) if r.tags else [],
            info=orjson.loads(r.info) if r.info else {},
            online=now - r.last_seen <= offline_after,
        )
        for r in rows
    ]
