"""Devices: heartbeats, and the list with online/offline status."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy import Connection, select

from visionwatch.db.engine import Database
from visionwatch.db.schema import devices
from visionwatch.store.ingest import upsert_devices


@dataclass(frozen=True, slots=True)
class Heartbeat:
    device: str
    version: str | None = None
    hostname: str | None = None
    tags: list[str] | None = None


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    first_seen: datetime
    last_seen: datetime
    version: str | None
    hostname: str | None
    tags: list[str]
    online: bool


def record_heartbeat(db: Database, workspace_id: int, beat: Heartbeat, now: datetime) -> None:
    row: dict[str, object] = {
        "name": beat.device,
        "version": beat.version,
        "hostname": beat.hostname,
    }
    row["tags"] = None if beat.tags is None else orjson.dumps(beat.tags).decode()

    def work(conn: Connection) -> None:
        upsert_devices(conn, db.dialect, workspace_id, [row], now)

    db.run_write(work)


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
            online=now - r.last_seen <= offline_after,
        )
        for r in rows
    ]
