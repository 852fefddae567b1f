"""Prometheus metrics of one app instance, in a registry of its own."""

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]


class Metrics:
    def __init__(self) -> None:
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
            "Inferences stored",
            registry=self.registry,
        )
        self.duplicates: Any = Counter(
            "visionwatch_inferences_duplicate",
            "Inferences received again and counted once",
            registry=self.registry,
        )

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def record_ingest(self, accepted: int, duplicates: int) -> None:
        self.ingested.inc(accepted)
        self.duplicates.inc(duplicates)

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data
