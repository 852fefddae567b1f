"""Alert rules (scope admin): define, mute, test, and read their history and a preview."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from visionwatch.alerts.evaluator import Evaluator, targets
from visionwatch.alerts.preview import preview_points
from visionwatch.api.deps import AdminKey
from visionwatch.api.errors import AUTH_ERRORS, NOT_FOUND, VALIDATION_ERRORS, InvalidParams
from visionwatch.http.deps import DatabaseDep, SettingsDep, clock_of
from visionwatch.http.responses import JSON
from visionwatch.http.rules import AlertRuleIn
from visionwatch.store import alerts as store
from visionwatch.timeutil import parse_time

# Rule ids are 32-bit: a larger number is a 422, not a database error.
RuleId = Annotated[int, Path(ge=1, le=2**31 - 1)]

router = APIRouter(prefix="/api/v1", tags=["alerts"])


class SilenceIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    until: str | float = Field(description="ISO 8601 or Unix seconds")


def _found(database: DatabaseDep, key: AdminKey, rule_id: int) -> store.StoredRule:
    found = store.get_rule(database, key.workspace.id, rule_id)
    if found is None:
        raise HTTPException(404, f"no alert rule {rule_id} in this workspace")
    return found


@router.get("/alerts", responses=AUTH_ERRORS, summary="Alert rules with their states")
def list_alerts(key: AdminKey, database: DatabaseDep) -> JSON:
    return JSON({"alerts": [r.as_dict() for r in store.list_rules(database, key.workspace.id)]})


@router.post(
    "/alerts",
    status_code=201,
    responses={**AUTH_ERRORS, **VALIDATION_ERRORS},
    summary="Create an alert rule",
)
def create_alert(body: AlertRuleIn, request: Request, key: AdminKey, database: DatabaseDep) -> JSON:
    rule_id = store.create_rule(database, key.workspace.id, body.rule(), clock_of(request))
    return JSON(_found(database, key, rule_id).as_dict(), status_code=201)


@router.get("/alerts/{rule_id}", responses={**AUTH_ERRORS, **NOT_FOUND})
def get_alert(rule_id: RuleId, key: AdminKey, database: DatabaseDep) -> JSON:
    return JSON(_found(database, key, rule_id).as_dict())


@router.put(
    "/alerts/{rule_id}",
    responses={**AUTH_ERRORS, **NOT_FOUND, **VALIDATION_ERRORS},
    summary="Replace an alert rule (its state starts again from ok)",
)
def replace_alert(
    rule_id: RuleId, body: AlertRuleIn, request: Request, key: AdminKey, database: DatabaseDep
) -> JSON:
    if not store.replace_rule(database, key.workspace.id, rule_id, body.rule(), clock_of(request)):
        raise HTTPException(404, f"no alert rule {rule_id} in this workspace")
    return JSON(_found(database, key, rule_id).as_dict())


@router.delete("/alerts/{rule_id}", status_code=204, responses={**AUTH_ERRORS, **NOT_FOUND})
def delete_alert(rule_id: RuleId, key: AdminKey, database: DatabaseDep) -> Response:
    if not store.delete_rule(database, key.workspace.id, rule_id):
        raise HTTPException(404, f"no alert rule {rule_id} in this workspace")
    return Response(status_code=204)


@router.post(
    "/alerts/{rule_id}/silence",
    responses={**AUTH_ERRORS, **NOT_FOUND, **VALIDATION_ERRORS},
    summary="Mute a rule's notifications until a time (its states are still kept)",
)
def silence(rule_id: RuleId, body: SilenceIn, key: AdminKey, database: DatabaseDep) -> JSON:
    try:
        until = parse_time(body.until)
    except ValueError as error:
        raise InvalidParams.one("until", str(error)) from None
    if not store.mute(database, key.workspace.id, rule_id, until):
        raise HTTPException(404, f"no alert rule {rule_id} in this workspace")
    return JSON(_found(database, key, rule_id).as_dict())


@router.delete(
    "/alerts/{rule_id}/silence", responses={**AUTH_ERRORS, **NOT_FOUND}, summary="Unmute"
)
def unsilence(rule_id: RuleId, key: AdminKey, database: DatabaseDep) -> JSON:
    if not store.mute(database, key.workspace.id, rule_id, None):
        raise HTTPException(404, f"no alert rule {rule_id} in this workspace")
    return JSON(_found(database, key, rule_id).as_dict())


@router.get(
    "/alerts/{rule_id}/history",
    responses={**AUTH_ERRORS, **NOT_FOUND},
    summary="Every state change of a rule, newest first",
)
def alert_history(rule_id: RuleId, key: AdminKey, database: DatabaseDep) -> JSON:
    _found(database, key, rule_id)
    events = store.history(database, key.workspace.id, rule_id)
    return JSON(
        {
            "events": [
                {
                    "at": e.at,
                    "from": e.from_state,
                    "to": e.to_state,
                    "value": e.value,
                    "window_start": e.window_start,
                    "window_end": e.window_end,
                }
                for e in events
            ]
        }
    )


@router.get(
    "/alerts/{rule_id}/preview",
    responses={**AUTH_ERRORS, **NOT_FOUND},
    summary="The rule's metric at each hour of the last day",
)
def preview(rule_id: RuleId, request: Request, key: AdminKey, database: DatabaseDep) -> JSON:
    found = _found(database, key, rule_id)
    return JSON({"points": preview_points(database, found, clock_of(request))})


@router.post(
    "/alerts/{rule_id}/test",
    responses={**AUTH_ERRORS, **NOT_FOUND},
    summary="Send a test notification to every recipient and webhook of the rule, now",
)
async def test_alert(
    rule_id: RuleId, request: Request, key: AdminKey, database: DatabaseDep, settings: SettingsDep
) -> JSON:
    found = _found(database, key, rule_id)
    now = clock_of(request)
    evaluator = Evaluator(database, settings, request.app.state.clock)
    results = await run_in_threadpool(evaluator.send_test, found, now)
    return JSON({"results": results, "targets": len(targets(found))})
