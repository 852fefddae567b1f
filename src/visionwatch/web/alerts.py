"""Alert pages: the rules with their states, a rule with its preview and history, the form."""

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from visionwatch.alert_rules import CONDITIONS, METRICS, RuleState
from visionwatch.alerts.evaluator import Evaluator
from visionwatch.alerts.notify import dashboard_path
from visionwatch.alerts.preview import preview_points
from visionwatch.http.deps import DatabaseDep, SettingsDep
from visionwatch.http.rules import AlertRuleIn
from visionwatch.store import alerts as store
from visionwatch.timeutil import parse_time
from visionwatch.web.auth import UserDep, read_form
from visionwatch.web.errors import PageError, form_errors
from visionwatch.web.rendering import metric_name, metric_unit, render

# Rule ids are 32-bit: a larger number is a 422, not a database error.
RuleId = Annotated[int, Path(ge=1, le=2**31 - 1)]

router = APIRouter(include_in_schema=False)
NUMBERS = (
    "threshold",
    "window_seconds",
    "baseline_seconds",
    "min_samples",
    "pending_seconds",
    "repeat_seconds",
    "max_per_hour",
    "max_per_day",
)
TEXTS = ("name", "metric", "condition", "model_id", "project", "class", "device_id")


def _found(database: DatabaseDep, user: Any, rule_id: int) -> store.StoredRule:
    found = store.get_rule(database, user.workspace.id, rule_id)
    if found is None:
        raise PageError(404, "No such alert rule", f"This workspace has no alert rule {rule_id}.")
    return found


@router.get("/alerts")
def alerts_page(request: Request, user: UserDep, database: DatabaseDep) -> Response:
    rules = store.list_rules(database, user.workspace.id)
    context = {"user": user, "rules": rules, "now": request.app.state.clock()}
    return render(request, "alerts.html", context)


@router.get("/alerts/new")
def new_rule_page(request: Request, user: UserDep) -> Response:
    return _form(request, user, None, {}, [])


@router.post("/alerts/new")
async def create_rule(request: Request, user: UserDep, database: DatabaseDep) -> Response:
    form = await read_form(request)
    body, errors = parse_rule_form(form)
    if body is None:
        return _form(request, user, None, form, errors, status_code=400)
    now = request.app.state.clock()
    if form.get("action") == "preview":
        # The metric over the last day as this unsaved rule would read it.
        draft = store.StoredRule(
            0, user.workspace.id, user.workspace.name, body.rule(), None, RuleState(), None, None
        )
        points = await run_in_threadpool(preview_points, database, draft, now)
        return _form(request, user, None, form, [], series=_series(draft, points))
    rule_id = await run_in_threadpool(
        store.create_rule, database, user.workspace.id, body.rule(), now
    )
    return RedirectResponse(f"/alerts/{rule_id}", status_code=303)


@router.get("/alerts/{rule_id}")
def rule_page(request: Request, rule_id: RuleId, user: UserDep, database: DatabaseDep) -> Response:
    found = _found(database, user, rule_id)
    events = store.history(database, user.workspace.id, rule_id)
    definition = found.rule.as_dict()
    points = preview_points(database, found, request.app.state.clock())
    series = _series(found, points)
    context = {
        "user": user,
        "stored": found,
        "definition": definition,
        "events": [
            {"event": e, "link": dashboard_path(found.rule, e.window_start, e.window_end)}
            for e in events
        ],
        "series": series,
        "form": _form_values(definition),
        "metrics": METRICS,
        "conditions": CONDITIONS,
        "errors": [],
        "notice": request.query_params.get("notice"),
        "now": request.app.state.clock(),
    }
    return render(request, "alert.html", context)


@router.post("/alerts/{rule_id}")
async def update_rule(
    request: Request, rule_id: RuleId, user: UserDep, database: DatabaseDep
) -> Response:
    form = await read_form(request)
    found = await run_in_threadpool(_found, database, user, rule_id)
    body, errors = parse_rule_form(form)
    if body is None:
        return _form(request, user, found, form, errors, status_code=400)
    now = request.app.state.clock()
    await run_in_threadpool(
        store.replace_rule, database, user.workspace.id, rule_id, body.rule(), now
    )
    return RedirectResponse(f"/alerts/{rule_id}?notice=saved", status_code=303)


