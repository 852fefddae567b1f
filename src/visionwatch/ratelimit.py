"""A token bucket per API key: `per_second` requests a second, `burst` at once; and a
bound on requests in flight, past which load is shed.

In the memory of one server process: behind N replicas a key may make N times
as many. It protects the server from one runaway client, not a quota system.
"""

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key_id: int) -> int:
        """0 if the key may go on; else the whole seconds until it may (for Retry-After)."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.per_second)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0
            self._buckets[key_id] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.per_second))


class InFlight:
    """At most `limit` holders at once; the next is refused (shed), not queued: a client
    told to come back later costs less than a queue that outgrows the database."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def try_enter(self) -> bool:
        with self._lock:
            if self.held >= self.limit:
                return False
            self.held += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.held -= 1
