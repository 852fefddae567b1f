"""Read a JSON request body within the size limit, gunzipping it when the client compressed it."""

import zlib
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
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, limit)
    elif encoding != "identity":
        raise HTTPException(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise HTTPException(400, f"the request body is not valid JSON: {error}") from None


def _gunzip(body: bytes, limit: int) -> bytes:
    # Decompress at most `limit` bytes: a small bomb must not fill memory.
    decompressor = zlib.decompressobj(wbits=31)
    try:
        result = decompressor.decompress(body, limit + 1)
    except zlib.error:
        raise HTTPException(400, "the request body is not valid gzip") from None
    if len(result) > limit or decompressor.unconsumed_tail:
        raise _too_large(limit)
    return result


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body exceeds {limit / MIB:g} MiB")
