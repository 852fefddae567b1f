"""Read a JSON request body within the size limit."""

from typing import Any

import orjson
from fastapi import HTTPException, Request

from visionwatch.config import MIB


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    # gzip was undone by the BodyLimit middleware; anything else is not understood.
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise HTTPException(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise HTTPException(400, f"the request body is not valid JSON: {error}") from None


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body exceeds {limit / MIB:g} MiB")
