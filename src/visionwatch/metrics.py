"""Prometheus metrics of one app instance, in a registry of its own.

Counters are this process's own (HTTP requests, inferences ingested): they only grow,
and restart from zero with the process, which Prometheus reads as the reset it is.
Figures read from the database are gauges over a stated window: retention deletes old
rollups and only the busiest models are exported, so a database sum can go down, and
Prometheus would take a counter going down for a reset and invent traffic in rate().

Labels are bounded: HTTP metrics by standard method and route template (never a raw
path, so no inference id), workspace metrics by model and device, capped in number.
"""

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from visionwatch.db.engine import Database
from visionwatch.store import exporter
from visionwatch.timeutil import utcnow

__all__ = ["CONTENT_TYPE", "Metrics"]

# At most this many models and devices get series of their own.
MAX_SERIES = 1000
# The window of the per-model gauges; their names say it (_last_24h).
WINDOW = timedelta(hours=24)
# Clients choose the method token: each other one would otherwise be a series of its own.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(
        self, database: Database, offline_after: timedelta, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests: Any = Counter(
            "visionwatch_http_requests",
            "HTTP requests by method (other: a non-standard one), route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency: Any = Histogram(
            "visionwatch_http_request_duration_seconds",
            "Time to answer HTTP requests, by route template",
            ["route"],
            registry=self.registry,
        )
        self.ingested: Any = Counter(
            "visionwatch_inferences_ingested",
            "Inferences stored by this process",
            registry=self.registry,
        )
        self.duplicates: Any = Counter(
            "visionwatch_inferences_duplicate",
            "Inferences received again by this process and counted once",
            registry=self.registry,
        )
        self.registry.register(_StoredFigures(database, offline_after, clock))

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def record_ingest(self, accepted: int, duplicates: int) -> None:
        self.ingested.inc(accepted)
        self.duplicates.inc(duplicates)

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


class _StoredFigures:
    """Gauges from the database at scrape time: the same for every replica behind a balancer."""

    def __init__(
        self, database: Database, offline_after: timedelta, clock: Callable[[], datetime]
    ) -> None:
        self.database = database
        self.offline_after = offline_after
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        yield from _standby_gauges(self.database)
        up = GaugeMetricFamily("visionwatch_database_up", "1 if the database answered the scrape")
        now = self.clock()
        try:
            totals = exporter.window_totals(self.database, now, WINDOW, MAX_SERIES)
            seen = exporter.devices_seen(self.database, MAX_SERIES)
        except Exception:  # an unreachable database must not break the process metrics
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from _model_gauges(totals)
        yield from self._device_gauges(seen, now)

    def _device_gauges(self, seen: list[exporter.DeviceSeen], now: datetime) -> list[Metric]:
        labels = ["workspace", "device"]
        last_seen = GaugeMetricFamily(
            "visionwatch_device_last_seen_timestamp_seconds",
            f"When the device was last heard from (the {MAX_SERIES} most recently heard)",
            labels=labels,
        )
        online = GaugeMetricFamily(
            "visionwatch_device_online", "1 if the device is online, else 0", labels=labels
        )
        for device in seen:
            last_seen.add_metric([device.workspace, device.device], device.last_seen.timestamp())
            is_online = now - device.last_seen <= self.offline_after
            online.add_metric([device.workspace, device.device], 1.0 if is_online else 0.0)
        return [last_seen, online]


def _model_gauges(totals: list[exporter.WindowTotals]) -> list[Metric]:
    # Said in every HELP: a series that disappears is a quiet model, not a lost count.
    scope = (
        "per model, timestamped in the 24 hours up to the end of the current minute; only"
        f" the {MAX_SERIES} busiest models in that window have a series (a quiet one drops out)"
    )
    labels = ["workspace", "model"]
    inferences = GaugeMetricFamily(
        "visionwatch_model_inferences_last_24h", f"Inferences received, {scope}", labels=labels
    )
    errors = GaugeMetricFamily(
        "visionwatch_model_errors_last_24h", f"Inferences that failed, {scope}", labels=labels
    )
    predictions = GaugeMetricFamily(
        "visionwatch_model_predictions_last_24h", f"Predictions made, {scope}", labels=labels
    )
    for row in totals:
        inferences.add_metric([row.workspace, row.model], row.inferences)
        errors.add_metric([row.workspace, row.model], row.errors)
        predictions.add_metric([row.workspace, row.model], row.predictions)
    return [inferences, errors, predictions]


def _standby_gauges(database: Database) -> Iterator[Metric]:
    """The hot standby's replay lag, and whether it serves the dashboard's reads now."""
    if database.standby is None:
        return
    state = database.standby.state()
    serving = GaugeMetricFamily(
        "visionwatch_standby_serving_reads",
        "1 if the hot standby serves the dashboard's reads now (0: the primary does)",
    )
    serving.add_metric([], 1.0 if state.serving else 0.0)
    yield serving
    if state.lag_seconds is not None:
        lag = GaugeMetricFamily(
            "visionwatch_standby_replay_lag_seconds",
            "How far the hot standby is behind the primary, in seconds",
        )
        lag.add_metric([], state.lag_seconds)
        yield lag
