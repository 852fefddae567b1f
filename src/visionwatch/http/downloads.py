"""Files a route sends: an inference's image or thumbnail, and a filtered dataset as a zip."""

from fastapi import HTTPException, Request
from starlette.responses import Response, StreamingResponse

from visionwatch.db.engine import Database
from visionwatch.http.inferences import inference_json
from visionwatch.images.blobs import BlobStore
from visionwatch.images.decode import CONTENT_TYPES
from visionwatch.images.exports import export_zip
from visionwatch.images.thumbnails import thumbnail_of
from visionwatch.store import inferences as store

# Images never change under a key (keys are content hashes); an inference may get
# another image, so browsers revalidate after a while.
CACHE = "private, max-age=300"


def image_response(blobs: BlobStore, key: str | None, thumbnail: bool) -> Response:
    """The image under `key` (or its thumbnail), or 404."""
    if key is None:
        raise HTTPException(404, "this inference has no image")
    data = thumbnail_of(blobs, key) if thumbnail else blobs.get(key)
    if data is None:
        raise HTTPException(404, "this inference's image is no longer stored")
    extension = "thumb.jpg" if thumbnail else key.split(".", 1)[1]
    return Response(
        data,
        media_type=CONTENT_TYPES[extension],
        headers={"Cache-Control": CACHE, "X-Content-Type-Options": "nosniff"},
    )


def dataset_response(
    request: Request, database: Database, workspace_id: int, query: store.InferenceQuery, fmt: str
) -> StreamingResponse:
    records = store.export_rows(database, workspace_id, query)
    # The images layer writes files; it reads each inference as the API's JSON, with its key.
    rows = ({**inference_json(r, with_item=True), "image_key": r.image_key} for r in records)
    return StreamingResponse(
        export_zip(rows, request.app.state.blobs, fmt),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="visionwatch-{fmt}.zip"'},
    )
