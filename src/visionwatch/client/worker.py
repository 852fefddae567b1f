"""The background sender: batches, gzips, sends, retries with backoff, spools to disk.

Nothing here raises into the caller. Connection errors, 429 and 5xx are
retried with exponential backoff and jitter (honouring Retry-After); another
4xx is the caller's mistake: its message is logged once and the batch is
counted as failed. Without a spool only the batch in flight waits for the
server, while the bounded queue drops its oldest entries (counted); with a
spool every batch is written to disk before it is sent and removed once
acknowledged.
"""

import email.utils
import gzip
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from visionwatch.client import adapters, images
from visionwatch.client.capture import CannotEncode, CaptureRules, encode_image
from visionwatch.client.spool import Spool

log = logging.getLogger("visionwatch.client")

INFERENCES = "inferences"
METADATA = "metadata"
HEARTBEATS = "heartbeats"
ENDPOINTS = {
    INFERENCES: "/api/v1/inferences",
    METADATA: "/api/v1/metadata",
    HEARTBEATS: "/api/v1/heartbeats",
}
MAX_METADATA_ENTRIES = 1000
IMAGE_ATTEMPTS = 3
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


@dataclass(slots=True)
class Entry:
    """One `log()` call, converted to an item on the sender's thread."""

    model_id: str
    result: object
    inference_id: str
    timestamp: float
    inference_time: float | None
    metadata: dict[str, Any] | None
    image: object
    device_id: str | None


@dataclass(slots=True)
class Counters:
    sent: int = 0
    dropped: int = 0
    retried: int = 0
    failed: int = 0
    images_sent: int = 0
    images_over_cap: int = 0
    images_failed: int = 0


@dataclass(slots=True)
class Batch:
    endpoint: str
    body: dict[str, Any]
    count: int  # inferences, metadata updates or 1 for a heartbeat
    path: Any = None  # its spool file, when spooled
    # Images the capture rules keep, by inference id; uploaded once the batch is stored.
    # They are not spooled: a spooled batch is sent without them.
    images: dict[str, bytes] = field(default_factory=dict)

    @property
    def inferences(self) -> int:
        """What the counters count: inferences, not metadata updates or heartbeats."""
        return self.count if self.endpoint == INFERENCES else 0

    def encoded(self) -> bytes:
        return gzip.compress(orjson.dumps(self.body), compresslevel=5)


@dataclass
class Outcome:
    ok: bool = False
    retry_after: float | None = None  # None: do not retry
    split: bool = False
    # Items the server named as invalid (422): the rest of the batch is sent again.
    rejected: frozenset[int] = frozenset()


@dataclass
class State:
    queue: deque[Entry | tuple[str, Any]] = field(default_factory=deque)
    counters: Counters = field(default_factory=Counters)


# The sender's thread name: tests check that no client is left running.
THREAD_NAME = "visionwatch-sender"


