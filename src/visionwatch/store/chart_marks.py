"""What charts mark over time: the spans alert rules spent firing, and new model versions.

A rule's span runs from its move into "firing" to its first move out of it (None while it
still fires). A model's first inference is a deploy: it is marked on the charts of every
model of its project (and on the overview, for every model).
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, or_, select

from visionwatch.alert_rules import Rule
from visionwatch.db.engine import Database
from visionwatch.db.schema import alert_events, devices, models
from visionwatch.store.alerts import list_rules
from visionwatch.store.rollup_read import model_devices
from visionwatch.store.stats import Period

# Beyond this many, the oldest deploys of a period are left off a chart (a wall of lines
# helps nobody); the models table lists them all.
MAX_DEPLOYS = 50


@dataclass(frozen=True, slots=True)
class Scope:
    """What a chart shows: a model (and its project), a device, or None for all."""

    model: str | None = None
    project: str | None = None
    device: str | None = None


@dataclass(frozen=True, slots=True)
class AlertSpan:
    rule_id: int
    name: str
    metric: str
    start: datetime
    end: datetime | None  # None: still firing


@dataclass(frozen=True, slots=True)
class Deploy:
    model: str
    at: datetime


def concerns(rule: Rule, scope: Scope) -> bool:
    """Whether a rule may watch data a chart of `scope` shows: a rule of another model,
    project or device does not; a rule of the whole workspace concerns every chart. A rule
    that ties the chart's model to a device, or the chart's device to a model, concerns it
    only if they ran together in the period (`_ran_together`)."""
    if scope.model is not None:
        if rule.model is not None and rule.model != scope.model:
            return False
        if rule.project is not None and rule.project != scope.project:
            return False
    return scope.device is None or rule.device is None or rule.device == scope.device


def alert_spans(db: Database, workspace_id: int, scope: Scope, period: Period) -> list[AlertSpan]:
    """The firing spans of the rules concerning `scope` that overlap the period, by start."""
    rules = {
        stored.id: stored.rule
        for stored in list_rules(db, workspace_id)
        if concerns(stored.rule, scope)
    }
    if not rules:
        return []
    with db.read_lagging() as conn:
        rules = _ran_together(conn, workspace_id, scope, period, rules)
        if not rules:
            return []
        # Every move until the period's end (one at its very end closes a span in it): a
        # span may have begun long before the period.
        rows = conn.execute(
            select(
                alert_events.c.rule_id,
                alert_events.c.at,
                alert_events.c.from_state,
                alert_events.c.to_state,
            )
            .where(
                alert_events.c.workspace_id == workspace_id,
                alert_events.c.rule_id.in_(list(rules)),
                alert_events.c.at <= period.end,
            )
            .order_by(alert_events.c.rule_id, alert_events.c.at, alert_events.c.id)
        ).all()
    spans: list[AlertSpan] = []
    began: dict[int, datetime] = {}
    for row in rows:
        if row.to_state == "firing" and row.from_state != "firing":
            began[row.rule_id] = row.at
        elif row.from_state == "firing" and row.to_state != "firing" and row.rule_id in began:
            spans.append(_span(row.rule_id, rules[row.rule_id], began.pop(row.rule_id), row.at))
    spans += [_span(rule_id, rules[rule_id], start, None) for rule_id, start in began.items()]
    shown = [s for s in spans if s.start < period.end and (s.end is None or s.end > period.start)]
    return sorted(shown, key=lambda s: (s.start, s.rule_id))


def _ties(rule: Rule, scope: Scope) -> bool:
    """A rule on a device, on a model's chart; a rule on a model, on a device's chart."""
    if scope.model is not None:
        return rule.device is not None and scope.device is None
    if scope.device is not None:
        return rule.model is not None or rule.project is not None
    return False


def _ran_together(
    conn: Connection, workspace_id: int, scope: Scope, period: Period, rules: dict[int, Rule]
) -> dict[int, Rule]:
    """The rules, less those tying the chart to a model or device it did not run with in
    the period: a silent camera's rule stays off the charts of models it never ran, and a
    model's latency rule off the pages of devices that never ran it."""
    tied = {rule_id: rule for rule_id, rule in rules.items() if _ties(rule, scope)}
    if not tied:
        return rules
    model_names = {scope.model} | {rule.model for rule in tied.values() if rule.model}
    projects = {rule.project for rule in tied.values() if rule.project}
    device_names = {scope.device} | {rule.device for rule in tied.values() if rule.device}
    found = conn.execute(
        select(models.c.id, models.c.name, models.c.project).where(
            models.c.workspace_id == workspace_id,
            or_(models.c.name.in_(model_names - {None}), models.c.project.in_(projects)),
        )
    ).all()
    device_ids = dict(
        conn.execute(
            select(devices.c.name, devices.c.id).where(
                devices.c.workspace_id == workspace_id,
                devices.c.name.in_(device_names - {None}),
            )
        ).all()
    )
    pairs = _pairs(conn, workspace_id, period, [row.id for row in found], list(device_ids.values()))
    kept = {rule_id: rule for rule_id, rule in rules.items() if rule_id not in tied}
    for rule_id, rule in tied.items():
        model = scope.model or rule.model
        wanted = {
            row.id for row in found if (row.name == model if model else row.project == rule.project)
        }
        device = device_ids.get(scope.device or rule.device or "")
        if any((model_id, device) in pairs for model_id in wanted):
            kept[rule_id] = rule
    return kept


def _pairs(
    conn: Connection,
    workspace_id: int,
    period: Period,
    model_ids: list[int],
    device_ids: list[int],
) -> set[tuple[int, int]]:
    """(model, device) ids with requests together in the period, from the rollups."""
    if not model_ids or not device_ids:
        return set()
    return model_devices(conn, workspace_id, period.start, period.end, model_ids, device_ids)


def _span(rule_id: int, rule: Rule, start: datetime, end: datetime | None) -> AlertSpan:
    return AlertSpan(rule_id, rule.name, rule.metric, start, end)


def deploys(db: Database, workspace_id: int, scope: Scope, period: Period) -> list[Deploy]:
    """Models first seen in the period: of the scope's project (or the model itself when it
    has none), or every model when the scope names none. The latest MAX_DEPLOYS, by time.
    A device's charts mark none: a model's first sighting is the workspace's, not a
    device's."""
    if scope.device is not None and scope.model is None:
        return []
    query = select(models.c.name, models.c.first_seen).where(
        models.c.workspace_id == workspace_id,
        models.c.first_seen >= period.start,
        models.c.first_seen < period.end,
    )
    if scope.project is not None:
        query = query.where(models.c.project == scope.project)
    elif scope.model is not None:
        query = query.where(models.c.name == scope.model)
    query = query.order_by(models.c.first_seen.desc(), models.c.name).limit(MAX_DEPLOYS)
    with db.read_lagging() as conn:
        rows = conn.execute(query).all()
    return sorted((Deploy(row.name, row.first_seen) for row in rows), key=lambda d: d.at)
