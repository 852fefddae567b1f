"""The filtered selection as a picture: inferences and their mean confidence per interval
for exactly the filters of the inferences page.

Filters the rollups keep (model, device, class) are read from them, whatever the period;
any other (confidence bounds, image or not, metadata) from the rows of the period, with
the same conditions as the list (store/inferences.matching), so the chart's total is the
list's count.

The mean confidence is of the predictions the filters select: all of a matching
inference's predictions, or those of the filtered class and confidence bounds.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from visionwatch.db.engine import Database
from visionwatch.db.types import from_micros, to_micros
from visionwatch.store import legacy
from visionwatch.store.inferences import InferenceQuery, matching, scan_all
from visionwatch.store.rollup_read import class_series, sum_rollups
from visionwatch.store.stats import Filters, moments, resolve_scope
from visionwatch.timeutil import RESOLUTION_STEPS


@dataclass(frozen=True, slots=True)
class Selection:
    interval: str
    moments: list[datetime]
    inferences: list[int]
    confidence: list[float | None]
    source: Literal["rollups", "rows"]

    @property
    def total(self) -> int:
        return sum(self.inferences)


def from_rollups(query: InferenceQuery) -> bool:
    """Whether the rollups hold what the query filters on."""
    return (
        query.min_confidence is None
        and query.max_confidence is None
        and query.has_image is None
        and not query.metadata
    )


def selection(db: Database, workspace_id: int, query: InferenceQuery, interval: str) -> Selection:
    step = RESOLUTION_STEPS[interval]
    period = query.period
    shown = moments(period, step)
    counts: dict[datetime, tuple[int, int, float]]  # inferences, predictions, confidences
    if from_rollups(query):
        counts = _rollup_counts(db, workspace_id, query, step)
        source: Literal["rollups", "rows"] = "rollups"
    else:
        counts = _row_counts(db, workspace_id, query, step)
        source = "rows"
    empty = (0, 0, 0.0)
    return Selection(
        interval=interval,
        moments=shown,
        inferences=[counts.get(m, empty)[0] for m in shown],
        confidence=[
            counts[m][2] / counts[m][1] if m in counts and counts[m][1] else None for m in shown
        ],
        source=source,
    )


def _rollup_counts(
    db: Database, workspace_id: int, query: InferenceQuery, step: timedelta
) -> dict[datetime, tuple[int, int, float]]:
    period = query.period
    with db.read_lagging() as conn:
        scope = resolve_scope(conn, workspace_id, Filters(query.model, query.device))
        if scope is None:
            return {}
        if query.class_name is None:
            found = sum_rollups(
                conn,
                scope,
                period.start,
                period.end,
                group="interval",
                interval=step,
                with_bins=False,
            )
            return {m: (d.requests, d.predictions, d.confidence_sum) for m, d in found.items()}
        by_class = class_series(conn, scope, query.class_name, period.start, period.end, step)
    return {m: (d.inferences, d.predictions, d.confidence_sum) for m, d in by_class.items()}


def _row_counts(
    db: Database, workspace_id: int, query: InferenceQuery, step: timedelta
) -> dict[datetime, tuple[int, int, float]]:
    """Every matching row of the period, counted as the list selects them."""
    micros = int(step.total_seconds()) * 1_000_000
    low = query.min_confidence if query.min_confidence is not None else -1.0
    high = query.max_confidence if query.max_confidence is not None else 2.0
    counts: dict[int, list[Any]] = {}

    def count(bucket: int, confidences: list[float]) -> None:
        found = counts.setdefault(bucket, [0, 0, 0.0])
        found[0] += 1
        found[1] += len(confidences)
        found[2] += sum(confidences)

    with db.read() as conn:  # the list's rows, as the list reads them
        found = matching(conn, workspace_id, query)
        if found is None:
            return {}
        for row in scan_all(db, conn, workspace_id, found):
            chosen = [
                p.confidence
                for p in row.predictions
                if low <= p.confidence <= high
                and (query.class_name is None or p.class_name == query.class_name)
            ]
            count(to_micros(row.timestamp) // micros * micros, chosen)
        for bucket, prediction in legacy.counts(conn, workspace_id, query, micros):
            if prediction is None:
                counts.setdefault(bucket, [0, 0, 0.0])[0] += 1
            else:
                counts[bucket][1] += 1
                counts[bucket][2] += prediction.confidence
    return {from_micros(b): (n, k, total) for b, (n, k, total) in counts.items()}
