"""An operator's verdict on one inference from its page: correct, incorrect or
inconclusive, with the class it really was when the model was wrong. Stored as the API's
`POST /api/v1/inferences/{id}/feedback` stores it (store/feedback.py)."""

from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from visionwatch.http.deps import DatabaseDep, clock_of
from visionwatch.store import feedback as store
from visionwatch.verdicts import VERDICTS
from visionwatch.web.auth import UserDep, read_form
from visionwatch.web.errors import PageError

router = APIRouter(include_in_schema=False)
MAX_CLASS = 256  # as the API's ClassName


def inference_path(inference_id: str) -> str:
    return f"/inferences/{quote(inference_id, safe='')}"


@router.post("/inferences/{inference_id:text}/feedback")
async def give_verdict(
    request: Request, inference_id: str, user: UserDep, database: DatabaseDep
) -> Response:
    form = await read_form(request)
    verdict = form.get("verdict", "")
    if verdict not in VERDICTS:
        raise PageError(
            400, "Unknown verdict", "An inference is correct, incorrect or inconclusive."
        )
    corrected = form.get("corrected_class", "").strip() or None
    if corrected is not None and len(corrected) > MAX_CLASS:
        raise PageError(400, "Bad class", f"corrected_class: at most {MAX_CLASS} characters.")
    judged = await run_in_threadpool(
        store.give_verdict,
        database,
        user.workspace.id,
        inference_id,
        verdict,
        None,
        corrected,
        clock_of(request),
    )
    if judged is None:
        raise PageError(
            404, "No such inference", f"This workspace has no inference {inference_id!r}."
        )
    return RedirectResponse(inference_path(inference_id), status_code=303)
