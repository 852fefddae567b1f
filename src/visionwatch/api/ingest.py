"""Writes: inferences, heartbeats and custom metadata (scope ingest)."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from visionwatch.api.body import read_json
from visionwatch.api.deps import DatabaseDep, IngestKey, SettingsDep
from visionwatch.api.errors import AUTH_ERRORS, BODY_ERRORS
from visionwatch.api.responses import JSON
from visionwatch.items import (
    DeviceName,
    FieldName,
    InferenceId,
    MetadataValueIn,
    NoNul,
    parse_batch,
)
from visionwatch.store import devices as device_store
from visionwatch.store import ingest as ingest_store
from visionwatch.store import metadata as metadata_store
from visionwatch.timeutil import utcnow

router = APIRouter(prefix="/api/v1", tags=["ingest"])


class IngestResult(BaseModel):
    accepted: int = Field(description="inferences stored by this request")
    duplicates: int = Field(description="inferences whose inference_id was already stored")


@router.post(
    "/inferences",
    response_model=IngestResult,
    responses={**AUTH_ERRORS, **BODY_ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchIn"}}},
        }
    },
    summary="Store a batch of inferences, atomically",
)
async def post_inferences(
    request: Request, key: IngestKey, database: DatabaseDep, settings: SettingsDep
) -> JSON:
    """At most `max_batch_items` items; re-sent inference ids are counted once.

    The body may be gzip-compressed (`Content-Encoding: gzip`).
    """
    body = await read_json(request)

    def validate_and_store() -> ingest_store.IngestResult:
        # In a worker thread: validating 500 items takes milliseconds the event loop
        # should spend on other requests.
        now = utcnow()
        batch = parse_batch(
            body,
            now=now,
            max_items=settings.max_batch_items,
            max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
        )
        return ingest_store.ingest(database, key.workspace.id, batch, now)

    result = await run_in_threadpool(validate_and_store)
    request.app.state.metrics.record_ingest(result.accepted, result.duplicates)
    return JSON({"accepted": result.accepted, "duplicates": result.duplicates})


class HeartbeatIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    device_id: DeviceName
    version: Annotated[str, Field(max_length=128), NoNul] | None = None
    hostname: Annotated[str, Field(max_length=256), NoNul] | None = None
    tags: list[Annotated[str, Field(max_length=128), NoNul]] | None = Field(
        default=None, max_length=64
    )


@router.post(
    "/heartbeats",
    responses={**AUTH_ERRORS, **BODY_ERRORS},
    summary="Mark a device online",
)
def post_heartbeat(beat: HeartbeatIn, key: IngestKey, database: DatabaseDep) -> JSON:
    device_store.record_heartbeat(
        database,
        key.workspace.id,
        device_store.Heartbeat(beat.device_id, beat.version, beat.hostname, beat.tags),
        utcnow(),
    )
    return JSON({"device_id": beat.device_id, "status": "online"})


class MetadataEntry(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    inference_ids: list[InferenceId] = Field(min_length=1, max_length=10_000)
    field_name: FieldName
    field_value: MetadataValueIn


class MetadataIn(BaseModel):
    # extra="ignore": Roboflow's shape may carry the api_key in the body.
    model_config = ConfigDict(strict=True, extra="ignore")

    data: list[MetadataEntry] = Field(min_length=1, max_length=1000)


class MetadataResult(BaseModel):
    attached: int = Field(description="(inference, field) pairs set on stored inferences")
    pending: int = Field(description="pairs kept until their inference arrives")


@router.post(
    "/metadata",
    response_model=MetadataResult,
    responses={**AUTH_ERRORS, **BODY_ERRORS},
    summary="Attach custom metadata to inferences, before or after they arrive",
)
def post_metadata(body: MetadataIn, key: IngestKey, database: DatabaseDep) -> JSON:
    updates = [
        metadata_store.MetadataUpdate(entry.inference_ids, entry.field_name, entry.field_value)
        for entry in body.data
    ]
    result = metadata_store.attach(database, key.workspace.id, updates, utcnow())
    return JSON({"attached": result.attached, "pending": result.pending})
