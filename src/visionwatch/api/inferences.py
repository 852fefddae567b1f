"""Raw inferences (scope read): the filtered list with cursor pagination, and one in full."""

from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from starlette.responses import StreamingResponse

from visionwatch.api.deps import FiltersDep, PeriodDep, ReadKey
from visionwatch.api.errors import AUTH_ERRORS, NOT_FOUND, VALIDATION_ERRORS, InvalidParams
from visionwatch.api.schemas import InferenceDetailOut, InferencesOut
from visionwatch.http.deps import DatabaseDep
from visionwatch.http.downloads import dataset_response
from visionwatch.http.inferences import inference_json
from visionwatch.http.params import (
    BadParameter,
    inference_query,
)
from visionwatch.http.responses import JSON
from visionwatch.store import inferences as store

router = APIRouter(prefix="/api/v1", tags=["read"])


def inference_filters(
    request: Request,
    period: PeriodDep,
    filters: FiltersDep,
    class_: Annotated[str | None, Query(alias="class", max_length=256)] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    has_image: bool | None = None,
) -> store.InferenceQuery:
    """The filters of the inferences list, also used by exports. The parameters are declared
    for the schema and checked by FastAPI; the query is read as the pages read theirs."""
    try:
        return inference_query(request.query_params, period)
    except BadParameter as error:
        raise InvalidParams.one(error.parameter, error.message) from None


InferenceFilters = Annotated[store.InferenceQuery, Depends(inference_filters)]


@router.get(
    "/inferences",
    response_model=InferencesOut,
    responses={**AUTH_ERRORS, **VALIDATION_ERRORS},
    summary="Inferences, newest first",
)
def list_inferences(
    key: ReadKey,
    database: DatabaseDep,
    query: InferenceFilters,
    limit: Annotated[int, Query(ge=1, le=store.MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JSON:
    """Filters combine with AND. `class`, `min_confidence` and `max_confidence` must hold for one
    same prediction. `metadata.<field>=<value>` (repeatable over fields) matches custom metadata
    exactly. Pass `next_cursor` back as `cursor` for the next page."""
    try:
        items, next_cursor = store.list_inferences(
            database, key.workspace.id, replace(query, limit=limit, cursor=cursor)
        )
    except store.BadCursor as error:
        raise InvalidParams.one("cursor", str(error)) from None
    return JSON(
        {"inferences": [inference_json(item) for item in items], "next_cursor": next_cursor}
    )


@router.get(
    "/exports",
    responses={
        **AUTH_ERRORS,
        **VALIDATION_ERRORS,
        200: {"content": {"application/zip": {}}, "description": "a zip, streamed"},
    },
    response_class=StreamingResponse,
    summary="The filtered inferences that have images, as a dataset for retraining",
)
def export_dataset(
    request: Request,
    key: ReadKey,
    database: DatabaseDep,
    query: InferenceFilters,
    format: Annotated[Literal["coco", "yolo", "jsonl"], Query()] = "coco",
) -> StreamingResponse:
    """A zip of `images/` and the predictions as annotations: COCO (`annotations.json`),
    YOLO (`labels/`, `data.yaml`) or JSON Lines (`annotations.jsonl`)."""
    return dataset_response(request, database, key.workspace.id, query, format)


@router.get(
    "/inferences/{inference_id:text}",
    response_model=InferenceDetailOut,
    responses={**AUTH_ERRORS, **NOT_FOUND},
    summary="One inference, with everything known about it",
)
def get_inference(inference_id: str, key: ReadKey, database: DatabaseDep) -> JSON:
    found = store.get_inference(database, key.workspace.id, inference_id)
    if found is None:
        raise HTTPException(404, f"no inference {inference_id!r} in this workspace")
    return JSON(inference_json(found, with_item=True))