@router.post("/alerts/{rule_id}/action")
async def rule_action(
    request: Request, rule_id: RuleId, user: UserDep, database: DatabaseDep, settings: SettingsDep
) -> Response:
    form = await read_form(request)
    found = await run_in_threadpool(_found, database, user, rule_id)
    action = form.get("action")
    notice = action or ""
    if action == "mute":
        try:
            until = parse_time(form.get("until", ""))
        except ValueError:
            raise PageError(400, "Bad mute time", "Mute for an hour or a day.") from None
        await run_in_threadpool(store.mute, database, user.workspace.id, rule_id, until)
    elif action == "unmute":
        await run_in_threadpool(store.mute, database, user.workspace.id, rule_id, None)
    elif action == "test":
        evaluator = Evaluator(database, settings, request.app.state.clock)
        results = await run_in_threadpool(evaluator.send_test, found, request.app.state.clock())
        failed = [r["target"] for r in results if not r["ok"]]
        notice = f"test sent to {len(results) - len(failed)} of {len(results)}"
        if failed:
            notice += f"; failed: {', '.join(failed)}"
    elif action == "delete":
        await run_in_threadpool(store.delete_rule, database, user.workspace.id, rule_id)
        return RedirectResponse("/alerts", status_code=303)
    else:
        raise PageError(400, "Unknown action", "Mute, unmute, test or delete.")
    return RedirectResponse(f"/alerts/{rule_id}?{urlencode({'notice': notice})}", status_code=303)


def _series(found: store.StoredRule, points: list[dict[str, Any]]) -> dict[str, Any]:
    """The preview chart's data, as the page's script reads it."""
    rule = found.rule
    return {
        "t": [int(p["t"].timestamp()) for p in points],
        "value": [p["value"] for p in points],
        # A line only where the threshold is on the metric's own scale.
        "threshold": rule.threshold if rule.condition in ("above", "below") else None,
        "metric": rule.metric,
        "label": metric_name(rule.metric),
        "unit": metric_unit(rule.metric),  # the axis and the legend are read in it
    }


def parse_rule_form(form: dict[str, str]) -> tuple[AlertRuleIn | None, list[str]]:
    """The form as a rule, or None and what is wrong with it."""
    data: dict[str, Any] = {}
    errors: list[str] = []
    for name in TEXTS:
        value = form.get(name, "").strip()
        if value:
            data[name] = value
    for name in NUMBERS:
        raw = form.get(name, "").strip()
        if raw:
            try:
                data[name] = float(raw) if name == "threshold" else int(raw)
            except ValueError:
                errors.append(f"{name}: {raw!r} is not a number")
    data["recipients"] = [a.strip() for a in form.get("recipients", "").split(",") if a.strip()]
    data["webhooks"] = [
        {"url": line.split()[0], "kind": "slack" if line.split()[1:] == ["slack"] else "json"}
        for line in form.get("webhooks", "").splitlines()
        if line.strip()
    ]
    if errors:
        return None, errors
    try:
        return AlertRuleIn.model_validate(data), []
    except ValidationError as error:
        return None, form_errors(error)


def _form_values(definition: dict[str, Any]) -> dict[str, str]:
    values = {k: "" if v is None else str(v) for k, v in definition.items() if k in TEXTS + NUMBERS}
    values["recipients"] = ", ".join(definition.get("recipients", []))
    values["webhooks"] = "\n".join(
        f"{w['url']} {w['kind']}" if w["kind"] != "json" else w["url"]
        for w in definition.get("webhooks", [])
    )
    return values


def _form(
    request: Request,
    user: Any,
    found: store.StoredRule | None,
    form: dict[str, str],
    errors: list[str],
    status_code: int = 200,
    series: dict[str, Any] | None = None,
) -> Response:
    context = {
        "series": series,
        "user": user,
        "stored": found,
        "form": form,
        "errors": errors,
        "metrics": METRICS,
        "conditions": CONDITIONS,
    }
    return render(request, "alert_form.html", context, status_code=status_code)
