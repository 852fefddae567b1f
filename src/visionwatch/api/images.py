"""Images of inferences: upload after the fact (scope ingest), original and thumbnail (read)."""

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from visionwatch.api.deps import IngestKey, ReadKey
from visionwatch.api.errors import AUTH_ERRORS, BODY_ERRORS, NOT_FOUND, InvalidParams
from visionwatch.http.deps import DatabaseDep, SettingsDep, clock_of
from visionwatch.http.downloads import image_response
from visionwatch.http.responses import JSON
from visionwatch.images.blobs import BlobStore
from visionwatch.images.decode import BadImage, check_image
from visionwatch.store import images as image_store
from visionwatch.timeutil import DAY, ceil_to

router = APIRouter(prefix="/api/v1", tags=["images"])


def blobs_of(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs


@router.put(
    "/inferences/{inference_id:text}/image",
    responses={
        **AUTH_ERRORS,
        **BODY_ERRORS,
        **NOT_FOUND,
        429: {"description": "The model's capture rule allows no more images today"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                content_type: {"schema": {"type": "string", "format": "binary"}}
                for content_type in ("image/jpeg", "image/png", "image/webp")
            },
        }
    },
    summary="Attach an image to a stored inference (raw JPEG, PNG or WebP bytes)",
)
async def put_image(
    inference_id: str,
    request: Request,
    key: IngestKey,
    database: DatabaseDep,
    settings: SettingsDep,
) -> JSON:
    data = await request.body()

    def check_and_store() -> dict[str, object]:
        try:
            checked = check_image(
                data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
            )
        except BadImage as error:
            raise InvalidParams.one("image", str(error)) from None
        try:
            image_store.attach_image(
                database,
                blobs_of(request),
                key.workspace.id,
                inference_id,
                checked,
                clock_of(request),
            )
        except image_store.NoInference:
            raise HTTPException(404, f"no inference {inference_id!r} in this workspace") from None
        except image_store.OverCap as error:
            raise HTTPException(
                429,
                f"model {error.args[0]!r} has kept as many images today as its capture rule "
                "allows; the count starts again at midnight UTC",
                headers={"Retry-After": str(seconds_to_midnight(clock_of(request)))},
            ) from None
        return {
            "inference_id": inference_id,
            "width": checked.width,
            "height": checked.height,
            "content_type": checked.content_type,
            "bytes": len(data),
        }

    return JSON(await run_in_threadpool(check_and_store))


def seconds_to_midnight(now: datetime) -> int:
    return max(1, int((ceil_to(now, DAY) - now).total_seconds()))


@router.get(
    "/inferences/{inference_id:text}/image",
    responses={**AUTH_ERRORS, **NOT_FOUND, 200: {"content": {"image/*": {}}}},
    response_class=Response,
    summary="The image of an inference, as it was sent",
)
def get_image(inference_id: str, request: Request, key: ReadKey, database: DatabaseDep) -> Response:
    found = image_store.image_key(database, key.workspace.id, inference_id)
    return image_response(blobs_of(request), found, thumbnail=False)


@router.get(
    "/inferences/{inference_id:text}/thumbnail",
    responses={**AUTH_ERRORS, **NOT_FOUND, 200: {"content": {"image/jpeg": {}}}},
    response_class=Response,
    summary="A thumbnail (at most 320 pixels a side, JPEG) of the image of an inference",
)
def get_thumbnail(
    inference_id: str, request: Request, key: ReadKey, database: DatabaseDep
) -> Response:
    found = image_store.image_key(database, key.workspace.id, inference_id)
    return image_response(blobs_of(request), found, thumbnail=True)
