"""`visionwatch demo`: serve, fill a fresh workspace with a believable past, then keep sending.

The server runs on a thread of this process (SQLite in the demo's data dir);
the main thread is a client like any other: it talks to the server over HTTP
through the SDK, and Ctrl-C (or SIGTERM) stops both cleanly.
"""

import dataclasses
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import click
import numpy as np
import uvicorn

from visionwatch.alerts.evaluator import Evaluator
from visionwatch.app import create_app
from visionwatch.client import Client
from visionwatch.config import Settings
from visionwatch.db import migrate
from visionwatch.db.engine import Database, create_database
from visionwatch.demo import events, faces, history, rules
from visionwatch.demo.fleet import (
    DEFECTS,
    DOCK_CAMERA,
    SILENT_DEVICE,
    SLOW_MODEL,
    VEHICLES,
    Fleet,
)
from visionwatch.demo.state import DemoError, DemoState, prepare
from visionwatch.jobs import PeriodicJob
from visionwatch.logs import logging_config
from visionwatch.timeutil import utcnow

HOST = "127.0.0.1"
LAPTOP = "demo-laptop"  # the device the real face detector runs on: this machine
FACE_SHARE = 5  # one live inference in five is a real face detection


def run(data_dir: Path, port: int, days: int, rate: float, live: bool) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    # The demo always runs on SQLite in its own data dir, whatever the environment names.
    settings = Settings(data_dir=data_dir, database_url=None, alert_interval_seconds=0)
    database = create_database(settings.database_url_or_default())
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop on SIGTERM as on Ctrl-C
    with ExitStack() as stack:
        stack.callback(database.dispose)
        listening = _listen(port)
        stack.callback(listening.close)
        migrate.upgrade(database)
        state, new = prepare(database, data_dir, utcnow(), days)
        url = f"http://{HOST}:{port}"
        stack.enter_context(_Server(create_app(settings, database), settings, listening))
        _welcome(url, data_dir, state, new)
        try:
            client = stack.enter_context(Client(url, state.api_key, exit_timeout=5))
            cameras = stack.enter_context(
                Client(url, state.api_key, device_id=LAPTOP, exit_timeout=5)
            )
            detector, photos = faces.FaceDetector(), faces.photos()
            if new:
                state = _fill(database, settings, url, state, client, cameras, detector, photos)
            _look_for(url, state)
            alerts = PeriodicJob(
                "alerts", database, Evaluator(database, settings, utcnow).run_once, 30, delay=0
            )
            alerts.start()
            stack.callback(alerts.stop)
            if live:
                click.echo(
                    f"Sending live traffic: {rate:g} inferences a second, one in {FACE_SHARE} "
                    f"a real face detection. Ctrl-C stops."
                )
                _live(
                    Fleet(state.incidents, seed=state.seed + 1),
                    client,
                    cameras,
                    detector,
                    photos,
                    rate,
                )
            else:
                click.echo("Serving without live traffic. Ctrl-C stops.")
                threading.Event().wait()
        except KeyboardInterrupt:
            click.echo("\nStopping...")
            if not state.ready:
                click.echo(
                    f"The history was not complete: remove {data_dir} to start afresh.", err=True
                )


