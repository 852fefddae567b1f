"""Writes: inferences, heartbeats and custom metadata (scope ingest)."""

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from visionwatch.api.body import not_json, parse_json, read_raw
from visionwatch.api.deps import IngestKey
from visionwatch.api.errors import AUTH_ERRORS, BODY_ERRORS, InvalidParams
from visionwatch.api.images import blobs_of
from visionwatch.config import Settings
from visionwatch.http.deps import DatabaseDep, NowDep, SettingsDep, clock_of
from visionwatch.http.responses import JSON
from visionwatch.images.decode import BadImage, CheckedImage, check_image
from visionwatch.items import (
    DeviceName,
    FieldName,
    Inference,
    InferenceId,
    ItemError,
    MetadataValueIn,
    NoNul,
    parse_batch,
)
from visionwatch.parsers import NotJson, native_rows
from visionwatch.store import devices as device_store
from visionwatch.store import ingest as ingest_store
from visionwatch.store import metadata as metadata_store

router = APIRouter(prefix="/api/v1", tags=["ingest"])


class IngestResult(BaseModel):
    accepted: int = Field(description="inferences stored by this request")
    duplicates: int = Field(description="inferences whose inference_id was already stored")
    images_kept: int | None = Field(
        default=None, description="multipart only: images stored with their inferences"
    )
    images_over_cap: int | None = Field(
        default=None, description="multipart only: images not kept, past a daily cap"
    )


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
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        body, images = await read_multipart(request, settings)

        def validate_and_store() -> ingest_store.IngestResult:
            # In a worker thread: validating 500 items takes milliseconds the event loop
            # should spend on other requests.
            now = clock_of(request)
            batch = parse_batch(
                body,
                now=now,
                max_items=settings.max_batch_items,
                max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
                limits=settings.item_limits(),
            )
            checked = check_images(settings, batch, images)
            return ingest_store.ingest(
                database, key.workspace.id, batch, now, images=checked, blobs=blobs_of(request)
            )

        result = await run_in_threadpool(validate_and_store)
    else:
        images = {}
        raw = await read_raw(request)
        now = clock_of(request)
        try:
            # Decoded, validated and made rows in a parser process when large (parsers.py).
            rows = await request.app.state.parsers.run(
                raw,
                native_rows,
                now,
                settings.max_batch_items,
                timedelta(seconds=settings.max_clock_skew_seconds),
                settings.item_limits(),
            )
        except NotJson as error:
            raise not_json(str(error)) from None
        result = await run_in_threadpool(
            ingest_store.store_rows, database, key.workspace.id, rows, now
        )
    request.app.state.metrics.record_ingest(result.accepted, result.duplicates)
    answer = {"accepted": result.accepted, "duplicates": result.duplicates}
    if images:
        answer.update(images_kept=result.images_kept, images_over_cap=result.images_over_cap)
    return JSON(answer)


async def read_multipart(request: Request, settings: Settings) -> tuple[Any, dict[str, bytes]]:
    """The batch of a multipart body (its `inferences` part) and its images by inference id."""
    try:
        form = await request.form(
            max_files=settings.max_batch_items,
            max_fields=settings.max_batch_items + 1,
            max_part_size=settings.max_body_bytes,
        )
    except HTTPException:
        raise
    except Exception as error:  # python-multipart's own errors: a broken body
        raise HTTPException(400, f"the multipart body cannot be read: {error}") from None
    batch: Any = None
    images: dict[str, bytes] = {}
    try:
        for name, value in form.multi_items():
            data = await value.read() if isinstance(value, UploadFile) else value.encode()
            if name == "inferences":
                batch = parse_json(request, data)
            elif isinstance(value, UploadFile):
                images[name] = data
            else:
                message = "parts are `inferences` (JSON) and images by inference id"
                raise InvalidParams.one(name, message)
    finally:
        await form.close()  # the parts spooled to temporary files
    if batch is None:
        raise InvalidParams.one("inferences", "a multipart body needs an `inferences` JSON part")
    return batch, images


def check_images(
    settings: Settings, batch: list[Inference], images: dict[str, bytes]
) -> dict[str, CheckedImage]:
    """Every image of the batch decoded and within the limits, or a 422 naming each bad one."""
    ids = {inference.inference_id for inference in batch}
    checked, errors = {}, []
    for inference_id, data in images.items():
        if inference_id not in ids:
            errors.append(ItemError(None, f"images.{inference_id}", "no inference has this id"))
            continue
        try:
            checked[inference_id] = check_image(
                data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
            )
        except BadImage as error:
            errors.append(ItemError(None, f"images.{inference_id}", str(error)))
    if errors:
        raise InvalidParams(errors)
    return checked


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
def post_heartbeat(beat: HeartbeatIn, key: IngestKey, database: DatabaseDep, now: NowDep) -> JSON:
    device_store.record_heartbeat(
        database,
        key.workspace.id,
        device_store.Heartbeat(beat.device_id, beat.version, beat.hostname, beat.tags),
        now,
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


def values_too_long(body: MetadataIn, most: int) -> list[ItemError]:
    return [
        ItemError(None, f"data[{index}].field_value", f"values have at most {most} characters")
        for index, entry in enumerate(body.data)
        if isinstance(entry.field_value, str) and len(entry.field_value) > most
    ]


@router.post(
    "/metadata",
    response_model=MetadataResult,
    responses={**AUTH_ERRORS, **BODY_ERRORS},
    summary="Attach custom metadata to inferences, before or after they arrive",
)
def post_metadata(
    body: MetadataIn, key: IngestKey, database: DatabaseDep, settings: SettingsDep, now: NowDep
) -> JSON:
    too_long = values_too_long(body, settings.max_metadata_value_chars)
    if too_long:
        raise InvalidParams(too_long)
    updates = [
        metadata_store.MetadataUpdate(entry.inference_ids, entry.field_name, entry.field_value)
        for entry in body.data
    ]
    result = metadata_store.attach(database, key.workspace.id, updates, now)
    return JSON({"attached": result.attached, "pending": result.pending})
