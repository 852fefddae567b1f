"""Export the inferences of a filtered table as CSV or JSON Lines, streamed page by page."""

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import StreamingResponse

from visionwatch.db.engine import Database
from visionwatch.http.deps import DatabaseDep, clock_of
from visionwatch.http.downloads import dataset_response
from visionwatch.http.inferences import inference_json
from visionwatch.http.responses import dumps
from visionwatch.images.exports import FORMATS
from visionwatch.store import inferences as inference_store
from visionwatch.store.inferences import InferenceQuery
from visionwatch.web.auth import UserDep
from visionwatch.web.errors import PageError
from visionwatch.web.params import inference_query, page_period

router = APIRouter(include_in_schema=False)
EXPORT_PAGE = 500
CSV_COLUMNS = (
    "inference_id",
    "timestamp",
    "model_id",
    "device_id",
    "task",
    "inference_time",
    "prediction_count",
    "mean_confidence",
    "top_classes",
    "error",
    "metadata",
)


def _rows(database: Database, workspace: int, query: InferenceQuery) -> Iterator[dict[str, Any]]:
    """Every inference the filters match, newest first; one page in memory at a time."""
    cursor = None
    while True:
        page = replace(query, limit=EXPORT_PAGE, cursor=cursor)
        rows, cursor = inference_store.list_inferences(database, workspace, page)
        yield from (inference_json(record) for record in rows)
        if cursor is None:
            return


@router.get("/inferences.jsonl")
def export_jsonl(request: Request, user: UserDep, database: DatabaseDep) -> StreamingResponse:
    query = _query(request)
    lines = (dumps(row, line=True) for row in _rows(database, user.workspace.id, query))
    return _download(lines, "application/x-ndjson", "inferences.jsonl")


@router.get("/inferences.csv")
def export_csv(request: Request, user: UserDep, database: DatabaseDep) -> StreamingResponse:
    query = _query(request)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for row in _rows(database, user.workspace.id, query):
            writer.writerow(_csv_values(row))
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    return _download(lines(), "text/csv; charset=utf-8", "inferences.csv")


def _query(request: Request) -> InferenceQuery:
    period = page_period(request.query_params, clock_of(request)).period
    return inference_query(request.query_params, period, cursor="")


def _csv_values(row: dict[str, Any]) -> list[Any]:
    return [
        row["inference_id"],
        dumps(row["timestamp"]).decode().strip('"'),
        row["model_id"],
        row["device_id"] or "",
        row["task"] or "",
        "" if row["inference_time"] is None else row["inference_time"],
        row["prediction_count"],
        "" if row["mean_confidence"] is None else row["mean_confidence"],
        ";".join(row["top_classes"]),
        row["error"] or "",
        orjson.dumps(row["metadata"]).decode() if row["metadata"] else "",
    ]


def _download(body: Iterator[Any], media_type: str, filename: str) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(body, media_type=media_type, headers=headers)


@router.get("/dataset.zip")
def export_dataset(
    request: Request, user: UserDep, database: DatabaseDep, format: str = "coco"
) -> StreamingResponse:
    """The filtered inferences that have images, as a dataset for retraining."""
    if format not in FORMATS:
        raise PageError(400, "Unknown export format", f"Choose one of {', '.join(FORMATS)}.")
    return dataset_response(request, database, user.workspace.id, _query(request), format)
