"""The JSON response used everywhere: orjson, UTC times written with a Z."""

from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS


def dumps(content: Any, *, line: bool = False) -> bytes:
    """JSON as the API writes it; `line` ends it with a newline (JSON Lines)."""
    return orjson.dumps(content, option=_OPTIONS | (orjson.OPT_APPEND_NEWLINE if line else 0))


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)


def json_error(error: HTTPException) -> JSON:
    return JSON({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