class Sender(threading.Thread):
    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        batch_size: int,
        flush_interval: float,
        max_queue: int,
        spool: Spool | None,
        timeout: float,
        heartbeat_interval: float | None,
        device_id: str | None,
        capture_refresh: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(name=THREAD_NAME, daemon=True)
        self.capture = CaptureRules(refresh=capture_refresh)
        # A generator of its own for the backoff's jitter: the application's global `random`
        # state is its own (seeded runs stay reproducible while the SDK retries).
        self.jitter = random.Random()
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.spool = spool
        self.heartbeat_interval = heartbeat_interval
        self.device_id = device_id
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "User-Agent": "visionwatch-client",
            },
        )
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.state = State()
        self.in_flight: Batch | None = None
        self.preparing = False  # a batch taken from the queue is being built
        self.spooled = 0
        self.stopping = False
        self.flushes = 0
        self.retry_at = 0.0
        self.backoff = BACKOFF_FIRST
        self.warned: set[tuple[int, str]] = set()
        self.next_heartbeat = time.monotonic() if heartbeat_interval else float("inf")
        if spool is not None:
            self.spooled = sum(_spooled_count(path) for path in spool.pending())

    # -- the caller's side (any thread) --------------------------------------

    def put(self, entry: Entry | tuple[str, Any]) -> None:
        with self.lock:
            queue = self.state.queue
            if len(queue) >= self.max_queue:
                queue.popleft()
                self.state.counters.dropped += 1
            queue.append(entry)
            if len(queue) >= self.batch_size:
                self.wake.notify()

    def idle(self) -> bool:
        """Nothing left to deliver: the queue, the batch in flight and the spool are empty."""
        with self.lock:
            if self.state.queue or self.in_flight is not None or self.preparing:
                return False
        return self.spool is None or not self.spool.pending()

    def request_flush(self) -> None:
        with self.lock:
            self.flushes += 1
            self.wake.notify()

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.wake.notify()

    # -- the sender's thread ---------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                with self.lock:
                    self.wake.wait_for(self._should_wake(self.flushes), timeout=self._wait())
                    stopping = self.stopping
                self._heartbeat_if_due()
                self._work()
                if stopping:
                    if self.spool is not None:
                        self._spool_all()
                    return
        except Exception:  # a bug here must not take the caller's process down
            log.exception("visionwatch sender stopped unexpectedly")
        finally:
            self.http.close()

    def _should_wake(self, flushes: int) -> Callable[[], bool]:
        def ready() -> bool:
            full = len(self.state.queue) >= self.batch_size
            # While backing off, a full queue must not spin the loop: it waits for retry_at.
            return (
                self.stopping
                or self.flushes != flushes
                or (full and time.monotonic() >= self.retry_at)
            )

        return ready

    def _wait(self) -> float:
        now = time.monotonic()
        deadline = min(now + self.flush_interval, self.next_heartbeat)
        if self.retry_at > now:
            deadline = min(deadline, self.retry_at)
        return max(deadline - now, 0.0)

    def _heartbeat_if_due(self) -> None:
        if self.device_id and time.monotonic() >= self.next_heartbeat:
            assert self.heartbeat_interval is not None
            self.next_heartbeat = time.monotonic() + self.heartbeat_interval
            self.put((HEARTBEATS, None))

    def _work(self) -> None:
        """Send what can be sent now; stop at the first batch the server should get later."""
        while time.monotonic() >= self.retry_at:
            if self.spool is not None:
                self._spool_all()
                pending = self.spool.pending()
                if not pending:
                    return
                try:
                    batch = _from_spool(pending[0])
                except (OSError, ValueError) as error:
                    # Unreadable (not ours, or damaged): set it aside, keep delivering the rest.
                    self._warn_once(-1, f"cannot read spooled {pending[0].name}: {error}")
                    pending[0].rename(pending[0].with_name(pending[0].name + ".bad"))
                    continue
            else:
                if self.in_flight is None:
                    self.in_flight = self._next_batch()
                    with self.lock:
                        self.preparing = False
                    if self.in_flight is None:
                        return
                batch = self.in_flight
            if not self._deliver(batch):
                return

    def _deliver(self, batch: Batch) -> bool:
        outcome = self._send(batch)
        if outcome.retry_after is not None and not outcome.ok:
            with self.lock:
                self.state.counters.retried += 1
            jitter = self.jitter.uniform(0, self.backoff / 2)
            self.retry_at = time.monotonic() + max(outcome.retry_after, self.backoff + jitter)
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
            return False
        self.backoff = BACKOFF_FIRST
        if outcome.split:
            self._split(batch)
            return True
        if outcome.rejected:
            self._without(batch, outcome.rejected)
            return True
        if outcome.ok and batch.images:
            self._upload_images(batch.images)
        counted = batch.inferences
        with self.lock:
            if outcome.ok:
                self.state.counters.sent += counted
            else:
                self.state.counters.failed += counted
            if batch.path is not None:
                self.spooled -= counted
        if batch.path is not None and self.spool is not None:
            self.spool.remove(batch.path)
        else:
            self.in_flight = None
        return True

    def _send(self, batch: Batch) -> Outcome:
        try:
            response = self.http.post(ENDPOINTS[batch.endpoint], content=batch.encoded())
        except httpx.HTTPError as error:
            self._warn_once(0, f"cannot reach visionwatch ({type(error).__name__}); will retry")
            return Outcome(retry_after=0.0)
        status = response.status_code
        if status < 300:
            return Outcome(ok=True)
        if status == 429 or status >= 500:
            return Outcome(retry_after=_retry_after(response))
        if status == 413 and batch.count > 1 and batch.endpoint != HEARTBEATS:
            return Outcome(split=True)
        self._warn_once(status, response.text[:500])
        if status == 422 and batch.endpoint == INFERENCES:
            return Outcome(rejected=_rejected_items(response, batch.count))
        return Outcome()

    def _without(self, batch: Batch, rejected: frozenset[int]) -> None:
        """Count the refused items as failed and send the others again, in their place."""
        entries = batch.body["inferences"]
        kept = [entry for index, entry in enumerate(entries) if index not in rejected]
        rest = Batch(
            batch.endpoint, {"inferences": kept}, len(kept), images=_images_of(kept, batch.images)
        )
        with self.lock:
            self.state.counters.failed += len(rejected)
            if batch.path is not None:
                self.spooled -= len(rejected)
        if batch.path is not None and self.spool is not None:
            self.spool.put(rest.endpoint, rest.encoded())
            self.spool.remove(batch.path)
        else:
            self.in_flight = rest

    def _split(self, batch: Batch) -> None:
        key = "inferences" if batch.endpoint == INFERENCES else "data"
        entries = batch.body[key]
        halves = [entries[: len(entries) // 2], entries[len(entries) // 2 :]]
        parts = [
            Batch(batch.endpoint, {key: half}, len(half), images=_images_of(half, batch.images))
            for half in halves
        ]
        if batch.path is not None and self.spool is not None:
            for part in parts:
                self.spool.put(part.endpoint, part.encoded())
            self.spool.remove(batch.path)
        else:
            first, second = parts
            self.in_flight = first
            if self._deliver(first):
                self.in_flight = second

    def _next_batch(self) -> Batch | None:
        with self.lock:
            queue = self.state.queue
            if not queue:
                return None
            kind = _kind(queue[0])
            taken: list[Entry | tuple[str, Any]] = []
            limit = self.batch_size if kind == INFERENCES else MAX_METADATA_ENTRIES
            while queue and len(taken) < limit and _kind(queue[0]) == kind:
                taken.append(queue.popleft())
                if kind == HEARTBEATS:
                    break
            # Out of the queue, not yet in flight or spooled: still not idle. The caller
            # clears this once the batch is where idle() looks.
            self.preparing = True
        return self._batch(kind, taken)

    def _batch(self, kind: str, taken: list[Entry | tuple[str, Any]]) -> Batch | None:
        if kind == HEARTBEATS:
            body = {"device_id": self.device_id, "hostname": socket.gethostname()[:256]}
            return Batch(HEARTBEATS, body, 1)
        if kind == METADATA:
            data = [payload for _, payload in taken]  # type: ignore[misc]
            return Batch(METADATA, {"data": data}, len(data))
        items, kept = [], {}
        if any(isinstance(entry, Entry) and entry.image is not None for entry in taken):
            self.capture.refresh_if_due(self.http)
        for entry in taken:
            assert isinstance(entry, Entry)
            try:
                item = _item(entry)
            except Exception as error:  # an object that looked right but is not
                with self.lock:
                    self.state.counters.failed += 1
                self._warn_once(-1, f"cannot read a {type(entry.result).__name__}: {error}")
                continue
            items.append(item)
            if entry.image is not None and self.capture.keeps(item):
                try:
                    kept[entry.inference_id] = encode_image(entry.image)
                except (CannotEncode, OSError) as error:
                    self._count_image("images_failed")
                    self._warn_once(-1, f"cannot upload an image: {error}")
        if not items:
            return None
        return Batch(INFERENCES, {"inferences": items}, len(items), images=kept)

    def _upload_images(self, images: dict[str, bytes]) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Encoding": "identity"}
        for inference_id, data in images.items():
            path = f"{ENDPOINTS[INFERENCES]}/{quote(inference_id, safe='')}/image"
            status = 0
            for attempt in range(IMAGE_ATTEMPTS):
                try:
                    status = self.http.put(path, content=data, headers=headers).status_code
                except httpx.HTTPError:
                    status = 0
                if status and status < 500:
                    break
                time.sleep(BACKOFF_FIRST * (attempt + 1))
            if status == 200:
                self._count_image("images_sent")
            elif status == 429:
                self._count_image("images_over_cap")
            else:
                self._count_image("images_failed")
                self._warn_once(status, f"an image upload failed (HTTP {status or 'none'})")

    def _count_image(self, counter: str) -> None:
        with self.lock:
            setattr(self.state.counters, counter, getattr(self.state.counters, counter) + 1)

    def _spool_all(self) -> None:
        assert self.spool is not None
        while True:
            batch = self._next_batch()
            if batch is None:
                with self.lock:
                    self.preparing = False
                return
            if batch.endpoint == HEARTBEATS:
                self._send(batch)  # a late heartbeat would lie: send it now or never
            else:
                self.spool.put(batch.endpoint, batch.encoded())
            with self.lock:
                self.spooled += batch.inferences
                self.preparing = False

    def _warn_once(self, status: int, message: str) -> None:
        if (status, message) not in self.warned:
            self.warned.add((status, message))
            log.warning("visionwatch answered %s: %s", status or "nothing", message)


def _kind(entry: Entry | tuple[str, Any]) -> str:
    return INFERENCES if isinstance(entry, Entry) else entry[0]


def _item(entry: Entry) -> dict[str, Any]:
    item = adapters.to_item(entry.result)
    item["model_id"] = entry.model_id
    item["inference_id"] = entry.inference_id
    item["timestamp"] = entry.timestamp
    if entry.inference_time is not None:
        item["inference_time"] = entry.inference_time
    if entry.device_id is not None:
        item["device_id"] = entry.device_id
    if entry.metadata:
        item["metadata"] = entry.metadata
    if entry.image is not None:
        size = images.image_size(entry.image)
        if size is not None:
            item["image"] = {"width": size[0], "height": size[1]}
    return item


def _rejected_items(response: httpx.Response, count: int) -> frozenset[int]:
    """The items a 422 names, when it names only items and not all of them; else none:
    a batch refused as a whole (or wholly invalid) is not sent again."""
    try:
        errors = response.json()["errors"]
        indices = frozenset(int(error["index"]) for error in errors)
    except (ValueError, KeyError, TypeError):
        return frozenset()
    if not indices or len(indices) >= count or not all(0 <= i < count for i in indices):
        return frozenset()
    return indices


def _images_of(items: list[dict[str, Any]], images: dict[str, bytes]) -> dict[str, bytes]:
    ids = {item.get("inference_id") for item in items}
    return {key: data for key, data in images.items() if key in ids}


def _from_spool(path: Any) -> Batch:
    endpoint = Spool.endpoint(path)
    body = orjson.loads(gzip.decompress(path.read_bytes()))
    key = "inferences" if endpoint == INFERENCES else "data"
    return Batch(endpoint, body, len(body.get(key, [])) or 1, path)


def _spooled_count(path: Any) -> int:
    if Spool.endpoint(path) != INFERENCES:
        return 0
    try:
        return len(orjson.loads(gzip.decompress(path.read_bytes())).get("inferences", []))
    except (OSError, ValueError):
        return 0


def _retry_after(response: httpx.Response) -> float:
    """Seconds to wait, from Retry-After as seconds or as an HTTP date (RFC 9110 allows
    both), within [0, 300]; 0 when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        if when.tzinfo is None:  # an HTTP date is GMT; a date without a zone says so too
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), 300.0)
