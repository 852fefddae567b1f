"""create_app(settings, database) -> the FastAPI application; nothing is built at import."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from visionwatch import __version__
from visionwatch.aggregator import Aggregator
from visionwatch.alerts.evaluator import Evaluator
from visionwatch.api import (
    alerts,
    capture,
    compare,
    devices,
    feedback,
    images,
    inferences,
    ingest,
    ops,
    reads,
    roboflow,
    vision_events,
)
from visionwatch.api.errors import install_handlers
from visionwatch.api.middleware import BodyLimit, HttpMetrics, RefuseNul
from visionwatch.config import Settings
from visionwatch.db import dialect as dialects
from visionwatch.db import partitions
from visionwatch.db.engine import Database, create_database
from visionwatch.http.responses import JSON
from visionwatch.images.blobs import FilesystemStore
from visionwatch.items import BatchIn
from visionwatch.jobs import PeriodicJob
from visionwatch.metrics import Metrics
from visionwatch.parsers import Parsers, default_processes
from visionwatch.ratelimit import InFlight, RateLimiter
from visionwatch.retention import prune
from visionwatch.store import legacy
from visionwatch.store.floors import Kept
from visionwatch.timeutil import utcnow
from visionwatch.web.app import install_dashboard

# Partitions are made two weeks ahead: hourly upkeep is ample, and cheap when all is made.
PARTITION_UPKEEP_SECONDS = 3600.0


def create_app(
    settings: Settings,
    database: Database | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """The app on `database` (made from the settings when not given; the app then owns it).

    `clock` is the app's one "now", of its requests and its background jobs (tests pass
    their own); see docs/architecture.md, "Clocks".
    """
    owned = database is None
    db = database or create_database(
        settings.database_url_or_default(),
        read_url=settings.database_read_url,
        max_lag=settings.read_max_lag_seconds,
    )

    blobs = FilesystemStore(settings.images_dir())
    jobs = []
    if settings.prune_interval_seconds:
        jobs.append(
            PeriodicJob(
                "retention",
                db,
                lambda: prune(db, blobs, settings, clock()),
                interval=settings.prune_interval_seconds,
            )
        )

    if dialects.has_time_partitions(db.dialect):
        # Weeks made ahead of the writes, and backfills moved out of the default partition.
        jobs.append(
            PeriodicJob(
                "partitions",
                db,
                lambda: partitions.keep_up(db, clock()),
                interval=PARTITION_UPKEEP_SECONDS,
                delay=5,
            )
        )

    # Rows of the first stored form, until none are left (store/legacy.py).
    jobs.append(PeriodicJob("rewrite", db, lambda: legacy.rewrite(db), interval=60, delay=1))

    if settings.alert_interval_seconds:
        evaluator = Evaluator(db, settings, clock)
        jobs.append(
            PeriodicJob(
                "alerts",
                db,
                evaluator.run_once,
                interval=settings.alert_interval_seconds,
                delay=settings.alert_interval_seconds,
            )
        )

    kept = Kept(
        timedelta(days=settings.minute_rollup_days),
        timedelta(hours=settings.device_minute_rollup_hours),
    )
    aggregator = Aggregator(db, spacing=settings.aggregate_spacing_seconds, kept=kept)
    processes = settings.parse_processes
    parsers = Parsers(default_processes() if processes is None else processes)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        aggregator.start()
        for job in jobs:
            job.start()
        yield
        for job in jobs:
            job.stop()
        aggregator.stop()
        parsers.close()
        if owned:
            db.dispose()
        else:  # the caller disposes of it, if its process lives on to do so
            db.truncate_wal()

    app = FastAPI(
        title="visionwatch",
        version=__version__,
        description="Self-hosted monitoring for computer-vision models in production.",
        default_response_class=JSON,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = db
    app.state.blobs = blobs
    app.state.aggregator = aggregator
    app.state.parsers = parsers
    app.state.clock = clock
    app.state.rate_limiter = (
        RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        if settings.rate_limit_per_second
        else None
    )
    app.state.metrics = Metrics(db, timedelta(seconds=settings.device_offline_after), clock)
    # Large reports are parsed and stored one at a time: each holds a hundred megabytes of
    # parsed JSON and rows while it is handled (api/roboflow.py).
    app.state.large_reports = asyncio.Semaphore(1)
    app.state.event_store_in_flight = InFlight(settings.event_store_max_in_flight)
    install_handlers(app)
    roboflow.install_handlers(app)
    routers = (
        # feedback and images before inferences: their paths end in /feedback and /image,
        # which the detail's path would swallow.
        *(ingest, reads, compare, capture, feedback, images, inferences, devices, alerts, ops),
        *(vision_events, roboflow),
    )
    for module in routers:
        app.include_router(module.router)
    app.include_router(vision_events.event_store)
    app.include_router(roboflow.root_router)  # before the dashboard's /, which it lets through
    install_dashboard(app, settings)
    app.add_middleware(
        BodyLimit, limit=settings.max_body_bytes, report_limit=settings.max_report_bytes
    )
    app.add_middleware(RefuseNul)
    app.add_middleware(HttpMetrics, metrics=app.state.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        # The ingest body is parsed by hand (for speed and per-item errors);
        # publish its schema so clients can still generate code from it.
        batch = BatchIn.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(batch.pop("$defs", {}))
        components["BatchIn"] = batch
        _document_unreadable_bodies(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def _document_unreadable_bodies(schema: dict[str, Any]) -> None:
    """A body that is not JSON at all is a 400 wherever a body is read (FastAPI's own answer)."""
    unreadable = {
        "description": "The body cannot be read as JSON",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for path_item in schema["paths"].values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation.setdefault("responses", {}).setdefault("400", unreadable)
