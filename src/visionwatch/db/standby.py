"""A PostgreSQL hot standby that reads may go to, while it is close enough behind.

The dashboard's figures (stats, series, classes, the exported gauges) tolerate a moment's
lag; reads that must see what was just written (an inference's page, lists, keys,
sessions) stay on the primary. Whether the standby may serve is checked at most once a
second: it is up, and it has replayed all the primary had written, or its last replayed
transaction is at most `max_lag` seconds old. Past that, or when it does not answer,
reads go to the primary, and /readyz and /metrics say why.
"""

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, text

CHECK_EVERY = 1.0  # seconds between checks of the standby's lag


@dataclass(frozen=True, slots=True)
class StandbyState:
    serving: bool  # reads may go to it now
    lag_seconds: float | None  # how far behind the primary it is; None: unknown
    detail: str  # why it serves, or why not


class Standby:
    def __init__(
        self,
        engine: Engine,
        primary: Engine,
        max_lag: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.primary = primary
        self.max_lag = max_lag
        self.clock = clock
        self._lock = threading.Lock()
        self._checked_at = -math.inf
        self._state = StandbyState(False, None, "not checked yet")

    def state(self) -> StandbyState:
        """The last check's answer; one thread checks again when it is due, the others go
        on with the last answer meanwhile (a standby that hangs would hold them all up to
        its connect timeout)."""
        if self.clock() - self._checked_at >= CHECK_EVERY and self._lock.acquire(blocking=False):
            try:
                self._state = self._check()
                self._checked_at = self.clock()
            finally:
                self._lock.release()
        return self._state

    def failed(self, error: Exception) -> None:
        """A read on the standby failed: the primary serves until the next check."""
        self._state = StandbyState(False, None, f"unavailable: {type(error).__name__}")
        self._checked_at = self.clock()

    def _check(self) -> StandbyState:
        try:
            with self.primary.connect() as conn:
                written = conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()
            with self.engine.connect() as conn:
                row = conn.execute(
                    text(
                        "SELECT pg_is_in_recovery(),"
                        " pg_wal_lsn_diff(CAST(:written AS pg_lsn), pg_last_wal_replay_lsn()),"
                        " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
                    ),
                    {"written": written},
                ).one()
        except Exception as error:  # down, unreachable, refusing: the primary serves
            return StandbyState(False, None, f"unavailable: {type(error).__name__}")
        recovering, behind, since_replay = row
        if not recovering:
            return StandbyState(False, None, "not a standby (promoted?): reads stay on the primary")
        if behind is None:
            return StandbyState(False, None, "replays no WAL yet")
        if float(behind) <= 0:
            lag = 0.0  # all the primary has written is replayed
        elif since_replay is None:
            return StandbyState(False, None, "behind the primary, and has replayed nothing yet")
        else:
            lag = float(since_replay)  # behind: its last replayed transaction's age bounds it
        if lag > self.max_lag:
            return StandbyState(
                False, lag, f"{lag:.1f} s behind the primary, past {self.max_lag:g} s"
            )
        return StandbyState(True, lag, "serving reads")
