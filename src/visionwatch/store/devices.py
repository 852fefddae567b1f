"""Devices: heartbeats, and the fleet's list with online/offline status, a page at a time."""

import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, and_, func, literal, or_, select

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database
from visionwatch.db.schema import devices
from visionwatch.db.types import from_micros, to_micros


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


MAX_PAGE = 1000


class BadDeviceCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """Which devices, and which page of them: the offline first, most recently lost first,
    then the online by name."""

    search: str | None = None  # a part of the name, in any case
    status: Literal["online", "offline"] | None = None
    version: str | None = None
    limit: int = 100
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class DevicePage:
    devices: list[Device]
    next_cursor: str | None
    total: int  # devices matching the search, status and version
    offline: int  # of those, offline
    # The page's devices' ids by name: their rollups are read by id, without a second
    # look-up of a page of names.
    ids: dict[str, int] = field(default_factory=dict)


def page_devices(
    db: Database, workspace_id: int, now: datetime, offline_after: timedelta, query: DeviceQuery
) -> DevicePage:
    threshold = now - offline_after
    conditions: list[Any] = [devices.c.workspace_id == workspace_id]
    if query.search:
        needle = query.search.lower()
        conditions.append(func.lower(devices.c.name).contains(needle, autoescape=True))
    if query.version is not None:
        conditions.append(devices.c.version == query.version)
    group, key, last_id = _decode(query.cursor) if query.cursor else ("offline", None, None)
    rows: list[Any] = []
    wanted = query.limit + 1  # one more says whether a next page exists
    with db.read() as conn:
        is_offline = devices.c.last_seen < threshold
        online_count, offline_count = conn.execute(
            _counts(conditions, threshold, query.status)
        ).one()
        if group == "offline" and query.status in (None, "offline"):
            statement = select(devices).where(*conditions, is_offline)
            if key is not None:
                seen = from_micros(int(key))
                statement = statement.where(
                    or_(
                        devices.c.last_seen < seen,
                        and_(devices.c.last_seen == seen, devices.c.id < last_id),
                    )
                )
            statement = statement.order_by(devices.c.last_seen.desc(), devices.c.id.desc())
            rows += conn.execute(statement.limit(wanted)).all()
            key, last_id = None, None
        if len(rows) < wanted and query.status in (None, "online"):
            statement = select(devices).where(*conditions, ~is_offline)
            if group == "online" and key is not None:
                statement = statement.where(
                    or_(
                        devices.c.name > key,
                        and_(devices.c.name == key, devices.c.id > last_id),
                    )
                )
            statement = statement.order_by(devices.c.name, devices.c.id)
            rows += conn.execute(statement.limit(wanted - len(rows))).all()
    page = rows[: query.limit]
    next_cursor = None
    if len(rows) > query.limit:
        last = page[-1]
        offline = last.last_seen < threshold
        next_cursor = _encode(
            "offline" if offline else "online",
            str(to_micros(last.last_seen)) if offline else last.name,
            last.id,
        )
    return DevicePage(
        [_device(row, now, offline_after) for row in page],
        next_cursor,
        online_count + offline_count,
        offline_count,
        {row.name: row.id for row in page},
    )


def _counts(conditions: list[Any], threshold: datetime, status: str | None) -> Any:
    """The devices meeting `conditions` online and offline (none of a status not asked
    for): two counts over the two ranges of the (workspace, last seen) index either side of
    `threshold`, which together read each device's entry once. A CASE summed over every
    device, the count before, cost about twice as much with 50,000."""

    def count(*where: Any) -> Any:
        return select(func.count()).select_from(devices).where(*conditions, *where)

    online = devices.c.last_seen >= threshold  # not offline: last_seen is never null
    return select(
        count(online).scalar_subquery() if status != "offline" else literal(0),
        count(devices.c.last_seen < threshold).scalar_subquery()
        if status != "online"
        else literal(0),
    )


def get_device(
    db: Database, workspace_id: int, name: str, now: datetime, offline_after: timedelta
) -> Device | None:
    with db.read() as conn:
        row = conn.execute(
            select(devices).where(devices.c.workspace_id == workspace_id, devices.c.name == name)
        ).one_or_none()
    return None if row is None else _device(row, now, offline_after)


def _device(row: Any, now: datetime, offline_after: timedelta) -> Device:
    return Device(
        name=row.name,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        version=row.version,
        hostname=row.hostname,
        tags=orjson.loads(row.tags) if row.tags else [],
        info=orjson.loads(row.info) if row.info else {},
        online=now - row.last_seen <= offline_after,
    )


def _encode(group: str, key: str, row_id: int) -> str:
    packed = orjson.dumps([group, key, row_id])
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, str, int]:
    try:
        group, key, row_id = orjson.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        )
        if group not in ("offline", "online") or not isinstance(key, str):
            raise ValueError(group)
        if group == "offline":
            int(key)
        return group, key, int(row_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadDeviceCursor("not a cursor from a previous page") from None
