"""The SDK against a real visionwatch server on loopback, and its retry rules on a scripted one."""

import email.utils
import gzip
import logging
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.postgres import free_port
from tests.support.server import serving
from tests.support.workspaces import auth, new_workspace, server_total
from visionwatch.client import Client
from visionwatch.client.worker import _retry_after


def detection(i: int) -> dict[str, Any]:
    return {
        "predictions": [
            {
                "class": "car",
                "confidence": 0.5 + (i % 5) / 10,
                "x": 10,
                "y": 10,
                "width": 4,
                "height": 4,
            }
        ],
        "time": 0.01,
    }


@pytest.mark.slow
def test_everything_logged_arrives_exactly_once(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    with Client(base, key, device_id="cam-1", batch_size=50, flush_interval=0.05) as client:
        ids: list[str] = []
        lock = threading.Lock()

        def produce(offset: int) -> None:
            for i in range(250):
                made = client.log("vehicles/3", detection(i), metadata={"worker": offset})
                with lock:
                    ids.append(made)

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        client.add_metadata(ids[:10], "reviewed", True)
        client.heartbeat()
        assert client.flush(timeout=30)
        stats = client.stats
    assert (stats.sent, stats.dropped, stats.failed, stats.queued) == (1000, 0, 0, 0)
    assert len(set(ids)) == 1000
    assert server_total(base, key) == 1000
    detail = httpx.get(f"{base}/api/v1/inferences/{ids[3]}", headers=auth(key)).json()
    assert detail["metadata"]["reviewed"] is True
    assert detail["device_id"] == "cam-1"
    devices = httpx.get(f"{base}/api/v1/devices", headers=auth(key)).json()["devices"]
    assert [(d["device_id"], d["status"]) for d in devices] == [("cam-1", "online")]


@pytest.mark.slow
def test_server_down_then_up_without_a_spool_drops_a_counted_few(
    server: tuple[str, dict[str, str]],
) -> None:
    _, env = server
    key = new_workspace(env)
    port = free_port()
    client = Client(
        f"http://127.0.0.1:{port}",
        key,
        batch_size=10,
        max_queue=100,
        flush_interval=0.05,
        timeout=1,
    )
    for i in range(300):
        client.log("m/1", detection(i))
    time.sleep(0.3)  # the sender tries, fails, and backs off
    assert client.stats.retried >= 1
    assert client.stats.dropped >= 150
    with serving(env, port=port) as base:
        assert client.flush(timeout=60)
        stats = client.stats
        client.close()
        assert stats.sent + stats.dropped == 300
        assert stats.failed == 0
        assert server_total(base, key) == stats.sent


@pytest.mark.slow
def test_server_down_then_up_with_a_spool_loses_nothing(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    _, env = server
    key = new_workspace(env)
    port = free_port()
    client = Client(
        f"http://127.0.0.1:{port}",
        key,
        batch_size=25,
        max_queue=1000,
        flush_interval=0.05,
        timeout=1,
        spool_dir=tmp_path / "spool",
    )
    for i in range(300):
        client.log("m/1", detection(i))
    deadline = time.monotonic() + 20
    while client.stats.spooled < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.stats.spooled == 300
    assert len(list((tmp_path / "spool").glob("*.json.gz"))) == 12
    with serving(env, port=port) as base:
        assert client.flush(timeout=60)
        stats = client.stats
        client.close()
        assert (stats.sent, stats.dropped, stats.spooled) == (300, 0, 0)
        assert server_total(base, key) == 300
    assert list((tmp_path / "spool").glob("*.json.gz")) == []


SDK_PROCESS = textwrap.dedent("""
    import sys, time
    from visionwatch.client import Client
    url, key, spool, mode = sys.argv[1:5]
    client = Client(url, key, spool_dir=spool, batch_size=40, flush_interval=0.05, timeout=1)
    if mode == "log":
        for i in range(200):
            client.log("m/1", {"predictions": [{"class": "a", "confidence": 0.5}]},
                       inference_id=f"killed-{i}")
        while client.stats.spooled < 200 or client.stats.queued:
            time.sleep(0.02)
        print("spooled", flush=True)
        time.sleep(600)
    else:
        print("delivered" if client.flush(timeout=60) else "stuck", client.stats, flush=True)
""")


@pytest.mark.slow
def test_spool_survives_sigkill(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    _, env = server
    key = new_workspace(env)
    port = free_port()
    url, spool = f"http://127.0.0.1:{port}", str(tmp_path / "spool")
    logger = subprocess.Popen(
        [sys.executable, "-c", SDK_PROCESS, url, key, spool, "log"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert logger.stdout is not None
        assert logger.stdout.readline().strip() == "spooled"
    finally:
        logger.send_signal(signal.SIGKILL)
        logger.wait()
        if logger.stdout:
            logger.stdout.close()
    with serving(env, port=port) as base:
        again = subprocess.run(
            [sys.executable, "-c", SDK_PROCESS, url, key, spool, "deliver"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert again.stdout.startswith("delivered"), again.stdout + again.stderr
        assert "sent=200" in again.stdout
        assert server_total(base, key) == 200
        for i in (0, 199):
            response = httpx.get(f"{base}/api/v1/inferences/killed-{i}", headers=auth(key))
            assert response.status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("spooled", [False, True])
def test_items_the_server_refuses_do_not_sink_their_batch(
    server: tuple[str, dict[str, str]], tmp_path: Path, spooled: bool
) -> None:
    """One inference over a server limit is counted as failed; the rest of its batch is stored."""
    base, env = server
    key = new_workspace(env)
    options: dict[str, Any] = {"spool_dir": tmp_path / "spool"} if spooled else {}
    with Client(base, key, batch_size=10, flush_interval=0.05, **options) as client:
        for i in range(10):
            metadata: dict[str, Any] = {"n": i}
            if i == 3:
                metadata["note"] = "x" * 2000  # over the 1000 characters a value may have
            if i == 7:
                metadata.update({f"f{n}": n for n in range(100)})  # 101 fields, one too many
            client.log("vehicles/3", detection(i), metadata=metadata)
        assert client.flush(timeout=30)
        stats = client.stats
    assert (stats.sent, stats.failed, stats.queued, stats.spooled) == (8, 2, 0, 0)
    assert server_total(base, key) == 8


@pytest.mark.slow
def test_importing_the_sdk_imports_no_server_dependency() -> None:
    code = (
        "import sys, visionwatch.client; "
        "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'jinja2', 'starlette', 'alembic', "
        "'psycopg', 'pydantic', 'prometheus_client') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def scripted(script: "Script", **options: Any) -> Client:
    """A client whose HTTP peer is `script` (an in-process transport): retry rules, no network."""
    settings: dict[str, Any] = {"flush_interval": 0.01, "heartbeat_interval": None, **options}
    return Client("http://peer.invalid", "vw_k", transport=httpx.MockTransport(script), **settings)


class Script:
    """A scripted HTTP peer, by httpx's transport: the statuses to answer, in order."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        body = {"detail": "bad key"} if status == 401 else {"accepted": 1, "duplicates": 0}
        return httpx.Response(status, headers=headers, json=body)


def test_retry_rules(caplog: pytest.LogCaptureFixture) -> None:
    script = Script((503, {}), (429, {"Retry-After": "0.2"}), (200, {}))
    client = scripted(script)
    began = time.monotonic()
    client.log("m/1", detection(1))
    assert client.flush(timeout=30)
    assert time.monotonic() - began >= 0.2  # Retry-After honoured
    assert (client.stats.sent, client.stats.retried) == (1, 2)
    assert script.requests[0].headers["content-encoding"] == "gzip"
    client.close()

    refused = Script(*[(401, {})] * 5)
    caplog.set_level(logging.WARNING, logger="visionwatch.client")
    client = scripted(refused, batch_size=1)
    for i in range(3):
        client.log("m/1", detection(i))
    assert client.flush(timeout=10)
    assert (client.stats.failed, client.stats.retried, client.stats.sent) == (3, 0, 0)
    assert len(refused.requests) == 3  # never retried
    assert sum("bad key" in r.getMessage() for r in caplog.records) == 1  # said once
    client.close()


def test_retrying_leaves_the_global_random_state_alone() -> None:
    """An application that seeds `random` for reproducible runs is not disturbed by the SDK's
    backoff (its jitter draws from a generator of its own)."""
    before = random.getstate()
    client = scripted(Script((503, {}), (503, {}), (200, {})))
    client.log("m/1", detection(1))
    assert client.flush(timeout=30)
    assert client.stats.retried == 2
    client.close()
    assert random.getstate() == before


def test_a_batch_too_large_is_split() -> None:
    script = Script((413, {}))
    client = scripted(script, batch_size=10)
    for i in range(10):
        client.log("m/1", detection(i))
    assert client.flush(timeout=10)
    assert client.stats.sent == 10
    sizes = [len(orjson.loads(gzip.decompress(r.content))["inferences"]) for r in script.requests]
    assert sizes == [10, 5, 5]
    client.close()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.log("", {}), TypeError),
        (lambda c: c.log(3, {}), TypeError),
        (lambda c: c.log("m", 42), TypeError),
        (lambda c: c.log("m", [1, 2]), TypeError),
        (lambda c: c.log("m", {}, metadata={"a": [1]}), TypeError),
        (lambda c: c.log("m", {}, inference_time="fast"), TypeError),
        (lambda c: c.log("m", {}, timestamp="now"), TypeError),
        (lambda c: c.log("m", {}, image=3.5), TypeError),
        (lambda c: c.add_metadata([], "f", "v"), TypeError),
        (lambda c: c.heartbeat(), ValueError),
    ],
)
def test_wrong_arguments_raise_at_once(call: Any, error: type[Exception]) -> None:
    client = Client("http://127.0.0.1:9", "vw_k", heartbeat_interval=None)
    with pytest.raises(error):
        call(client)
    assert client.stats.queued == 0
    client.close(timeout=0)


@pytest.mark.slow
def test_automatic_heartbeats(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    with Client(base, key, device_id="quiet-cam", heartbeat_interval=0.2, flush_interval=0.05):
        deadline = time.monotonic() + 10
        devices: list[dict[str, Any]] = []
        while not devices and time.monotonic() < deadline:
            devices = httpx.get(f"{base}/api/v1/devices", headers=auth(key)).json()["devices"]
            time.sleep(0.05)
    # Nothing was logged: the device is known from its heartbeat alone.
    assert [(d["device_id"], d["status"]) for d in devices] == [("quiet-cam", "online")]
    assert server_total(base, key) == 0


EXITING = textwrap.dedent("""
    import sys
    from visionwatch.client import Client
    client = Client(sys.argv[1], sys.argv[2], flush_interval=30, heartbeat_interval=None)
    for i in range(50):
        client.log("m/1", {"predictions": []}, inference_id=f"exit-{i}")
    # No close(): the interpreter's exit flushes, bounded by exit_timeout.
""")


@pytest.mark.slow
def test_a_bounded_flush_at_interpreter_exit(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    done = subprocess.run(
        [sys.executable, "-c", EXITING, base, key],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert server_total(base, key) == 50


def test_retry_after_as_an_http_date_is_honoured() -> None:
    # RFC 9110: Retry-After is seconds or an HTTP date. One second of the date's resolution
    # is lost, so ask for three and expect at least two.
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    script = Script((503, {"Retry-After": later}), (200, {}))
    client = scripted(script)
    began = time.monotonic()
    client.log("m/1", detection(1))
    assert client.flush(timeout=30)
    assert time.monotonic() - began >= 2.0
    assert (client.stats.sent, client.stats.retried) == (1, 1)
    client.close()


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # past
        ("Fri, 31 Dec 2100 23:59:59 GMT", 300.0),  # at most five minutes
        ("soon", 0.0),
        ("7", 7.0),
    ],
)
def test_retry_after_forms(header: str, wait: float) -> None:
    response = httpx.Response(429, headers={"Retry-After": header})
    assert _retry_after(response) == wait
