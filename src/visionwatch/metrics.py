"""Prometheus metrics of one app instance, in a registry of its own.

Labels are bounded: HTTP metrics by route template (never a raw path, so no
inference id), workspace metrics by model and device, capped in number.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from visionwatch.db.engine import Database
from visionwatch.store import exporter
from visionwatch.timeutil import utcnow

__all__ = ["CONTENT_TYPE", "Metrics"]

# At most this many models and devices get series of their own.
MAX_SERIES = 1000


class Metrics:
    def __init__(self, database: Database, offline_after: timedelta) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests: Any = Counter(
            "visionwatch_http_requests",
            "HTTP requests by method, route template and status",
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
        self.registry.register(_StoredTotals(database, offline_after))

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def record_ingest(self, accepted: int, duplicates: int) -> None:
        self.ingested.inc(accepted)
        self.duplicates.inc(duplicates)

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


class _StoredTotals:
    """Totals from the database at scrape time: the same for every replica behind a balancer."""

    def __init__(self, database: Database, offline_after: timedelta) -> None:
        self.database = database
        self.offline_after = offline_after

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("visionwatch_database_up", "1 if the database answered the scrape")
        try:
            totals = exporter.model_totals(self.database, MAX_SERIES)
            seen = exporter.devices_seen(self.database, MAX_SERIES)
        except Exception:  # an unreachable database must not break the process metrics
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        labels = ["workspace", "model"]
        requests = CounterMetricFamily(
            "visionwatch_model_requests", "Inferences received, per model", labels=labels
        )
        errors = CounterMetricFamily(
            "visionwatch_model_errors", "Failed inferences, per model", labels=labels
        )
        predictions = CounterMetricFamily(
            "visionwatch_model_predictions", "Predictions made, per model", labels=labels
        )
        for row in totals:
            requests.add_metric([row.workspace, row.model], row.requests)
            errors.add_metric([row.workspace, row.model], row.errors)
            predictions.add_metric([row.workspace, row.model], row.predictions)
        yield from (requests, errors, predictions)
        device_labels = ["workspace", "device"]
        last_seen = GaugeMetricFamily(
            "visionwatch_device_last_seen_timestamp_seconds",
            "When the device was last heard from",
            labels=device_labels,
        )
        online = GaugeMetricFamily(
            "visionwatch_device_online", "1 if the device is online, else 0", labels=device_labels
        )
        now = utcnow()
        for device in seen:
            last_seen.add_metric([device.workspace, device.device], device.last_seen.timestamp())
            is_online = now - device.last_seen <= self.offline_after
            online.add_metric([device.workspace, device.device], 1.0 if is_online else 0.0)
        yield from (last_seen, online)