def _listen(port: int) -> socket.socket:
    """The server's socket, bound here so that a busy port is a clear error, not a log line."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((HOST, port))
    except OSError as error:
        listening.close()
        raise DemoError(f"cannot listen on {HOST}:{port} ({error.strerror}): try --port") from None
    return listening


class _Server:
    """uvicorn on a thread of its own, for the length of a `with` block."""

    def __init__(self, app: Any, settings: Settings, listening: socket.socket) -> None:
        quiet = settings.model_copy(update={"log_level": "warning"})
        config = uvicorn.Config(app, log_config=logging_config(quiet), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [listening]}, name="visionwatch-server"
        )

    def __enter__(self) -> "_Server":
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise DemoError("the server did not start: see the lines above")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def _welcome(url: str, data_dir: Path, state: DemoState, new: bool) -> None:
    if not new:
        click.echo(f"Continuing the demo kept in {data_dir} (remove it to start afresh).")
    click.echo(
        f"\nDashboard  {url}/\n"
        f"Sign in    {state.email}  password {state.password}\n"
        f"API key    {state.api_key}  (ingest, read, admin)\n"
        f"Data       {data_dir} (SQLite)\n"
    )


def _fill(
    database: Database,
    settings: Settings,
    url: str,
    state: DemoState,
    client: Client,
    cameras: Client,
    detector: faces.FaceDetector,
    photos: list[faces.Photo],
) -> DemoState:
    """The demo's first run: rules, a face detection on every photograph, the dock's vision
    events, the past, its alerts."""
    rules.create(url, state.api_key)
    click.echo(f"Detecting faces in {len(photos)} photographs with OpenCV's Haar cascade...")
    results: list[dict[str, Any]] = []
    for photo in photos:  # each sent as soon as it is found: the SDK encodes while we detect
        results.append(detector.detect(photo))
        cameras.log(faces.MODEL_ID, results[-1], metadata=photo.metadata, image=photo.pixels)
    cameras.flush(timeout=60)
    _send_events(url, state, photos, results)
    days = round((state.end - state.start).total_seconds() / 86400)
    started = time.perf_counter()
    with _ProgressBar(f"Sending {days} days of history through the SDK") as progress:
        sent = history.backfill(
            client, Fleet(state.incidents, state.seed), state.start, state.end, state.seed, progress
        )
    elapsed = time.perf_counter() - started
    click.echo(f"Sent {sent:,} inferences in {elapsed:.0f} s ({sent / elapsed:,.0f} a second).")
    click.echo("Evaluating the alert rules over that history...")
    # From the first moment a two-hour window is full.
    history.replay_alerts(database, settings, state.start + timedelta(hours=2), utcnow())
    ready = dataclasses.replace(state, ready=True)
    ready.save(settings.data_dir)
    return ready


def _send_events(
    url: str, state: DemoState, photos: list[faces.Photo], results: list[dict[str, Any]]
) -> None:
    """A day of the face detector's safety alerts at the dock, and operators' verdicts."""
    click.echo(f"Sending a day of {events.USE_CASE!r} vision events and operators' verdicts...")
    started = time.perf_counter()
    planned = events.plan(results, state.seed, state.start, state.end)
    events.send(url, state.api_key, photos, planned)
    elapsed = time.perf_counter() - started
    click.echo(
        f"Sent {len(planned.alerts)} safety alerts and {len(planned.verdicts)} verdicts "
        f"in {elapsed:.1f} s."
    )


class _ProgressBar:
    """click's progress bar, opened once the total is known."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def __enter__(self) -> Callable[[int, int], None]:
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, show_pos=True, width=30)
            self.bar.__enter__()
        self.bar.update(max(min(done, total) - self.bar.pos, 0))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _look_for(url: str, state: DemoState) -> None:
    incidents = state.incidents

    def period(start: datetime, end: datetime) -> str:
        return urlencode({"start": f"{start:%Y-%m-%dT%H:%M}", "end": f"{end:%Y-%m-%dT%H:%M}"})

    fog = period(incidents.fog_start, incidents.fog_end)
    compared = urlencode({"a_model_id": DEFECTS.model_id, "b_model_id": SLOW_MODEL, "period": "7d"})
    click.echo(
        "\nWhat to look for (times in UTC):\n"
        f"  - {DOCK_CAMERA}'s confidence sinks and recovers between "
        f"{incidents.fog_start:%b %d %H:%M} and {incidents.fog_end:%b %d %H:%M}:\n"
        f"    {url}/inferences?model_id={quote(VEHICLES.model_id)}&device_id={DOCK_CAMERA}&{fog}\n"
        f"  - {SILENT_DEVICE} has been silent since {incidents.silent_since:%b %d %H:%M}: "
        f"the Devices tab of {url}/\n"
        f"  - {SLOW_MODEL}, deployed {incidents.slow_since:%b %d %H:%M}, answers twice as "
        f"slowly as {DEFECTS.model_id}:\n"
        f"    {url}/compare?{compared}\n"
        f"  - an alert rule caught each: {url}/alerts\n"
        f"  - operators judged the dock's safety alerts: realised precision beside the\n"
        f"    detector's confidence, and each alert's photograph with its faces boxed:\n"
        f"    {url}/events/{quote(events.USE_CASE)}\n"
    )


def _live(
    fleet: Fleet,
    client: Client,
    cameras: Client,
    detector: faces.FaceDetector,
    photos: list[faces.Photo],
    rate: float,
) -> None:
    """Send `rate` inferences a second until interrupted."""
    pictures = faces.endless(photos, np.random.default_rng())
    devices = fleet.live()
    interval = 1.0 / rate
    due = time.monotonic()
    for count in range(2**62):
        if count % FACE_SHARE == 0:
            photo = next(pictures)
            result = detector.detect(photo)
            cameras.log(faces.MODEL_ID, result, metadata=photo.metadata, image=photo.pixels)
        else:
            device = next(devices)
            now = utcnow()
            body, metadata = fleet.inference(device, now)
            client.log(fleet.model_id(device, now), body, metadata=metadata, device_id=device.name)
        due += interval
        time.sleep(max(due - time.monotonic(), 0.0))
