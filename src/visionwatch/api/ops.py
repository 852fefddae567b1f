"""Operations: liveness, readiness and Prometheus metrics (no key needed)."""

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from visionwatch.db.engine import Database
from visionwatch.http.deps import DatabaseDep
from visionwatch.http.responses import JSON
from visionwatch.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
def healthz() -> JSON:
    return JSON({"status": "ok"})


def _ping(database: Database) -> None:
    with database.read() as conn:
        conn.execute(text("SELECT 1"))


@router.get(
    "/readyz", summary="The database answers", responses={503: {"description": "It does not"}}
)
async def readyz(database: DatabaseDep) -> JSON:
    """Ready when the primary answers. A hot standby, when there is one, is reported
    (whether it serves the dashboard's reads now, its replay lag, and why): when it does
    not, the primary serves them, so the server is still ready."""
    try:
        await run_in_threadpool(_ping, database)
    except Exception as error:  # any failure to reach the database means "not ready"
        return JSON({"status": "unavailable", "detail": type(error).__name__}, status_code=503)
    body: dict[str, object] = {"status": "ok"}
    if database.standby is not None:
        state = await run_in_threadpool(database.standby.state)
        body["standby"] = {
            "serving_reads": state.serving,
            "lag_seconds": state.lag_seconds,
            "detail": state.detail,
        }
    return JSON(body)


@router.get("/metrics", summary="Prometheus text format", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
