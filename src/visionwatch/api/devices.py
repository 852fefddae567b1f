"""Devices and their online status (scope read), a page at a time: a fleet of 50,000
cameras answers as fast as a small one."""

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from visionwatch.api.deps import ReadKey
from visionwatch.api.errors import AUTH_ERRORS, VALIDATION_ERRORS, InvalidParams
from visionwatch.api.schemas import DevicesOut
from visionwatch.http.deps import DatabaseDep, NowDep, SettingsDep
from visionwatch.http.responses import JSON
from visionwatch.store import devices as store

router = APIRouter(prefix="/api/v1", tags=["read"])


@router.get(
    "/devices",
    response_model=DevicesOut,
    responses={**AUTH_ERRORS, **VALIDATION_ERRORS},
    summary="Devices",
)
def list_devices(
    key: ReadKey,
    database: DatabaseDep,
    settings: SettingsDep,
    now: NowDep,
    search: Annotated[str | None, Query(max_length=256, description="part of the name")] = None,
    status: Annotated[Literal["online", "offline"] | None, Query()] = None,
    version: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=store.MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> JSON:
    """The offline first (most recently lost first), then the online by name. `offline`
    when nothing came from the device for `device_offline_after` seconds. `total` and
    `offline` count every device matching `search`, `status` and `version`."""
    offline_after = timedelta(seconds=settings.device_offline_after)
    query = store.DeviceQuery(search or None, status, version, limit, cursor)
    try:
        found = store.page_devices(database, key.workspace.id, now, offline_after, query)
    except store.BadDeviceCursor as error:
        raise InvalidParams.one("cursor", str(error)) from None
    return JSON(
        {
            "devices": [device_json(d) for d in found.devices],
            "next_cursor": found.next_cursor,
            "total": found.total,
            "offline": found.offline,
        }
    )


def device_json(d: store.Device) -> dict[str, object]:
    return {
        "device_id": d.name,
        "status": "online" if d.online else "offline",
        "first_seen": d.first_seen,
        "last_seen": d.last_seen,
        "version": d.version,
        "hostname": d.hostname,
        "tags": d.tags,
        "info": d.info,
    }
