"""A client made before a fork keeps sending, in the child and in the parent: gunicorn and
uvicorn workers with preload, multiprocessing pools, DataLoader workers, Celery prefork.

Checked against a real server: what it stores is exactly the ids each process logged, and
its duplicate counter does not move (a child that re-sent the parent's queue or spool, or
made the same ids as a sibling, would move it or lose inferences).
"""

import multiprocessing
import os
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.postgres import free_port
from tests.support.server import serving
from tests.support.workspaces import every_inference, new_workspace
from visionwatch.client import Client, worker

# Python 3.12 warns when a process with threads forks; a client's sender is such a thread,
# and forking with it running is the case under test.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

CHILD_TIMEOUT = 30.0  # a generous bound; each test takes a few seconds


def detection(i: int) -> dict[str, Any]:
    return {"predictions": [{"class": "car", "confidence": 0.5 + (i % 5) / 10}]}


def log_some(client: Client, count: int, who: str) -> list[str]:
    """Ids of `count` inferences logged; the client makes them (no inference_id given)."""
    return [client.log("m/1", detection(i), metadata={"who": who}) for i in range(count)]


def duplicates(base: str) -> float:
    """The server's own count of inferences it received again (every workspace)."""
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("visionwatch_inferences_duplicate_total "):
            return float(line.split()[1])
    raise AssertionError("/metrics has no duplicate counter")


def stored_ids(base: str, key: str) -> list[str]:
    return [item["inference_id"] for item in every_inference(base, key)]


class Child:
    """A process made by os.fork(), with the read end of a pipe it writes its ids to."""

    def __init__(self, pid: int, results: int) -> None:
        self.pid = pid
        self.results = results
        self.status: int | None = None

    def ids(self, timeout: float = CHILD_TIMEOUT) -> list[str]:
        """The ids the child logged, once it ended well."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
            elif time.monotonic() > deadline:
                pytest.fail(f"the child did not end within {timeout} s")
            else:
                time.sleep(0.02)
        assert os.waitstatus_to_exitcode(self.status) == 0, "the child's work failed"
        # The child has ended, so its end of the pipe is closed: read to the end.
        data = b""
        while chunk := os.read(self.results, 65536):
            data += chunk
        ids: list[str] = orjson.loads(data)
        return ids

    def end(self) -> None:
        """Kill the child if it is still running (a failed test), and reap it."""
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            _, self.status = os.waitpid(self.pid, 0)
        os.close(self.results)


@contextmanager
def forked(work: Callable[[], list[str]]) -> Iterator[Child]:
    """Run `work` in a child made by os.fork(). The child ends with os._exit: it never
    returns into pytest, whatever happens; and it never outlives the test."""
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child's coverage is not collected)
        code = 1
        try:
            os.close(reading)
            os.write(writing, orjson.dumps(work()))
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(writing)
    child = Child(pid, reading)
    try:
        yield child
    finally:
        child.end()


def log_and_flush(client: Client, count: int) -> Callable[[], list[str]]:
    def work() -> list[str]:
        ids = log_some(client, count, "child")
        if not client.flush(timeout=CHILD_TIMEOUT / 2):
            raise RuntimeError(f"flush() failed in the child: {client.stats}")
        return ids

    return work


@pytest.mark.slow
def test_a_forked_child_sends_what_it_logs_and_the_parent_goes_on(
    server: tuple[str, dict[str, str]],
) -> None:
    base, env = server
    key = new_workspace(env)
    before = duplicates(base)
    # A long flush interval: what the parent logs before the fork is still in its queue
    # when it forks, and stays the parent's to send.
    client = Client(base, key, flush_interval=30, heartbeat_interval=None)
    try:
        parent = log_some(client, 7, "parent")
        with forked(log_and_flush(client, 20)) as child_process:
            child = child_process.ids()
        parent += log_some(client, 5, "parent")
        assert client.flush(timeout=10)
    finally:
        client.close(timeout=1)
    sent = parent + child
    assert (len(child), len(set(sent))) == (20, len(sent))
    assert sorted(stored_ids(base, key)) == sorted(sent)
    assert duplicates(base) == before


@pytest.mark.slow
def test_a_forked_child_spools_apart_from_its_parent(
    server: tuple[str, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent's spooled batches are on disk at the fork, the server down: the child
    neither sends nor removes them, and its own batches wait in a directory of its own."""
    _, env = server
    key = new_workspace(env)
    monkeypatch.setattr(worker, "BACKOFF_MAX", 0.2)  # retry often: the server comes up late
    port = free_port()
    spool = tmp_path / "spool"
    client = Client(
        f"http://127.0.0.1:{port}",
        key,
        spool_dir=spool,
        batch_size=5,
        flush_interval=0.05,
        timeout=1,
        heartbeat_interval=None,
    )
    try:
        parent = log_some(client, 15, "parent")
        deadline = time.monotonic() + 10
        while client.stats.spooled < 15 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.stats.spooled == 15
        parents_files = sorted(spool.glob("*.json.gz"))
        with forked(log_and_flush(client, 20)) as child_process:
            # While the server is away, the child's batches wait in a directory of its own.
            own = spool / f"fork-{child_process.pid}"
            deadline = time.monotonic() + 10
            while len(list(own.glob("*.json.gz"))) < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(list(own.glob("*.json.gz"))) == 4
            assert sorted(spool.glob("*.json.gz")) == parents_files
            with serving(env, port=port) as base:
                child = child_process.ids()
                assert client.flush(timeout=10)
                sent = parent + child
                assert (len(child), len(set(sent))) == (20, len(sent))
                assert sorted(stored_ids(base, key)) == sorted(sent)
                assert duplicates(base) == 0  # a server of its own: it counted every send
    finally:
        client.close(timeout=1)
    assert sorted(str(p.relative_to(spool)) for p in spool.rglob("*")) == []


