"""Read a JSON request body (the BodyLimit middleware has bounded and gunzipped it)."""

from typing import Any

import orjson
from fastapi import HTTPException, Request


async def read_json(request: Request) -> Any:
    return parse_json(request, await request.body())


def parse_json(request: Request, body: bytes) -> Any:
    # gzip was undone by the middleware; any other encoding is not understood.
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise HTTPException(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise HTTPException(400, f"the request body is not valid JSON: {error}") from None
