"""Read a JSON request body (the BodyLimit middleware has bounded and gunzipped it)."""

from typing import Any

import orjson
from fastapi import HTTPException, Request


async def read_json(request: Request) -> Any:
    return parse_json(request, await request.body())


async def read_raw(request: Request) -> bytes:
    """The body's bytes, to be decoded elsewhere (a parser process)."""
    check_encoding(request)
    return await request.body()


def check_encoding(request: Request) -> None:
    # gzip was undone by the middleware; any other encoding is not understood.
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise HTTPException(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none")


def not_json(reason: str) -> HTTPException:
    return HTTPException(400, f"the request body is not valid JSON: {reason}")


def parse_json(request: Request, body: bytes) -> Any:
    check_encoding(request)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise not_json(str(error)) from None
