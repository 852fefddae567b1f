"""Alert rules (scope admin): define, mute, test, and read their history and a preview."""

import math
from datetime import datetime, timedelta
from typing import Annotated, Literal, Self

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from visionwatch.alerts.evaluator import Evaluator, targets
from visionwatch.alerts.measure import measure
from visionwatch.alerts.rules import DRIFT, RELATIVE, Condition, Metric, Rule, Webhook
from visionwatch.api.deps import AdminKey, DatabaseDep, SettingsDep
from visionwatch.api.errors import AUTH_ERRORS, NOT_FOUND, VALIDATION_ERRORS, InvalidParams
from visionwatch.api.responses import JSON
from visionwatch.items import ClassName, DeviceName, ModelName
from visionwatch.store import alerts as store
from visionwatch.timeutil import HOUR, floor_to, parse_time

# Rule ids are 32-bit: a larger number is a 422, not a database error.
RuleId = Annotated[int, Path(ge=1, le=2**31 - 1)]

router = APIRouter(prefix="/api/v1", tags=["alerts"])
Seconds = Annotated[int, Field(ge=60, le=90 * 86400)]
EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,255}$"


class WebhookIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    url: str = Field(max_length=1024, pattern=r"^https?://\S+$")
    kind: Literal["json", "slack"] = "json"


class AlertRuleIn(BaseModel):
    """An alert rule. Metrics are read over `window_seconds` up to now; relative conditions and
    drift compare with the `baseline_seconds` before the window."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=200)
    metric: Metric
    condition: Condition
    threshold: float = Field(
        description="a value; a percent for drops_by and rises_by; seconds for device_silence"
    )
    model_id: ModelName | None = Field(default=None, description="one model version")
    project: ModelName | None = Field(default=None, description="every version of a project")
    class_: ClassName | None = Field(default=None, alias="class")
    device_id: DeviceName | None = None
    window_seconds: Seconds = 1800
    baseline_seconds: Seconds = 86400
    min_samples: int = Field(default=10, ge=0, le=1_000_000)
    pending_seconds: int = Field(default=0, ge=0, le=86400)
    repeat_seconds: int = Field(default=3600, ge=0, le=30 * 86400)
    max_per_hour: int = Field(default=5, ge=0, le=1000)
    max_per_day: int = Field(default=20, ge=0, le=10000)
    recipients: list[Annotated[str, Field(pattern=EMAIL, max_length=320)]] = Field(
        default_factory=list, max_length=50
    )
    webhooks: list[WebhookIn] = Field(default_factory=list, max_length=20)

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.model_id is not None and self.project is not None:
            raise ValueError("name a model_id or a project, not both")
        if self.metric == "class_share" and self.class_ is None:
            raise ValueError("class_share needs a class")
        if self.class_ is not None and self.metric not in ("avg_confidence", "class_share"):
            raise ValueError("a class applies to avg_confidence and class_share only")
        if self.metric == "device_silence" and self.device_id is None:
            raise ValueError("device_silence needs a device_id")
        if (self.metric == "device_silence" or self.metric in DRIFT) and (
            self.condition != "above"
        ):
            raise ValueError(f"{self.metric} fires when it is above a threshold")
        if self.condition in RELATIVE and not 0 < self.threshold <= 1000:
            raise ValueError("a change is a percent between 0 and 1000")
        return self

    def rule(self) -> Rule:
        return Rule(
            name=self.name,
            metric=self.metric,
            condition=self.condition,
            threshold=self.threshold,
            model=self.model_id,
            project=self.project,
            class_name=self.class_,
            device=self.device_id,
            window_seconds=self.window_seconds,
            baseline_seconds=self.baseline_seconds,
            min_samples=self.min_samples,
            pending_seconds=self.pending_seconds,
            repeat_seconds=self.repeat_seconds,
            max_per_hour=self.max_per_hour,
            max_per_day=self.max_per_day,
            recipients=tuple(self.recipients),
            webhooks=tuple(Webhook(w.url, w.kind) for w in self.webhooks),
        )


class SilenceIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    until: str | float = Field(description="ISO 8601 or Unix seconds")


def _found(database: DatabaseDep, key: AdminKey, rule_id: int) -> store.StoredRule:
    found = store.get_rule(database, key.workspace.id, rule_id)
    if found is None:
        raise HTTPException(404, f"no alert rule {rule_id} in this workspace")
    return found


def clock_of(request: Request) -> datetime:
    now: datetime = request.app.state.clock()
    return now


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


def preview_points(
    database: DatabaseDep, found: store.StoredRule, now: datetime
) -> list[dict[str, object]]:
    end = floor_to(now, HOUR)
    points: list[dict[str, object]] = []
    with database.read() as conn:
        for hours in range(23, -1, -1):
            moment = end - timedelta(hours=hours)
            measured = measure(conn, found.workspace_id, found.rule, moment)
            points.append({"t": moment, "value": measured.value})
    return points


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
