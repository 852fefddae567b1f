"""The aggregator: a thread of the server that folds committed inferences into the rollups.

It looks for queued work every `poll` seconds (a one-row probe) and, when there is some,
aggregates everything queued (in transactions of at most MAX_RANGES batches). Between runs
it waits `spacing` seconds, so that under load one run covers the batches of that time and
each rollup key is written once for all of them. An inference is counted in the rollups
within about poll + spacing + one run of its 2xx (the freshness bound, measured by
`python -m benchmarks ingest`).

Across replicas on one PostgreSQL, a job lock lets one aggregate at a time; the queue rows
are locked too (SKIP LOCKED), so even two at once could not count a batch twice.
"""

import logging
import threading
import time

from sqlalchemy import text

from visionwatch.db import dialect as dialects
from visionwatch.db.engine import Database
from visionwatch.store.aggregate import MAX_RANGES, aggregate_pending
from visionwatch.store.floors import Kept

log = logging.getLogger("visionwatch.aggregator")

JOB = "aggregator"


class Aggregator:
    def __init__(
        self,
        database: Database,
        *,
        poll: float = 0.1,
        spacing: float = 0.25,
        max_ranges: int = MAX_RANGES,
        kept: Kept | None = None,
    ) -> None:
        self.database = database
        self.kept = kept or Kept()
        self.poll = poll
        self.spacing = spacing
        self.max_ranges = max_ranges
        self._running = threading.Lock()  # one run at a time in this process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (again after `stop`: an app's lifespan may run more than once)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="visionwatch-aggregator")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=30)

    def pending(self) -> bool:
        with self.database.read() as conn:
            return conn.execute(text("SELECT 1 FROM rollup_queue LIMIT 1")).first() is not None

    def run_once(self) -> int:
        """Aggregate one transaction's worth of queued batches; how many (0: none, or another
        replica holds the job)."""
        db = self.database
        with self._running, db.reader.connect() as lock:
            if not dialects.try_job_lock(db.dialect, lock, JOB):
                return 0
            try:
                done: int = db.run_write(aggregate_pending, db.dialect, self.max_ranges, self.kept)
                return done
            finally:
                dialects.release_job_lock(db.dialect, lock, JOB)
                lock.commit()

    def drain(self, timeout: float = 60.0) -> None:
        """Aggregate until nothing is queued (what reads right after writes wait for)."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if self.run_once() == 0:
                time.sleep(0.01)  # another replica has the job: wait for it
            if time.monotonic() > deadline:
                raise TimeoutError("rollups still pending")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.pending():
                    self._stop.wait(self.poll)
                    continue
                began = time.monotonic()
                done = self.run_once()
            except Exception:  # logged and tried again: the server keeps serving
                log.exception("aggregating rollups failed")
                self._stop.wait(1.0)
                continue
            if done < self.max_ranges:  # caught up: let the next batches gather
                self._stop.wait(max(0.0, self.spacing - (time.monotonic() - began)))


def settle(database: Database, timeout: float = 60.0) -> None:
    """Aggregate everything queued now: for work that must see every inference received so
    far in the rollups (alert evaluation, the demo's replay of its history)."""
    Aggregator(database).drain(timeout)
