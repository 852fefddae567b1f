"""Nothing acknowledged is lost: the server killed with SIGKILL mid-ingest, and PostgreSQL
stopped under load. The SDK (with its spool) keeps sending; what got a 2xx must be stored,
and in the end everything logged is stored exactly once."""

import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import pytest

from tests.support.postgres import PostgresServer, free_port
from tests.support.workspaces import auth, every_inference, new_workspace, server_total
from visionwatch.client import Client

pytestmark = pytest.mark.slow  # `visionwatch serve` as a process, killed and restarted

TOTAL = 3000
EVER = "2000-01-01T00:00:00Z"


class Recorder(httpx.HTTPTransport):
    """The SDK's transport, noting the ids of every batch the server acknowledged."""

    def __init__(self) -> None:
        super().__init__()
        self.acknowledged: set[str] = set()
        self.statuses: list[int] = []
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path == "/api/v1/inferences":
            body = request.read()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            ids = [item["inference_id"] for item in orjson.loads(body)["inferences"]]
            with self.lock:
                self.statuses.append(response.status_code)
                if 200 <= response.status_code < 300:
                    self.acknowledged.update(ids)
        return response

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


class Server:
    """`visionwatch serve` that can be killed and started again on the same port."""

    def __init__(self, env: dict[str, str], log: IO[str]) -> None:
        self.env = {**os.environ, **env}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "visionwatch", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, "the server exited at start"
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


@contextmanager
def server_for(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Server, str]]:
    key = new_workspace(env, "safe")
    with open(tmp_path / "server.log", "w") as log:
        server = Server(env, log)
        server.start()
        try:
            yield server, key
        finally:
            server.stop()


def stored_ids(base: str, key: str) -> list[str]:
    return [row["inference_id"] for row in every_inference(base, key, start=EVER)]


def log_steadily(client: Client) -> None:
    for n in range(TOTAL):
        result = {"predictions": [{"class": f"c{n % 4}", "confidence": 0.5 + (n % 50) / 100}]}
        client.log("crash/1", result, inference_id=f"c-{n:05d}", metadata={"n": n})
        time.sleep(0.002)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def sdk(base: str, key: str, tmp_path: Path, recorder: Recorder) -> Client:
    return Client(
        base,
        key,
        batch_size=50,
        flush_interval=0.05,
        timeout=5,
        spool_dir=tmp_path / "spool",
        heartbeat_interval=None,
        transport=recorder,
    )


def test_sigkill_mid_ingest_loses_nothing_acknowledged(database_url: str, tmp_path: Path) -> None:
    env = {"VISIONWATCH_DATA_DIR": str(tmp_path / "data"), "VISIONWATCH_DATABASE_URL": database_url}
    recorder = Recorder()
    with server_for(env, tmp_path) as (server, key):
        client = sdk(server.base, key, tmp_path, recorder)
        logger = threading.Thread(target=log_steadily, args=(client,))
        logger.start()
        for kill, share in enumerate((0.2, 0.45, 0.7), start=1):
            wait_for(lambda s=share: recorder.count() >= TOTAL * s, 60, "acknowledgements")
            server.kill()
            acknowledged = set(recorder.acknowledged)
            server.start()
            missing = acknowledged - set(stored_ids(server.base, key))
            assert not missing, f"acknowledged before kill {kill}, then lost: {sorted(missing)[:5]}"
        logger.join()
        assert client.flush(timeout=120), "the SDK delivered everything in the end"
        client.close()
        ids = stored_ids(server.base, key)
        assert sorted(ids) == [f"c-{n:05d}" for n in range(TOTAL)]
        assert server_total(server.base, key, start=EVER) == TOTAL, "re-sent batches count once"
    assert recorder.acknowledged == set(ids)


def test_postgres_outage_is_a_503_and_recovers_by_itself(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    url = own_postgres.url().replace("postgresql://", "postgresql+psycopg://", 1)
    env = {"VISIONWATCH_DATA_DIR": str(tmp_path / "data"), "VISIONWATCH_DATABASE_URL": url}
    recorder = Recorder()
    with server_for(env, tmp_path) as (server, key):
        client = sdk(server.base, key, tmp_path, recorder)
        logger = threading.Thread(target=log_steadily, args=(client,))
        logger.start()
        wait_for(lambda: recorder.count() >= TOTAL * 0.2, 60, "acknowledgements")
        own_postgres.stop()
        try:
            ready = httpx.get(f"{server.base}/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable"
            refused = httpx.post(
                f"{server.base}/api/v1/inferences",
                json={"inferences": [{"model_id": "crash/1", "inference_id": "during"}]},
                headers=auth(key),
            )
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            assert "nothing was stored" in refused.json()["detail"]
            page = httpx.get(f"{server.base}/login", headers={"accept": "text/html"})
            assert page.status_code == 200, "pages that need no database still answer"
            assert httpx.get(f"{server.base}/healthz").status_code == 200
            time.sleep(1.5)  # the SDK keeps trying meanwhile, and keeps what it could not send
        finally:
            own_postgres.start()
        wait_for(lambda: httpx.get(f"{server.base}/readyz").status_code == 200, 30, "readiness")
        logger.join()
        assert client.flush(timeout=120)
        client.close()
        ids = stored_ids(server.base, key)
        assert sorted(ids) == [f"c-{n:05d}" for n in range(TOTAL)]
        assert "during" not in ids
        assert server_total(server.base, key, start=EVER) == TOTAL
    assert 503 in recorder.statuses, "the SDK met the outage"
    assert all(s < 300 or s == 503 for s in recorder.statuses), sorted(set(recorder.statuses))