@pytest.mark.slow
def test_a_lock_held_at_the_fork_does_not_block_the_child(
    server: tuple[str, dict[str, str]],
) -> None:
    """Another thread of the parent holds the client's lock as the process forks (it was
    logging, say). That thread does not exist in the child, which must not wait for it."""
    base, env = server
    key = new_workspace(env)
    client = Client(base, key, heartbeat_interval=None)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with client._sender.lock:
            held.set()
            release.wait(timeout=CHILD_TIMEOUT)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(timeout=10)
        with forked(log_and_flush(client, 20)) as child_process:
            release.set()
            child = child_process.ids()
    finally:
        release.set()
        holder.join(timeout=10)
        client.close(timeout=1)
    assert sorted(stored_ids(base, key)) == sorted(child)


def log_and_spool(client: Client, count: int) -> Callable[[], list[str]]:
    """A child that ends (os._exit) with what it logged spooled, not yet delivered."""

    def work() -> list[str]:
        ids = log_some(client, count, "child")
        deadline = time.monotonic() + CHILD_TIMEOUT / 2
        while client.stats.spooled < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not spooled in time: {client.stats}")
            time.sleep(0.02)
        return ids

    return work


@pytest.mark.slow
def test_what_an_ended_child_left_in_its_spool_is_sent_by_the_next_client(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    _, env = server
    key = new_workspace(env)
    port = free_port()
    url, spool = f"http://127.0.0.1:{port}", tmp_path / "spool"
    options: dict[str, Any] = {"spool_dir": spool, "batch_size": 5, "heartbeat_interval": None}
    client = Client(url, key, flush_interval=0.05, timeout=1, **options)
    try:
        with forked(log_and_spool(client, 20)) as child_process:
            child = child_process.ids()  # reaped: the child is gone
            assert len(list((spool / f"fork-{child_process.pid}").glob("*.json.gz"))) == 4
    finally:
        client.close(timeout=0)
    with serving(env, port=port) as base, Client(url, key, **options) as again:
        assert again.stats.spooled == 20
        assert again.flush(timeout=10)
        assert sorted(stored_ids(base, key)) == sorted(child)
    assert list(spool.iterdir()) == []


# The pool's workers reach the client made in the test through this module, as a
# preloaded application's workers reach its globals.
_SHARED: dict[str, Client] = {}


def _log_in_worker(task: int) -> tuple[list[str], bool]:
    client = _SHARED["client"]
    ids = log_some(client, 10, f"task-{task}")
    return ids, client.flush(timeout=CHILD_TIMEOUT / 2)


@pytest.mark.slow
def test_a_fork_pool_s_workers_send_what_they_log(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    before = duplicates(base)
    client = Client(base, key, flush_interval=30, heartbeat_interval=None)
    _SHARED["client"] = client
    try:
        parent = log_some(client, 5, "parent")
        with multiprocessing.get_context("fork").Pool(3) as pool:
            done = pool.map_async(_log_in_worker, range(6)).get(timeout=CHILD_TIMEOUT)
        assert [flushed for _, flushed in done] == [True] * 6
        assert client.flush(timeout=10)
    finally:
        del _SHARED["client"]
        client.close(timeout=1)
    sent = parent + [i for ids, _ in done for i in ids]
    assert len(set(sent)) == len(sent) == 5 + 6 * 10
    assert sorted(stored_ids(base, key)) == sorted(sent)
    assert duplicates(base) == before


def test_the_clients_kept_for_forks_are_kept_weakly() -> None:
    """Restarting clients after a fork must not keep a dropped client alive."""
    client = Client("http://127.0.0.1:9", "vw_k", heartbeat_interval=None)
    sender = client._sender
    gone = weakref.ref(client)
    del client
    try:
        assert gone() is None
    finally:
        sender.stop()
        sender.join(timeout=5)
