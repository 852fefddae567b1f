"""Error bodies and their handlers: 422 names each bad field, other errors say what to do."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from visionwatch.http.responses import JSON, json_error
from visionwatch.items import InvalidBatch, ItemError, json_path, message_of


class ErrorBody(BaseModel):
    detail: str


class FieldError(BaseModel):
    index: int | None = None
    path: str
    message: str


class ValidationErrorBody(BaseModel):
    errors: list[FieldError]


class InvalidParams(Exception):
    """Bad query parameters or body fields, answered 422 like the ingest errors."""

    def __init__(self, errors: list[ItemError]) -> None:
        super().__init__(f"{len(errors)} invalid parameter(s)")
        self.errors = errors

    @classmethod
    def one(cls, path: str, message: str) -> "InvalidParams":
        return cls([ItemError(None, path, message)])


def _doc(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"model": model, "description": description}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _doc(ErrorBody, "No API key, or not a live one"),
    403: _doc(ErrorBody, "The key lacks the scope this endpoint needs"),
}
VALIDATION_ERRORS: dict[int | str, dict[str, Any]] = {
    422: _doc(ValidationErrorBody, "Invalid input; each error names its JSON path"),
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **VALIDATION_ERRORS,
    400: _doc(ErrorBody, "The body is not JSON (or not valid gzip)"),
    413: _doc(ErrorBody, "The body is larger than the server accepts"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: _doc(ErrorBody, "Nothing with this id in the key's workspace"),
}


def _errors_body(errors: list[ItemError]) -> dict[str, Any]:
    return {
        "errors": [
            {"path": e.path, "message": e.message}
            if e.index is None
            else {"index": e.index, "path": e.path, "message": e.message}
            for e in errors
        ]
    }


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidBatch)
    async def invalid_batch(_: Request, error: InvalidBatch) -> JSON:
        return JSON(_errors_body(error.errors), status_code=422)

    @app.exception_handler(InvalidParams)
    async def invalid_params(_: Request, error: InvalidParams) -> JSON:
        return JSON(_errors_body(error.errors), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def request_validation(_: Request, error: RequestValidationError) -> JSON:
        errors = []
        for e in error.errors():
            location = tuple(e.get("loc", ()))
            # ("query", "limit") -> "limit"; ("body", "data", 0, "x") -> "data[0].x"
            path = json_path(location[1:]) if len(location) > 1 else "body"
            errors.append(ItemError(None, path, message_of(e)))
        return JSON(_errors_body(errors), status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSON:
        return json_error(error)
