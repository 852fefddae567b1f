"""Devices and their online status (scope read)."""

from datetime import timedelta

from fastapi import APIRouter

from visionwatch.api.deps import ReadKey
from visionwatch.api.errors import AUTH_ERRORS
from visionwatch.api.schemas import DevicesOut
from visionwatch.http.deps import DatabaseDep, NowDep, SettingsDep
from visionwatch.http.responses import JSON
from visionwatch.store import devices as store

router = APIRouter(prefix="/api/v1", tags=["read"])


@router.get("/devices", response_model=DevicesOut, responses=AUTH_ERRORS, summary="Devices")
def list_devices(key: ReadKey, database: DatabaseDep, settings: SettingsDep, now: NowDep) -> JSON:
    """`offline` when nothing came from the device for `device_offline_after` seconds."""
    offline_after = timedelta(seconds=settings.device_offline_after)
    found = store.list_devices(database, key.workspace.id, now, offline_after)
    return JSON(
        {
            "devices": [
                {
                    "device_id": d.name,
                    "status": "online" if d.online else "offline",
                    "first_seen": d.first_seen,
                    "last_seen": d.last_seen,
                    "version": d.version,
                    "hostname": d.hostname,
                    "tags": d.tags,
                    "info": d.info,
                }
                for d in found
            ]
        }
    )
