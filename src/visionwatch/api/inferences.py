"""Raw inferences (scope read): the filtered list with cursor pagination, and one in full."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from visionwatch.api.deps import DatabaseDep, FiltersDep, PeriodDep, ReadKey
from visionwatch.api.errors import AUTH_ERRORS, NOT_FOUND, VALIDATION_ERRORS, InvalidParams
from visionwatch.api.responses import JSON
from visionwatch.api.schemas import InferenceDetailOut, InferencesOut
from visionwatch.items import MAX_FIELD_NAME, MAX_FIELD_VALUE
from visionwatch.store import inferences as store

router = APIRouter(prefix="/api/v1", tags=["read"])
METADATA_PREFIX = "metadata."


@router.get(
    "/inferences",
    response_model=InferencesOut,
    responses={**AUTH_ERRORS, **VALIDATION_ERRORS},
    summary="Inferences, newest first",
)
def list_inferences(
    request: Request,
    key: ReadKey,
    database: DatabaseDep,
    period: PeriodDep,
    filters: FiltersDep,
    class_: Annotated[str | None, Query(alias="class", max_length=256)] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    has_image: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=store.MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JSON:
    """Filters combine with AND. `class`, `min_confidence` and `max_confidence` must hold for one
    same prediction. `metadata.<field>=<value>` (repeatable over fields) matches custom metadata
    exactly. Pass `next_cursor` back as `cursor` for the next page."""
    metadata = {}
    for name, value in request.query_params.items():
        if name.startswith(METADATA_PREFIX):
            field = name.removeprefix(METADATA_PREFIX)
            if not 1 <= len(field) <= MAX_FIELD_NAME or len(value) > MAX_FIELD_VALUE:
                raise InvalidParams.one(name, "metadata filters name a field and its value")
            metadata[field] = value
    query = store.InferenceQuery(
        period=period,
        model=filters.model,
        device=filters.device,
        class_name=class_,
        min_confidence=min_confidence,
        max_confidence=max_confidence,
        has_image=has_image,
        metadata=metadata,
        limit=limit,
        cursor=cursor,
    )
    try:
        items, next_cursor = store.list_inferences(database, key.workspace.id, query)
    except store.BadCursor as error:
        raise InvalidParams.one("cursor", str(error)) from None
    return JSON({"inferences": items, "next_cursor": next_cursor})


@router.get(
    "/inferences/{inference_id:path}",
    response_model=InferenceDetailOut,
    responses={**AUTH_ERRORS, **NOT_FOUND},
    summary="One inference, with everything known about it",
)
def get_inference(inference_id: str, key: ReadKey, database: DatabaseDep) -> JSON:
    found = store.get_inference(database, key.workspace.id, inference_id)
    if found is None:
        raise HTTPException(404, f"no inference {inference_id!r} in this workspace")
    return JSON(found)
