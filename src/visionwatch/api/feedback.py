"""Operators' verdicts on single inferences (scope ingest) and the realised precision they
give (scope read): what people saw, beside the confidence the model believed."""

from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from visionwatch.api.deps import FiltersDep, IngestKey, PeriodDep, ReadKey
from visionwatch.api.errors import (
    AUTH_ERRORS,
    BODY_ERRORS,
    NOT_FOUND,
    VALIDATION_ERRORS,
    InvalidParams,
)
from visionwatch.http.deps import DatabaseDep, NowDep
from visionwatch.http.responses import JSON
from visionwatch.items import ClassName
from visionwatch.store import feedback as store
from visionwatch.verdicts import VERDICTS, Verdict, Verdicts

router = APIRouter(prefix="/api/v1", tags=["feedback"])


class VerdictIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    verdict: Verdict
    class_: ClassName | None = Field(
        default=None, alias="class", description="the class judged; default the most predicted"
    )
    corrected_class: ClassName | None = Field(default=None, description="what it really was")


@router.post(
    "/inferences/{inference_id:text}/feedback",
    responses={**AUTH_ERRORS, **BODY_ERRORS, **NOT_FOUND},
    summary="An operator's verdict on an inference: correct, incorrect or inconclusive",
)
async def give_verdict(
    inference_id: str, body: VerdictIn, key: IngestKey, database: DatabaseDep, now: NowDep
) -> JSON:
    """A verdict given again replaces the earlier one."""
    judged = await run_in_threadpool(
        store.give_verdict,
        database,
        key.workspace.id,
        inference_id,
        body.verdict,
        body.class_,
        body.corrected_class,
        now,
    )
    if judged is None:
        raise HTTPException(404, f"no inference {inference_id!r} in this workspace")
    return JSON(
        {
            "inference_id": inference_id,
            "verdict": body.verdict,
            "class": judged.class_name,
            "corrected_class": body.corrected_class,
        }
    )


@router.get(
    "/precision",
    responses={**AUTH_ERRORS, **VALIDATION_ERRORS, **NOT_FOUND},
    summary="Realised precision from operators' verdicts, with its 95 % interval",
)
async def precision(
    key: ReadKey,
    database: DatabaseDep,
    period: PeriodDep,
    filters: FiltersDep,
    class_: Annotated[str | None, Query(alias="class", max_length=256)] = None,
    use_case: Annotated[
        str | None,
        Query(max_length=256, description="a use case's events instead of inferences"),
    ] = None,
    events: Annotated[bool, Query(description="all use cases' events, not inferences")] = False,
    group: Literal["model", "device", "class", "hour", "use_case", "workflow"] | None = None,
) -> JSON:
    """precision = correct / (correct + incorrect) over the inferences of the period (or,
    with `use_case` or `events=true`, over the vision events judged by operator_feedback);
    inconclusive verdicts are counted, not judged. `group` splits it: inferences by model,
    device, class or hour; events by use_case, device, workflow, class or hour."""
    on_events = events or use_case is not None
    allowed = EVENT_GROUPS if on_events else INFERENCE_GROUPS
    if group is not None and group not in allowed:
        what = "events" if on_events else "inferences"
        raise InvalidParams.one("group", f"{what} are grouped by {', '.join(allowed)}")
    if on_events and filters.model is not None:
        raise InvalidParams.one("model_id", "events have no model; filter by use_case")
    if on_events:
        found = await run_in_threadpool(
            store.event_precision,
            database,
            key.workspace.id,
            period.start,
            period.end,
            use_case=use_case,
            device=filters.device,
            class_name=class_,
            group=group,  # type: ignore[arg-type]  # checked against EVENT_GROUPS
        )
        if found is None:
            raise HTTPException(404, f"use_case: no use case {use_case!r} in this workspace")
        parts = found
    else:
        parts = await run_in_threadpool(
            store.precision,
            database,
            key.workspace.id,
            filters,
            period,
            class_name=class_,
            group=group,  # type: ignore[arg-type]  # checked against INFERENCE_GROUPS
        )
    # Every verdict is in exactly one group: the whole is their sum, not a second query.
    whole = Verdicts()
    for counts in parts.values():
        for verdict in VERDICTS:
            whole.add(verdict, getattr(counts, verdict))
    body: dict[str, Any] = {**verdict_figures(whole)}
    if group is not None:
        ordered = sorted(parts.items(), key=lambda item: (item[0] is None, str(item[0])))
        body["groups"] = [{"key": key_, **verdict_figures(counts)} for key_, counts in ordered]
    return JSON(body)


INFERENCE_GROUPS = get_args(store.Group)
EVENT_GROUPS = get_args(store.EventGroup)


def verdict_figures(counts: Verdicts) -> dict[str, Any]:
    interval = counts.interval
    return {
        "correct": counts.correct,
        "incorrect": counts.incorrect,
        "inconclusive": counts.inconclusive,
        "judged": counts.judged,
        "precision": counts.precision,
        "interval": list(interval) if interval is not None else None,
    }
