"""ASGI middleware: the request-body limit and HTTP metrics."""

import time
import zlib
from urllib.parse import parse_qsl

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionwatch.config import MIB
from visionwatch.http.responses import JSON
from visionwatch.metrics import Metrics

# Before a 413, the rest of the body is read and dropped, up to this much and this long (as
# nginx's lingering close does): a server that closes with unread data makes the kernel
# reset the connection, and a client still sending sees the reset, never the 413.
DRAIN_BYTES = 64 * MIB
DRAIN_SECONDS = 30.0


class BodyLimit:
    """Answer 413 to any body over `limit` bytes, declared or streamed, before a route sees it.

    The body is read here, up to the limit, and replayed to the app: a route
    then never fails halfway through reading, and nothing is half-stored.
    """

    def __init__(self, app: ASGIApp, limit: int, report_limit: int | None = None) -> None:
        self.app = app
        self.limit = limit
        # Inference Servers' reports (POST .../inference-stats) may be larger: a server
        # neither splits nor retries one, so a report refused is a minute lost.
        self.report_limit = limit if report_limit is None else report_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        limit = self.report_limit if scope["path"].endswith("/inference-stats") else self.limit
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._reject(scope, receive, send, limit, unread=True)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)  # the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                unread = message.get("more_body", False)
                await self._reject(scope, receive, send, limit, unread=unread)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        data = b"".join(chunks)
        chunks.clear()  # held until the route returns, else: a second copy of the body
        encoding = _header(scope, b"content-encoding").strip().lower()
        if encoding == b"gzip":
            # Clients compress batches; every route then reads plain JSON.
            try:
                data = gunzip(data, limit)
            except _TooLarge:
                await self._reject(scope, receive, send, limit)
                return
            except ValueError:
                detail = {"detail": "the request body is not valid gzip"}
                await JSON(detail, status_code=400)(scope, receive, send)
                return
            scope = dict(scope)
            scope["headers"] = [
                (name, value)
                for name, value in scope["headers"]
                if name not in (b"content-encoding", b"content-length")
            ] + [(b"content-length", str(len(data)).encode())]
        body = {"type": "http.request", "body": data, "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _reject(
        self, scope: Scope, receive: Receive, send: Send, limit: int, unread: bool = False
    ) -> None:
        # A client that asked to continue has sent nothing yet, and will not: nothing to read.
        if unread and _header(scope, b"expect").lower() != b"100-continue":
            await _drain(receive)
        body = {"detail": f"the request body exceeds {limit / MIB:g} MiB"}
        # The connection ends after the answer: what is left of the body is not read.
        await JSON(body, status_code=413, headers={"Connection": "close"})(scope, receive, send)


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a request's body, within DRAIN_BYTES and DRAIN_SECONDS."""
    drained = 0
    with anyio.move_on_after(DRAIN_SECONDS):
        while drained <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            drained += len(message.get("body", b""))


class _TooLarge(Exception):
    pass


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress at most `limit` bytes: a small bomb must not fill memory."""
    decompressor = zlib.decompressobj(wbits=31)
    try:
        result = decompressor.decompress(data, limit + 1)
    except zlib.error:
        raise ValueError("not gzip") from None
    if len(result) > limit or decompressor.unconsumed_tail:
        raise _TooLarge
    return result


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


def _replay(messages: list[Message], then: Receive) -> Receive:
    """Hand out `messages`, then whatever comes next (a disconnect) from the client."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return await then()

    return receive


class RefuseNul:
    """NUL characters in a path or query parameter: 404 or a 422 naming the parameter.

    PostgreSQL text cannot hold NUL; without this a lookup would fail with a
    database error instead of a clear answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if "\x00" in scope["path"]:
                await JSON({"detail": "not found"}, status_code=404)(scope, receive, send)
                return
            query = scope.get("query_string", b"").decode("latin-1")
            for name, value in parse_qsl(query, keep_blank_values=True):
                if "\x00" in name or "\x00" in value:
                    error = {"path": name.replace("\x00", ""), "message": "must not contain NUL"}
                    await JSON({"errors": [error]}, status_code=422)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class HttpMetrics:
    """Count requests and time them by route template (never by raw path: labels stay bounded)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        began = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.record_request(
                scope["method"], template, status, time.perf_counter() - began
            )
