"""The inferences page's chart: its filters' inferences and confidence per interval, as
JSON its script draws after the table is shown (a read of rows must not hold the page)."""

from fastapi import APIRouter, Request

from visionwatch.http.deps import DatabaseDep, clock_of
from visionwatch.http.responses import JSON
from visionwatch.store.selection import selection
from visionwatch.web.auth import UserDep
from visionwatch.web.params import chart_interval, inference_query, page_period

router = APIRouter(include_in_schema=False)


@router.get("/inferences.series")
def selection_series(request: Request, user: UserDep, database: DatabaseDep) -> JSON:
    period = page_period(request.query_params, clock_of(request)).period
    query = inference_query(request.query_params, period, cursor="")
    found = selection(database, user.workspace.id, query, chart_interval(period))
    return JSON(
        {
            "interval": found.interval,
            "start": int(period.start.timestamp()),
            "end": int(period.end.timestamp()),
            "t": [int(moment.timestamp()) for moment in found.moments],
            "inferences": found.inferences,
            "confidence": found.confidence,
            "total": found.total,
            "source": found.source,
        }
    )
