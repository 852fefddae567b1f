"""Background jobs inside the server: a thread per job, one replica at a time (a database lock)."""

import logging
import threading
from collections.abc import Callable

from visionwatch.db import dialect as dialects
from visionwatch.db.engine import Database

log = logging.getLogger("visionwatch.jobs")


class PeriodicJob:
    """Run `work` every `interval` seconds (the first run `delay` seconds after start)."""

    def __init__(
        self,
        name: str,
        database: Database,
        work: Callable[[], object],
        interval: float,
        delay: float = 60.0,
    ) -> None:
        self.name = name
        self.database = database
        self.work = work
        self.interval = interval
        self.delay = delay
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start its thread (again, after `stop`: an app's lifespan may run more than once)."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"visionwatch-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=30)

    def run_once(self) -> bool:
        """Run the job now unless another replica is running it; True if it ran."""
        with self.database.reader.connect() as conn:
            if not dialects.try_job_lock(self.database.dialect, conn, self.name):
                return False
            try:
                self.work()
            finally:
                dialects.release_job_lock(self.database.dialect, conn, self.name)
                conn.commit()
        return True

    def _loop(self) -> None:
        wait = self.delay
        while not self._stop.wait(wait):
            try:
                self.run_once()
            except Exception:  # logged, and tried again next time: the server keeps serving
                log.exception("background job %s failed", self.name)
            wait = self.interval
