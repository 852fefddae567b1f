"""Roboflow's inference statistics, per model and predicted class, read from rollups."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select

from visionwatch.db.engine import Database
from visionwatch.db.schema import devices, models
from visionwatch.histograms import confidence_bin_value, percentile_bin
from visionwatch.rollups import ClassDelta, Delta
from visionwatch.store.rollup_read import (
    Scope,
    model_devices,
    sum_classes,
    sum_rollups,
)
from visionwatch.store.stats import Period


@dataclass(frozen=True, slots=True)
class _Model:
    id: int
    name: str


def inference_stats(
    db: Database, workspace_id: int, period: Period, model_names: Sequence[str] | None
) -> dict[str, Any]:
    """The body of GET /{workspace}/inference-stats; missing values are None."""
    before = period.previous()
    scope = Scope(workspace_id)
    with db.read() as conn:
        chosen = _models(conn, workspace_id, model_names)
        wanted = {m.id for m in chosen}
        now = _per_model(conn, scope, period, wanted)
        then = _per_model(conn, scope, before, wanted)
        classes_now = sum_classes(conn, scope, *period.bounds)
        classes_then = sum_classes(conn, scope, *before.bounds, with_bins=False)
        senders = _senders(conn, workspace_id, period)
    total_now, total_then = _merged(now.values()), _merged(then.values())
    rows = []
    for model in chosen:
        names = {n for (m, n) in (*classes_now, *classes_then) if m == model.id}
        model_now, model_then = now.get(model.id, Delta()), then.get(model.id, Delta())
        versions, deployments = senders.get(model.id, (set(), set()))
        for name in names:
            current = classes_now.get((model.id, name), ClassDelta())
            previous = classes_then.get((model.id, name), ClassDelta())
            median = percentile_bin(current.confidence_bins, 50)
            rows.append(
                {
                    "model_name": model.name,
                    "predicted_class": name,
                    **_pairs(_numbers(current), _numbers(previous)),
                    "median_confidence": None if median is None else confidence_bin_value(median),
                    "class_count": current.predictions,
                    "deployment_types": ",".join(sorted(deployments)) or None,
                    "inference_server_versions": ",".join(sorted(versions)) or None,
                    "model_num_inferences": model_now.requests,
                    "prev_model_num_inferences": model_then.requests,
                }
            )
    rows.sort(key=lambda r: (r["model_name"], -r["num_inferences"], r["predicted_class"]))
    return {**_pairs(_numbers(total_now), _numbers(total_then)), "inference_stats": rows}


@dataclass(frozen=True, slots=True)
class _Numbers:
    inferences: int
    errors: int
    confidence: float | None
    response_time: float | None


def _numbers(totals: Delta | ClassDelta) -> _Numbers:
    count = totals.requests if isinstance(totals, Delta) else totals.inferences
    return _Numbers(count, totals.errors, totals.avg_confidence, totals.avg_inference_time)


def _pairs(now: _Numbers, then: _Numbers) -> dict[str, Any]:
    """The four numbers Roboflow reports, each with its `prev_` twin."""
    return {
        "num_inferences": now.inferences,
        "prev_num_inferences": then.inferences,
        "num_errors": now.errors,
        "prev_num_errors": then.errors,
        "avg_confidence": now.confidence,
        "prev_avg_confidence": then.confidence,
        "avg_response_time": now.response_time,
        "prev_avg_response_time": then.response_time,
    }


def _models(conn: Connection, workspace_id: int, names: Sequence[str] | None) -> list[_Model]:
    query = select(models.c.id, models.c.name).where(models.c.workspace_id == workspace_id)
    if names is not None:
        query = query.where(models.c.name.in_(list(names)))
    return [_Model(r.id, r.name) for r in conn.execute(query.order_by(models.c.name))]


def _per_model(
    conn: Connection, scope: Scope, period: Period, wanted: set[int]
) -> dict[int, Delta]:
    totals = sum_rollups(conn, scope, *period.bounds, group="model", with_bins=False)
    return {key: value for key, value in totals.items() if key in wanted}


def _merged(parts: Iterable[Delta]) -> Delta:
    total = Delta()
    for part in parts:
        total.add(part)
    return total


def _senders(
    conn: Connection, workspace_id: int, period: Period
) -> dict[int, tuple[set[str], set[str]]]:
    """Per model: the versions and deployment types of the devices that sent it in the period."""
    pairs = model_devices(conn, workspace_id, *period.bounds)
    info = {
        row.id: row
        for row in conn.execute(
            select(devices.c.id, devices.c.version, devices.c.info).where(
                devices.c.id.in_(sorted({device for _, device in pairs}))
            )
        )
    }
    found: dict[int, tuple[set[str], set[str]]] = {}
    for model_id, device_id in pairs:
        row = info[device_id]
        versions, deployments = found.setdefault(model_id, (set(), set()))
        if row.version:
            versions.add(row.version)
        details = orjson.loads(row.info) if row.info else {}
        deployments.add(details.get("deployment_type", "api"))
    return found
