"""The charts of a page: the columns uPlot draws (static/app.js) and the marks over them."""

from typing import Any
from urllib.parse import quote

from visionwatch.db.engine import Database
from visionwatch.store import chart_marks
from visionwatch.store import feedback as feedback_store
from visionwatch.store import stats as stats_store
from visionwatch.store.chart_marks import Scope as MarkScope
from visionwatch.store.stats import Filters, Period
from visionwatch.timeutil import RESOLUTION_STEPS
from visionwatch.web.params import chart_interval

# The charts' columns (series-data's names) and the metrics they are read from.
CHART_COLUMNS = {
    "requests": "requests",
    "errors": "errors",
    "confidence": "avg_confidence",
    "p50": "inference_time_p50",
    "p95": "inference_time_p95",
    "p99": "inference_time_p99",
    "error_rate": "error_rate",
}
CHART_METRICS = tuple(CHART_COLUMNS.values())


def chart_series(
    database: Database,
    workspace: int,
    filters: Filters,
    period: Period,
    marks: MarkScope,
    with_precision: bool = False,
) -> dict[str, Any]:
    """The charts' data, as uPlot wants it (columns of one time axis): requests, errors,
    average confidence, inference-time percentiles and error rate per interval; with the
    realised precision of the inferences operators judged in each; and what to mark on
    them (alert rules firing, new model versions)."""
    interval = chart_interval(period)
    found = stats_store.series(database, workspace, filters, period, CHART_METRICS, interval)
    moments = [moment for moment, _ in found["requests"]]
    series: dict[str, Any] = {
        "interval": interval,
        # The x axis spans the period: the last bucket's points stand at its start, and a
        # mark in it (an alert that fired ten minutes ago) still shows.
        "start": int(period.start.timestamp()),
        "end": int(period.end.timestamp()),
        "t": [int(moment.timestamp()) for moment in moments],
        **{name: [value for _, value in found[metric]] for name, metric in CHART_COLUMNS.items()},
    }
    if with_precision:
        judged = feedback_store.precision(
            database, workspace, filters, period, group="hour", step=RESOLUTION_STEPS[interval]
        )
        series["precision"] = [
            judged[moment].precision if moment in judged else None for moment in moments
        ]
    series["marks"] = chart_marks_of(database, workspace, marks, period)
    return series


def chart_marks_of(
    database: Database, workspace: int, scope: MarkScope, period: Period
) -> list[Any]:
    """Alert spans and deploys, in Unix seconds, each with the page it links to."""
    shown: list[dict[str, Any]] = [
        {
            "kind": "alert",
            "rule_id": span.rule_id,
            "name": span.name,
            "metric": span.metric,
            "start": int(span.start.timestamp()),
            "end": None if span.end is None else int(span.end.timestamp()),
            "url": f"/alerts/{span.rule_id}",
        }
        for span in chart_marks.alert_spans(database, workspace, scope, period)
    ]
    shown += [
        {
            "kind": "deploy",
            "model": deploy.model,
            "at": int(deploy.at.timestamp()),
            "url": f"/models/{quote(deploy.model)}",
        }
        for deploy in chart_marks.deploys(database, workspace, scope, period)
    ]
    return shown
