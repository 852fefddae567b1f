"""Ingest: committed inferences per second through `visionwatch serve`, against the floor.

A loader posts pre-serialised batches of 500 inferences (5 detections each,
3 metadata fields; each batch from one device and one model, as an SDK on a
camera sends them) over loopback with two connections. The floor, in the same
run: the same rows inserted into the same tables and indexes with plain
`executemany` (SQLite) or `COPY` (PostgreSQL), one transaction per batch, no
HTTP, no validation, no rollups.
"""

import random
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from tests.support.postgres import running_postgres
from tests.support.server import cli, serving_process

from visionwatch.db import migrate
from visionwatch.db.engine import create_database

DEFAULT_SIZE = 100_000
BATCH = 500
SECONDS_PER_BATCH = 5.0  # 100 frames a second
CLASSES = [f"class-{i}" for i in range(20)]


def make_batches(size: int, seed: int = 1) -> list[list[dict[str, Any]]]:
    """Batches as a camera's SDK sends them: one device and model, a few seconds each."""
    rng = random.Random(seed)
    count = max(size // BATCH, 1)
    start = time.time() - count * SECONDS_PER_BATCH - 60
    batches = []
    for number in range(count):
        model, device = f"model-{number % 10}/1", f"camera-{rng.randrange(50)}"
        began = start + number * SECONDS_PER_BATCH
        batches.append(
            [
                {
                    "inference_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "model_id": model,
                    "device_id": device,
                    "timestamp": began + rng.random() * SECONDS_PER_BATCH,
                    "inference_time": 0.01 + rng.random() / 20,
                    "predictions": [
                        {
                            "class": rng.choice(CLASSES),
                            "confidence": round(rng.random(), 4),
                            "x": 100.0,
                            "y": 80.0,
                            "width": 20.0,
                            "height": 30.0,
                        }
                        for _ in range(5)
                    ],
                    "metadata": {
                        "site": f"site-{rng.randrange(5)}",
                        "shift": rng.randrange(3),
                        "daylight": rng.random() < 0.5,
                    },
                }
                for _ in range(BATCH)
            ]
        )
    return batches


def serve_rate(
    database_url: str, batches: list[list[dict[str, Any]]]
) -> tuple[float, float, float]:
    """(committed inferences per second, peak RSS of the server in MiB, MB per million)."""
    with tempfile.TemporaryDirectory() as data:
        env = {
            "VISIONWATCH_DATABASE_URL": database_url,
            "VISIONWATCH_DATA_DIR": data,
            "VISIONWATCH_RATE_LIMIT_PER_SECOND": "0",  # many senders share one key here
        }
        cli(env, "workspaces", "create", "bench")
        key = cli(env, "keys", "create", "bench").stdout.strip().splitlines()[-1]
        bodies = [orjson.dumps({"inferences": batch}) for batch in batches]
        with serving_process(env) as (base, process):
            pending = iter(bodies)
            lock = threading.Lock()
            accepted = [0]

            def post_all() -> None:
                headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
                with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
                    while True:
                        with lock:
                            body = next(pending, None)
                        if body is None:
                            return
                        response = http.post("/api/v1/inferences", content=body)
                        response.raise_for_status()
                        with lock:
                            accepted[0] += response.json()["accepted"]

            began = time.perf_counter()
            loaders = [threading.Thread(target=post_all) for _ in range(2)]
            for loader in loaders:
                loader.start()
            for loader in loaders:
                loader.join()
            elapsed = time.perf_counter() - began
            peak = _peak_rss_mib(process.pid)
        assert accepted[0] == sum(len(b) for b in batches), "not every inference was stored"
        per_million = _database_bytes(database_url) / 1e6 / (accepted[0] / 1e6)
        return accepted[0] / elapsed, peak, per_million


def _database_bytes(database_url: str) -> int:
    """The database's size on disk: the SQLite file and its WAL, or pg_database_size."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None
        return int(row[0])


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rows(batches: list[list[dict[str, Any]]]) -> Iterator[tuple[list[Any], ...]]:
    """Per batch: the inference, prediction and metadata rows, with ids assigned up front."""
    pk = 0
    models = {f"model-{i}/1": i + 1 for i in range(10)}
    devices = {f"camera-{i}": i + 1 for i in range(50)}
    for batch in batches:
        inference_rows, prediction_rows, metadata_rows = [], [], []
        for item in batch:
            pk += 1
            ts = int(item["timestamp"] * 1_000_000)
            inference_rows.append(
                (
                    pk,
                    1,
                    item["inference_id"],
                    models[item["model_id"]],
                    devices[item["device_id"]],
                    ts,
                    ts,
                    item["inference_time"],
                    "object-detection",
                    None,
                    None,
                    None,
                    len(item["predictions"]),
                    None,
                    orjson.dumps(item).decode(),
                )
            )
            for idx, p in enumerate(item["predictions"]):
                prediction_rows.append(
                    (
                        1,
                        pk,
                        idx,
                        ts,
                        p["class"],
                        None,
                        p["confidence"],
                        p["x"],
                        p["y"],
                        p["width"],
                        p["height"],
                    )
                )
            for field, value in item["metadata"].items():
                metadata_rows.append((1, pk, field, str(value), "s", ts))
        yield inference_rows, prediction_rows, metadata_rows


INFERENCE_COLUMNS = (
    "id, workspace_id, inference_id, model_id, device_id, ts, received_at, inference_time, "
    "task, image_width, image_height, error, prediction_count, image_key, item"
)
PREDICTION_COLUMNS = (
    "workspace_id, inference_pk, idx, ts, class_name, class_id, confidence, x, y, width, height"
)
METADATA_COLUMNS = "workspace_id, inference_pk, field, value, kind, ts"


def _prepare(database_url: str) -> None:
    """A migrated database with the workspace, models and devices the rows refer to."""
    database = create_database(database_url)
    migrate.upgrade(database)
    with database.writer.begin() as conn:
        conn.exec_driver_sql("INSERT INTO workspaces (id, name, created_at) VALUES (1, 'b', 0)")
        for i in range(10):
            conn.exec_driver_sql(
                "INSERT INTO models (id, workspace_id, name, first_seen, last_seen) "
                f"VALUES ({i + 1}, 1, 'model-{i}/1', 0, 0)"
            )
        for i in range(50):
            conn.exec_driver_sql(
                "INSERT INTO devices (id, workspace_id, name, first_seen, last_seen) "
                f"VALUES ({i + 1}, 1, 'camera-{i}', 0, 0)"
            )
    database.dispose()


def floor_sqlite(path: Path, batches: list[list[dict[str, Any]]]) -> float:
    _prepare(f"sqlite:///{path}")
    rows = list(_rows(batches))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # as the server: committed means on disk
    began = time.perf_counter()
    for inference_rows, prediction_rows, metadata_rows in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO inferences ({INFERENCE_COLUMNS}) VALUES ({', '.join('?' * 15)})",
            inference_rows,
        )
        conn.executemany(
            f"INSERT INTO predictions ({PREDICTION_COLUMNS}) VALUES ({', '.join('?' * 11)})",
            prediction_rows,
        )
        conn.executemany(
            f"INSERT INTO inference_metadata ({METADATA_COLUMNS}) VALUES ({', '.join('?' * 6)})",
            metadata_rows,
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    return sum(len(b) for b in batches) / elapsed


def floor_postgres(url: str, batches: list[list[dict[str, Any]]]) -> float:
    _prepare(url)
    rows = list(_rows(batches))
    with psycopg.connect(url) as conn:
        began = time.perf_counter()
        for inference_rows, prediction_rows, metadata_rows in rows:
            with conn.transaction(), conn.cursor() as cursor:
                for table, columns, values in (
                    ("inferences", INFERENCE_COLUMNS, inference_rows),
                    ("predictions", PREDICTION_COLUMNS, prediction_rows),
                    ("inference_metadata", METADATA_COLUMNS, metadata_rows),
                ):
                    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in values:
                            copy.write_row(row)
        elapsed = time.perf_counter() - began
    return sum(len(b) for b in batches) / elapsed


@contextmanager
def _postgres_databases(*names: str) -> Iterator[dict[str, str]]:
    with running_postgres() as server, psycopg.connect(server.url(), autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
        yield {name: server.url(name) for name in names}


def run(size: int | None) -> dict[str, dict[str, float]]:
    size = size or DEFAULT_SIZE
    batches = make_batches(size)
    count = sum(len(b) for b in batches)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        served, peak, size_mb = serve_rate(f"sqlite:///{Path(folder) / 'serve.db'}", batches)
        floor = floor_sqlite(Path(folder) / "floor.db", batches)
        results["sqlite"] = {
            "serve": served,
            "floor": floor,
            "peak_rss_mib": peak,
            "mb_per_million": size_mb,
        }
    with _postgres_databases("serve", "floor") as urls:
        served, peak, size_mb = serve_rate(urls["serve"], batches)
        floor = floor_postgres(urls["floor"], batches)
        results["postgresql"] = {
            "serve": served,
            "floor": floor,
            "peak_rss_mib": peak,
            "mb_per_million": size_mb,
        }
    print(f"ingest: {count} inferences in batches of {BATCH}, 2 connections")
    columns = ("served /s", "floor /s", "ratio", "peak RSS MiB", "MB / million")
    print(f"{'database':<12}" + "".join(f"{c:>14}" for c in columns))
    for name, figures in results.items():
        ratio = figures["serve"] / figures["floor"]
        print(
            f"{name:<12}{figures['serve']:>14.0f}{figures['floor']:>14.0f}{ratio:>14.2f}"
            f"{figures['peak_rss_mib']:>14.0f}{figures['mb_per_million']:>14.0f}"
        )
    return results
