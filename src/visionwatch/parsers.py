"""Parser processes: large request bodies turned into rows beside the server, on other cores.

A server process runs Python on one core at a time (the GIL). The writer's SQL gives the core
up while the database works; decoding a batch, validating it and building its rows (about
60 microseconds an item) hold it. So a large body goes to a pool of processes that do all
of that and send back the rows (JSON text and small lists, cheap to pickle); the server
process only writes them (docs/architecture.md, "The write path").

Bodies under `min_bytes`, and every body when the pool has no process, are parsed in a
thread of the server as before: a round trip to another process costs more than a small
batch's parse.
"""

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool

from visionwatch.compat import roboflow
from visionwatch.items import InvalidBatch, ItemError, ItemLimits, parse_batch
from visionwatch.store.devices import Heartbeat
from visionwatch.store.ingest import Rows

T = TypeVar("T")

log = logging.getLogger("visionwatch.parsers")

# About a hundred items of the native API.
MIN_BYTES = 64 * 1024


def default_processes() -> int:
    """One fewer than the cores this process may use (the server keeps one), at most four."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min((cores or 1) - 1, 4))


class NotJson(ValueError):
    """The body could not be decoded as JSON (answered 400)."""


class Parsers:
    """Runs a parse function over a body, in a process of the pool or in a thread."""

    def __init__(self, processes: int, min_bytes: int = MIN_BYTES) -> None:
        self.processes = processes
        self.min_bytes = min_bytes
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, body: bytes, parse: Callable[..., T], *args: Any) -> T:
        if self.processes and len(body) >= self.min_bytes:
            pool = self._started()
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, parse, body, *args)
            except BrokenProcessPool:
                # A parser died (killed, out of memory): this body is parsed here, and the
                # next large one starts a new pool.
                log.warning("a parser process died; starting new ones")
                if self._pool is pool:
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
        return await run_in_threadpool(parse, body, *args)

    def _started(self) -> ProcessPoolExecutor:
        # Started at the first large body (most servers in tests never see one). "spawn", not
        # fork: the server has threads (the aggregator's, the jobs') whose locks a fork copies.
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_watch_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _watch_parent(server: int) -> None:
    """In a parser process: end when the server is gone. A server killed (SIGKILL, out of
    memory) cannot stop its pool, and a worker waiting for work never notices: it holds
    both ends of its queue's pipe, so the pipe never closes."""

    def watch() -> None:
        while os.getppid() == server:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="visionwatch-parser-watch", daemon=True).start()


def _decoded(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise NotJson(str(error)) from None


def native_rows(
    body: bytes, now: datetime, max_items: int, max_clock_skew: timedelta, limits: ItemLimits
) -> Rows:
    """A native batch (`POST /api/v1/inferences`) as rows, or InvalidBatch / NotJson."""
    batch = parse_batch(
        _decoded(body),
        now=now,
        max_items=max_items,
        max_clock_skew=max_clock_skew,
        limits=limits,
    )
    return Rows.of(batch, now)


@dataclass(frozen=True, slots=True)
class ParsedReport:
    """An Inference Server's report: its key (checked by the server before anything else is
    answered), and its rows and sender or what is wrong with it."""

    api_key: str | None
    rows: Rows | None
    sender: Heartbeat | None
    errors: list[ItemError]


def report_rows(
    body: bytes, now: datetime, max_clock_skew: timedelta, limits: ItemLimits
) -> ParsedReport:
    decoded = _decoded(body)
    api_key = roboflow.api_key_of(decoded)
    try:
        report = roboflow.parse_report(
            decoded, now=now, max_clock_skew=max_clock_skew, limits=limits
        )
    except InvalidBatch as invalid:
        return ParsedReport(api_key, None, None, invalid.errors)
    del decoded
    beat = None
    if report.sender is not None:
        sender = report.sender
        beat = Heartbeat(sender.device, sender.version, sender.hostname, sender.tags, sender.info)
    return ParsedReport(api_key, Rows.of(report.inferences, now), beat, [])
