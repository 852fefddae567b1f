"""The visionwatch client: `log()` after each prediction costs a few microseconds."""

import atexit
import functools
import itertools
import logging
import os
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, overload

import httpx

from visionwatch.client import adapters, images
from visionwatch.client.spool import Spool
from visionwatch.client.worker import METADATA, Entry, Sender

F = TypeVar("F", bound=Callable[..., Any])
_SCALARS = (str, int, float, bool)
log = logging.getLogger("visionwatch.client")


@dataclass(frozen=True, slots=True)
class ClientStats:
    queued: int  # waiting in memory
    spooled: int  # written to the spool, not yet acknowledged
    sent: int  # acknowledged by the server
    dropped: int  # pushed out of the full queue, oldest first
    retried: int  # sends that failed and will be tried again
    failed: int  # refused by the server (a 4xx other than 429) or unreadable
    images_sent: int = 0  # kept by the capture rules and stored by the server
    images_over_cap: int = 0  # kept by the rules, refused by the model's daily cap
    images_failed: int = 0  # could not be encoded, or refused or lost on the way


class Client:
    """Send inferences to visionwatch from any thread, in the background.

    `log()` checks its arguments (a wrong one raises TypeError or ValueError at
    once) and enqueues; a background thread batches, compresses, sends and
    retries. Network and server trouble never raises into the caller.

    A client made before os.fork() goes on in both processes (preloaded gunicorn or
    uvicorn workers, multiprocessing pools, DataLoader workers): the child gets a
    sender of its own, starting empty. What was logged before the fork is the parent's
    to send, and the child's stats count only its own. With a spool, the child's sits
    in a directory of its own inside the parent's. A child that ends with os._exit (as
    multiprocessing's do) runs no exit handlers: call flush() or close() before.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        device_id: str | None = None,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_queue: int = 100_000,
        spool_dir: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        heartbeat_interval: float | None = 60.0,
        exit_timeout: float = 5.0,
        capture_refresh: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// address")
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        if device_id is not None and not isinstance(device_id, str):
            raise TypeError("device_id must be a string")
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be between 1 and 1000 (the server's limit)")
        if max_queue < batch_size:
            raise ValueError("max_queue must hold at least one batch")
        self.device_id = device_id
        self.exit_timeout = exit_timeout
        self._id_prefix = uuid.uuid4().hex[:20] + "-"
        self._ids = itertools.count()
        self._closed = False
        # All a sender needs but its spool: a forked child starts one of its own.
        self._new_sender = functools.partial(
            Sender,
            url=url,
            api_key=api_key,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            timeout=timeout,
            heartbeat_interval=heartbeat_interval if device_id else None,
            device_id=device_id,
            capture_refresh=capture_refresh,
            transport=transport,
        )
        self._sender = self._new_sender(spool=Spool(spool_dir) if spool_dir is not None else None)
        self._sender.start()
        # A bounded flush when the interpreter exits, without keeping the client alive.
        atexit.register(_close_at_exit, weakref.ref(self))
        _open_clients.add(self)

    # -- logging ------------------------------------------------------------------

    def log(
        self,
        model_id: str,
        result: object,
        *,
        inference_time: float | None = None,
        metadata: Mapping[str, str | int | float | bool] | None = None,
        image: object = None,
        timestamp: datetime | float | None = None,
        inference_id: str | None = None,
        device_id: str | None = None,
    ) -> str:
        """Queue one inference and return its id (the response's own, when it has one)."""
        if not isinstance(model_id, str) or not model_id:
            raise TypeError("model_id must be a non-empty string")
        adapters.check_result(result)
        if inference_time is not None and (
            isinstance(inference_time, bool) or not isinstance(inference_time, int | float)
        ):
            raise TypeError("inference_time must be a number of seconds")
        if metadata is not None:
            _check_metadata(metadata)
        images.check_image(image)
        if inference_id is None:
            # The response's own id, so that a re-sent response is counted once.
            if isinstance(result, Mapping):
                found = result.get("inference_id")
            else:
                found = getattr(result, "inference_id", None)
            inference_id = found if isinstance(found, str) and found else None
        if inference_id is None:
            # A random prefix per client and a counter: unique, and a tenth of uuid4's cost.
            inference_id = f"{self._id_prefix}{next(self._ids):x}"
        elif not isinstance(inference_id, str):
            raise TypeError("inference_id must be a string")
        self._sender.put(
            Entry(
                model_id=model_id,
                result=result,
                inference_id=inference_id,
                timestamp=_seconds(timestamp),
                inference_time=inference_time,
                metadata=dict(metadata) if metadata else None,
                image=image,
                device_id=device_id or self.device_id,
            )
        )
        return inference_id

    def add_metadata(
        self, inference_ids: str | Sequence[str], field: str, value: str | int | float | bool
    ) -> None:
        """Attach `field=value` to inferences, logged already or not yet."""
        ids = [inference_ids] if isinstance(inference_ids, str) else list(inference_ids)
        if not ids or not all(isinstance(i, str) and i for i in ids):
            raise TypeError("inference_ids must be a non-empty id or list of ids")
        _check_metadata({field: value})
        for start in range(0, len(ids), 10_000):
            chunk = ids[start : start + 10_000]
            self._sender.put(
                (METADATA, {"inference_ids": chunk, "field_name": field, "field_value": value})
            )

    def heartbeat(self) -> None:
        """Tell visionwatch this device is alive now (it also happens every heartbeat_interval)."""
        if not self.device_id:
            raise ValueError("heartbeat() needs the client's device_id")
        self._sender.put(("heartbeats", None))

    @overload
    def wrap(self, fn: F, model_id: str) -> F: ...
    @overload
    def wrap(self, fn: str) -> Callable[[F], F]: ...
    @overload
    def wrap(self, fn: None = None, *, model_id: str) -> Callable[[F], F]: ...
    def wrap(self, fn: F | str | None = None, model_id: str | None = None) -> Any:
        """Time `fn` and log what it returns: `client.wrap(predict, "m/1")`, or as a
        decorator, `@client.wrap("m/1")` or `@client.wrap(model_id="m/1")`."""
        if isinstance(fn, str):
            fn, model_id = None, fn
        if not isinstance(model_id, str) or not model_id:
            raise TypeError("wrap() needs the model_id to log under")
        name: str = model_id

        def decorate(function: F) -> F:
            @functools.wraps(function)
            def timed(*args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                result = function(*args, **kwargs)
                self.log(name, result, inference_time=time.perf_counter() - began)
                return result

            return timed  # type: ignore[return-value]

        return decorate if fn is None else decorate(fn)

    def pipeline_sink(self, model_id: str) -> Callable[[Any, Any], None]:
        """An `on_prediction` for Roboflow's InferencePipeline: each frame is logged with its
        source as the `stream` metadata, its frame id and its own timestamp."""

        def on_prediction(predictions: Any, video_frame: Any) -> None:
            if isinstance(video_frame, list):  # several sources: lists side by side
                for prediction, frame in zip(predictions, video_frame, strict=False):
                    if prediction is not None and frame is not None:
                        self._log_frame(model_id, prediction, frame)
            elif predictions is not None:
                self._log_frame(model_id, predictions, video_frame)

        return on_prediction

    def _log_frame(self, model_id: str, prediction: Any, frame: Any) -> None:
        metadata: dict[str, str | int | float | bool] = {}
        source = getattr(frame, "source_id", None)
        if source is not None:
            metadata["stream"] = str(source)
        frame_id = getattr(frame, "frame_id", None)
        if isinstance(frame_id, int):
            metadata["frame_id"] = frame_id
        moment = getattr(frame, "frame_timestamp", None)
        self.log(
            model_id,
            prediction,
            metadata=metadata,
            image=getattr(frame, "image", None),
            timestamp=moment if isinstance(moment, datetime) else None,
        )

    # -- lifecycle -----------------------------------------------------------------

    @property
    def stats(self) -> ClientStats:
        sender = self._sender
        with sender.lock:
            counters = sender.state.counters
            return ClientStats(
                queued=len(sender.state.queue),
                spooled=sender.spooled,
                sent=counters.sent,
                dropped=counters.dropped,
                retried=counters.retried,
                failed=counters.failed,
                images_sent=counters.images_sent,
                images_over_cap=counters.images_over_cap,
                images_failed=counters.images_failed,
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is acknowledged; False if `timeout` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._sender.request_flush()
        while not self._sender.idle():
            if not self._sender.is_alive():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float | None = 5.0) -> bool:
        """Flush (bounded by `timeout`), then stop the sender; a spool keeps what is left."""
        if self._closed:
            return True
        self._closed = True
        _open_clients.discard(self)
        delivered = self.flush(timeout)
        self._sender.stop()
        self._sender.join(timeout=max(timeout or 0, 1.0))
        return delivered

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(self.exit_timeout)

    def _start_over_after_fork(self) -> None:
        """In a forked child: fork copied the sender's state but not its thread. Whatever
        it held (queue, batch in flight, spool) the parent still sends, so the child starts
        empty; its locks are new (the parent's may have been held at the fork), and so are
        its id prefix (else parent and children would make the same ids) and spool.
        A `transport` given to the client is shared as it is: one holding the parent's
        open connections would send on them too."""
        if self._closed:  # closing as the process forked: nothing to start over
            return
        self._id_prefix = uuid.uuid4().hex[:20] + "-"
        self._ids = itertools.count()
        spool = self._sender.spool
        self._sender = self._new_sender(spool=spool.forked() if spool is not None else None)
        self._sender.start()


# The open clients, to start over in a forked child; weak, so that this keeps none alive.
_open_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _start_over_in_child() -> None:
    for client in list(_open_clients):
        try:
            client._start_over_after_fork()
        except Exception:  # one client's trouble must neither stop the others nor the fork
            log.exception("visionwatch client could not start over after fork")


if hasattr(os, "register_at_fork"):  # POSIX: there is no fork elsewhere
    os.register_at_fork(after_in_child=_start_over_in_child)


def _close_at_exit(ref: "weakref.ref[Client]") -> None:
    client = ref()
    if client is not None:
        client.close(client.exit_timeout)


def _check_metadata(metadata: Mapping[Any, Any]) -> None:
    if not isinstance(metadata, Mapping):
        raise TypeError("metadata must be a mapping of field name to value")
    for name, value in metadata.items():
        if not isinstance(name, str) or not name:
            raise TypeError("metadata field names must be non-empty strings")
        if not isinstance(value, _SCALARS):
            raise TypeError(f"metadata {name!r}: values are strings, numbers or booleans")


def _seconds(timestamp: datetime | float | None) -> float:
    if timestamp is None:
        return time.time()
    if isinstance(timestamp, datetime):
        return timestamp.timestamp()
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise TypeError("timestamp must be a datetime or Unix seconds")
    return float(timestamp)
