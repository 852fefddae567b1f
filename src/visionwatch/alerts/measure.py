"""Measure a rule's metric over its window (and baseline) from the rollups."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from visionwatch.alert_rules import DRIFT, Measurement, Rule, compared_value
from visionwatch.db.schema import devices, models
from visionwatch.drift import coarse_confidence, js_distance, psi
from visionwatch.histograms import percentile_bin, time_bin_value
from visionwatch.rollups import ALL_DEVICES, NO_CLASS, ClassDelta, Delta
from visionwatch.store.feedback import verdicts
from visionwatch.store.rollup_read import Scope, sum_classes, sum_rollups
from visionwatch.store.stats import Filters, resolve_scope
from visionwatch.timeutil import MINUTE, floor_to
from visionwatch.verdicts import Verdicts


def window(rule: Rule, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the rule's window: whole minutes, the rollups' grain, up to now."""
    end = floor_to(now, MINUTE)
    return end - timedelta(seconds=rule.window_seconds), end


def measure(conn: Connection, workspace_id: int, rule: Rule, now: datetime) -> Measurement:
    if rule.metric == "device_silence":
        return _silence(conn, workspace_id, rule, now)
    scopes = _scopes(conn, workspace_id, rule)
    start, end = window(rule, now)
    if scopes is None:
        return Measurement(None, 0)
    before = start - timedelta(seconds=rule.baseline_seconds)
    baseline = None
    if rule.metric in DRIFT:
        current, samples = _drift(conn, scopes, rule, start, end, before)
    else:
        current, samples = _value(conn, scopes, rule, start, end)
        if rule.uses_baseline:
            baseline, base_samples = _value(conn, scopes, rule, before, start)
            if base_samples < rule.min_samples and rule.metric != "request_count":
                baseline = None
    if rule.metric != "request_count" and samples < rule.min_samples:
        return Measurement(None, samples)
    return Measurement(current, samples, baseline, compared_value(rule, current, baseline))


def _scopes(conn: Connection, workspace_id: int, rule: Rule) -> list[Scope] | None:
    """The rollup scopes the rule reads (one per model version), or None if it names nothing."""
    scope = resolve_scope(conn, workspace_id, Filters(model=rule.model, device=rule.device))
    if scope is None or rule.project is None:
        return None if scope is None else [scope]
    ids = conn.execute(
        select(models.c.id).where(
            models.c.workspace_id == workspace_id, models.c.project == rule.project
        )
    ).scalars()
    return [Scope(workspace_id, model, scope.device_id) for model in ids] or None


def _totals(
    conn: Connection, scopes: list[Scope], start: datetime, end: datetime, bins: bool
) -> Delta:
    total = Delta()
    for scope in scopes:
        total.add(sum_rollups(conn, scope, start, end, with_bins=bins).get(None, Delta()))
    return total


def _classes(
    conn: Connection, scopes: list[Scope], start: datetime, end: datetime
) -> dict[str, ClassDelta]:
    merged: dict[str, ClassDelta] = {}
    for scope in scopes:
        for (_, name), totals in sum_classes(conn, scope, start, end, with_bins=False).items():
            if name != NO_CLASS:
                merged.setdefault(name, ClassDelta()).add(totals)
    return merged


def _value(
    conn: Connection, scopes: list[Scope], rule: Rule, start: datetime, end: datetime
) -> tuple[float | None, int]:
    """(the metric over [start, end), the samples it rests on)."""
    metric = rule.metric
    if metric == "precision":
        return _precision(conn, scopes, rule, start, end)
    if rule.class_name is not None and metric in ("avg_confidence", "class_share"):
        classes = _classes(conn, scopes, start, end)
        mine = classes.get(rule.class_name, ClassDelta())
        if metric == "avg_confidence":
            return (mine.confidence_sum / mine.predictions if mine.predictions else None), (
                mine.predictions
            )
        total = sum(c.predictions for c in classes.values())
        return (mine.predictions / total if total else None), total
    totals = _totals(conn, scopes, start, end, bins=metric == "p95_inference_time")
    if metric == "request_count":
        return float(totals.requests), totals.requests
    if metric == "avg_confidence":
        return totals.avg_confidence, totals.predictions
    if metric == "error_rate":
        return (totals.errors / totals.requests if totals.requests else None), totals.requests
    if metric == "avg_inference_time":
        return totals.avg_inference_time, totals.timed
    if metric == "p95_inference_time":
        index = percentile_bin(totals.time_bins, 95)
        return (None if index is None else time_bin_value(index)), totals.timed
    raise ValueError(f"{metric} needs a class")  # class_share without a class: refused on input


def _precision(
    conn: Connection, scopes: list[Scope], rule: Rule, start: datetime, end: datetime
) -> tuple[float | None, int]:
    """Realised precision over the window, resting on the verdicts that judged (correct or
    incorrect): min_samples is a number of verdicts here."""
    scope = scopes[0]
    counts = verdicts(
        conn,
        scope.workspace_id,
        start,
        end,
        model_ids=[s.model_id for s in scopes if s.model_id is not None] or None,
        device_id=None if scope.device_id == ALL_DEVICES else scope.device_id,
        class_name=rule.class_name,
    ).get(None, Verdicts())
    return counts.precision, counts.judged


def _drift(
    conn: Connection,
    scopes: list[Scope],
    rule: Rule,
    start: datetime,
    end: datetime,
    before: datetime,
) -> tuple[float | None, int]:
    """The drift of the window against the baseline, and the samples on the smaller side."""
    now: dict[Any, int]
    then: dict[Any, int]
    if rule.metric.startswith("class_"):
        now = {n: c.predictions for n, c in _classes(conn, scopes, start, end).items()}
        then = {n: c.predictions for n, c in _classes(conn, scopes, before, start).items()}
    else:
        now = coarse_confidence(_totals(conn, scopes, start, end, bins=True).confidence_bins)
        then = coarse_confidence(_totals(conn, scopes, before, start, bins=True).confidence_bins)
    samples = min(sum(now.values()), sum(then.values()))
    score = psi(now, then) if rule.metric.endswith("_psi") else js_distance(now, then)
    return score, samples


def _silence(conn: Connection, workspace_id: int, rule: Rule, now: datetime) -> Measurement:
    """Seconds since the device last sent an inference or a heartbeat."""
    last = conn.execute(
        select(devices.c.last_seen).where(
            devices.c.workspace_id == workspace_id, devices.c.name == rule.device
        )
    ).scalar_one_or_none()
    if last is None:
        return Measurement(None, 0)
    seconds = max((now - last).total_seconds(), 0.0)
    return Measurement(seconds, 1, None, seconds)
