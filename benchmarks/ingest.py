"""Ingest: committed inferences per second through `visionwatch serve`, against the floor, for
each shape of traffic users send.

Shapes (batches of 500 inferences, 5 detections of 20 classes and 3 metadata fields each):

- camera: one device and model per batch, timestamps within seconds (an SDK on a camera);
- gateway: 50 devices x 10 models mixed in every batch, all in the last minute (a site
  gateway, an inference server serving many streams, the workflow aggregator);
- drain: one device and model per batch, timestamps 2 s apart over the last day (a spool
  emptied after an outage);
- backfill: 50 devices x 10 models mixed, timestamps over 6 days (history imported);
- roboflow: a busy Roboflow Inference Server's reports (`POST /inference-stats`), one a
  minute, one device, five models, in its default condensed form (class and confidence
  only): a minute of ten 30 fps streams, 18,000 results a report (10 MiB with five
  predictions each; 13 MiB with twelve).

A loader posts pre-serialised bodies over loopback with two connections; the rate counts
inferences the server acknowledged (committed). Meanwhile a reader asks `/api/v1/stats`
every 50 ms: its latency is the dashboard's under load, and the first answer that counts a
batch gives that batch's freshness (from its 2xx until the stats include it).

The floor, in the same run: the same rows inserted into the same raw tables and indexes
(inferences with the item as sent, predictions, metadata) with plain `executemany`
(SQLite, WAL, synchronous=FULL) or `COPY` (PostgreSQL), one transaction per batch, with no
HTTP, validation or rollups.
"""

import random
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from tests.support.cluster import started
from tests.support.postgres import running_postgres
from tests.support.server import serving_process
from tests.support.workspaces import new_workspace

from visionwatch.db import migrate
from visionwatch.db.engine import create_database

DEFAULT_SIZE = 20_000
BATCH = 500
REPORT = 18_000  # a minute of ten 30 fps streams
CLASSES = [f"class-{i}" for i in range(20)]
DEVICES = [f"camera-{i}" for i in range(50)]
MODELS = [f"model-{i}/1" for i in range(10)]
SHAPES = ("camera", "gateway", "drain", "backfill", "roboflow")
DATABASES = ("sqlite", "postgresql")
DAY = 86_400.0


@dataclass
class Workload:
    """One shape's traffic: the items (as the native API takes them) in batches, and the
    bodies to post (native batches, or Roboflow reports of the same inferences)."""

    shape: str
    batches: list[list[dict[str, Any]]]
    path: str = "/api/v1/inferences"
    bodies: list[bytes] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(b) for b in self.batches)


def make_workload(shape: str, size: int, seed: int = 1) -> Workload:
    rng = random.Random(seed)
    per_batch = min(REPORT, size) if shape == "roboflow" else BATCH
    count = max(size // per_batch, 1)
    now = time.time()
    batches = []
    for number in range(count):
        fixed_model, fixed_device = rng.choice(MODELS), rng.choice(DEVICES)
        batch = []
        for index in range(per_batch):
            if shape == "camera":
                model, device = fixed_model, fixed_device
                at = now - (count - number) * 5.0 + rng.random() * 5.0
            elif shape == "gateway":
                model, device = rng.choice(MODELS), rng.choice(DEVICES)
                at = now - rng.random() * 60
            elif shape == "drain":
                model, device = fixed_model, fixed_device
                at = now - DAY + (number * BATCH + index) * 2.0 % DAY
            elif shape == "backfill":
                model, device = rng.choice(MODELS), rng.choice(DEVICES)
                at = now - rng.random() * 6 * DAY
            elif shape == "roboflow":
                model, device = MODELS[index % 5], "inference-server-1"
                at = now - (count - number) * 60.0 + rng.random() * 60.0
            else:
                raise ValueError(f"unknown shape {shape!r}")
            batch.append(_item(rng, model, device, at))
        batches.append(batch)
    workload = Workload(shape, batches)
    if shape == "roboflow":
        workload.path = "/inference-stats"
        workload.bodies = [orjson.dumps(_report(batch)) for batch in batches]
    else:
        workload.bodies = [orjson.dumps({"inferences": batch}) for batch in batches]
    return workload


def _item(rng: random.Random, model: str, device: str, at: float) -> dict[str, Any]:
    return {
        "inference_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "model_id": model,
        "device_id": device,
        "timestamp": at,
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


def _report(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """What an Inference Server (1.x, condensed form) posts for these inferences."""
    return {
        "timestamp": str(int(time.time())),
        "device_id": batch[0]["device_id"],
        "inference_server_id": batch[0]["device_id"],
        "inference_server_version": "1.8.3",
        "tags": [""],
        "inference_results": [
            {
                "request_time": item["timestamp"],
                "inference": {
                    "inference_id": item["inference_id"],
                    "inference_server_id": batch[0]["device_id"],
                    "inference_server_version": "1.8.3",
                    "request": {
                        "model_id": item["model_id"],
                        "model_type": "object-detection",
                        "confidence": 0.4,
                        "source": None,
                        "source_info": None,
                    },
                    "response": [
                        {
                            "predictions": [
                                {"class": p["class"], "confidence": p["confidence"]}
                                for p in item["predictions"]
                            ],
                            "time": item["inference_time"],
                        }
                    ],
                },
            }
            for item in batch
        ],
    }


@dataclass
class Served:
    rate: float
    peak_rss_mib: float
    parsers_rss_mib: float  # the parser processes' peaks, added
    bytes_per_inference: float
    freshness_p99: float
    stats_p95_ms: float


def serve(database_url: str, workload: Workload) -> Served:
    with tempfile.TemporaryDirectory() as data:
        env = {
            "VISIONWATCH_DATABASE_URL": database_url,
            "VISIONWATCH_DATA_DIR": data,
            "VISIONWATCH_RATE_LIMIT_PER_SECOND": "0",  # many senders share one key here
        }
        key = new_workspace(env, "bench")
        with serving_process(env) as (base, process):
            loaded = _load(base, key, workload)
            peak = _peak_rss_mib(process.pid)
            parsers = sum(_peak_rss_mib(child) for child in _children(process.pid))
        assert loaded.accepted == workload.count, "not every inference was stored"
        size = _database_bytes(database_url)
    freshness = [seen - acked for acked, seen in loaded.freshness]
    return Served(
        rate=loaded.accepted / loaded.elapsed,
        peak_rss_mib=peak,
        parsers_rss_mib=parsers,
        bytes_per_inference=size / loaded.accepted,
        freshness_p99=_percentile(freshness, 99),
        stats_p95_ms=_percentile(loaded.stats_latency, 95) * 1000,
    )


@dataclass
class Loaded:
    accepted: int = 0
    elapsed: float = 0.0
    # Per batch: (when its 2xx came, when /api/v1/stats first counted it).
    freshness: list[tuple[float, float]] = field(default_factory=list)
    stats_latency: list[float] = field(default_factory=list)


def _load(base: str, key: str, workload: Workload, connections: int = 2) -> Loaded:
    loaded = Loaded()
    lock = threading.Lock()
    pending = iter(workload.bodies)
    acknowledged: list[tuple[float, int]] = []  # (time of the 2xx, inferences then)
    done = threading.Event()
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    path = workload.path + (f"?api_key={key}" if workload.shape == "roboflow" else "")

    def post_all() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
            while True:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                response = http.post(path, content=body)
                response.raise_for_status()
                stored = workload_count(response.json(), body)
                with lock:
                    loaded.accepted += stored
                    acknowledged.append((time.perf_counter(), loaded.accepted))

    def read_stats() -> None:
        params = {"start": int(time.time() - 8 * DAY), "end": int(time.time() + 3600)}
        waiting: list[tuple[float, int]] = []
        with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
            while True:
                finished = done.is_set()
                began = time.perf_counter()
                answer = http.get("/api/v1/stats", params=params).json()
                ended = time.perf_counter()
                loaded.stats_latency.append(ended - began)
                counted = answer["total_requests"]["current"]
                with lock:
                    waiting.extend(acknowledged)
                    acknowledged.clear()
                waiting = _counted(waiting, counted, began, ended, loaded.freshness)
                if finished and not waiting:
                    return
                if finished and time.perf_counter() - done_at[0] > 60:
                    raise AssertionError(f"{len(waiting)} batches never counted in 60 s")
                time.sleep(0.05)

    done_at = [0.0]
    reader = threading.Thread(target=read_stats)
    reader.start()
    began = time.perf_counter()
    loaders = [threading.Thread(target=post_all) for _ in range(connections)]
    for loader in loaders:
        loader.start()
    for loader in loaders:
        loader.join()
    loaded.elapsed = time.perf_counter() - began
    done_at[0] = time.perf_counter()
    done.set()
    reader.join()
    return loaded


def _counted(
    waiting: list[tuple[float, int]],
    counted: int,
    asked: float,
    answered: float,
    freshness: list[tuple[float, float]],
) -> list[tuple[float, int]]:
    """Batches acknowledged before the stats were asked and counted in their answer go to
    `freshness` as (2xx, answer); the others are still waiting."""
    still = []
    for acked, total in waiting:
        if total <= counted and acked <= asked:
            freshness.append((acked, answered))
        else:
            still.append((acked, total))
    return still


def workload_count(answer: dict[str, Any], body: bytes) -> int:
    """Inferences a 2xx stored: the native API says so; a Roboflow report stores all it holds."""
    if "accepted" in answer:
        return int(answer["accepted"])
    return len(orjson.loads(body)["inference_results"])


def _percentile(values: list[float], percent: int) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-percent * len(ordered) // 100) - 1))]


def _database_bytes(database_url: str) -> int:
    """What the project's tables and indexes hold, after the server stopped: the SQLite
    file's pages in use once its WAL is checkpointed; on PostgreSQL the tables' and indexes'
    size after a VACUUM FULL (dead row versions of the rollups' upserts are space autovacuum
    reuses, and an empty database's catalogs are 7 MB, not the data's)."""
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = conn.execute(
                "SELECT (SELECT page_count FROM pragma_page_count())"
                " - (SELECT freelist_count FROM pragma_freelist_count())"
            ).fetchone()[0]
            size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(size)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM FULL")
        row = conn.execute(
            "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchone()
        assert row is not None
        return int(row[0])


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _children(pid: int) -> list[int]:
    """The server's child processes (its parsers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _rows(workload: Workload) -> Iterator[tuple[list[Any], ...]]:
    """Per batch: the inference, prediction and metadata rows, with ids assigned up front."""
    pk = 0
    models = {name: i + 1 for i, name in enumerate(MODELS)}
    devices = {name: i + 1 for i, name in enumerate([*DEVICES, "inference-server-1"])}
    for batch in workload.batches:
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
                    (1, pk, idx, ts, p["class"], None, p["confidence"], *_box(p))
                )
            for name, value in item["metadata"].items():
                metadata_rows.append((1, pk, name, str(value), "s", ts))
        yield inference_rows, prediction_rows, metadata_rows


def _box(prediction: dict[str, Any]) -> tuple[float, ...]:
    return (prediction["x"], prediction["y"], prediction["width"], prediction["height"])


INFERENCE_COLUMNS = (
    "id, workspace_id, inference_id, model_id, device_id, ts, received_at, inference_time, "
    "task, image_width, image_height, error, prediction_count, image_key, item"
)
PREDICTION_COLUMNS = (
    "workspace_id, inference_pk, idx, ts, class_name, class_id, confidence, x, y, width, height"
)
METADATA_COLUMNS = "workspace_id, inference_pk, field, value, kind, ts"
# The raw tables as the first version laid them out: the floor stays the same yardstick
# whatever the server's own schema becomes.
FLOOR_SCHEMA = """
CREATE TABLE inferences (
    id INTEGER PRIMARY KEY, workspace_id INTEGER NOT NULL, inference_id VARCHAR(128) NOT NULL,
    model_id INTEGER NOT NULL, device_id INTEGER, ts BIGINT NOT NULL,
    received_at BIGINT NOT NULL, inference_time FLOAT, task VARCHAR(32), image_width INTEGER,
    image_height INTEGER, error TEXT, prediction_count INTEGER NOT NULL,
    image_key VARCHAR(512), item TEXT NOT NULL, UNIQUE (workspace_id, inference_id));
CREATE INDEX ix_inferences_ts ON inferences (workspace_id, ts, id);
CREATE INDEX ix_inferences_model ON inferences (workspace_id, model_id, ts);
CREATE INDEX ix_inferences_device ON inferences (workspace_id, device_id, ts);
CREATE TABLE predictions (
    workspace_id INTEGER NOT NULL, inference_pk BIGINT NOT NULL, idx SMALLINT NOT NULL,
    ts BIGINT NOT NULL, class_name VARCHAR(256) NOT NULL, class_id INTEGER,
    confidence FLOAT NOT NULL, x FLOAT, y FLOAT, width FLOAT, height FLOAT,
    PRIMARY KEY (workspace_id, inference_pk, idx)) {without_rowid};
CREATE INDEX ix_predictions_class ON predictions (workspace_id, class_name, ts);
CREATE TABLE inference_metadata (
    workspace_id INTEGER NOT NULL, inference_pk BIGINT NOT NULL, field VARCHAR(128) NOT NULL,
    value VARCHAR(1024) NOT NULL, kind VARCHAR(1) NOT NULL, ts BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, inference_pk, field)) {without_rowid};
CREATE INDEX ix_metadata_value ON inference_metadata (workspace_id, field, value, ts);
"""


def floor_sqlite(path: Path, workload: Workload) -> float:
    rows = list(_rows(workload))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # as the server: committed means on disk
    conn.executescript(FLOOR_SCHEMA.format(without_rowid="WITHOUT ROWID"))
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
    return workload.count / elapsed


def floor_postgres(url: str, workload: Workload) -> float:
    rows = list(_rows(workload))
    with psycopg.connect(url) as conn:
        with conn.transaction():
            conn.execute(FLOOR_SCHEMA.format(without_rowid=""))
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
    return workload.count / elapsed


@contextmanager
def _databases(kind: str, folder: Path) -> Iterator[Callable[[str], str]]:
    """A function from a name to the URL of a new, empty database of `kind`."""
    if kind == "sqlite":
        yield lambda name: f"sqlite:///{folder / (name + '.db')}"
        return
    with running_postgres() as server, psycopg.connect(server.url(), autocommit=True) as conn:

        def make(name: str) -> str:
            conn.execute(f"CREATE DATABASE {name}")
            return server.url(name)

        yield make


def _migrated(url: str) -> str:
    database = create_database(url)
    migrate.upgrade(database)
    database.dispose()
    return url


def run(
    size: int | None, shapes: list[str] | None = None, databases: list[str] | None = None
) -> dict[tuple[str, str], dict[str, float]]:
    size = size or DEFAULT_SIZE
    results: dict[tuple[str, str], dict[str, float]] = {}
    for kind in databases or DATABASES:
        with tempfile.TemporaryDirectory() as temporary, _databases(kind, Path(temporary)) as new:
            for shape in shapes or SHAPES:
                workload = make_workload(shape, size)
                served = serve(_migrated(new(f"serve_{shape}")), workload)
                floor_url = new(f"floor_{shape}")
                if kind == "sqlite":
                    floor = floor_sqlite(Path(floor_url.removeprefix("sqlite:///")), workload)
                else:
                    floor = floor_postgres(floor_url, workload)
                results[(shape, kind)] = {
                    "served": served.rate,
                    "floor": floor,
                    "ratio": served.rate / floor,
                    "freshness_p99_s": served.freshness_p99,
                    "stats_p95_ms": served.stats_p95_ms,
                    "peak_rss_mib": served.peak_rss_mib,
                    "parsers_rss_mib": served.parsers_rss_mib,
                    "bytes_per_inference": served.bytes_per_inference,
                }
                _print_row(shape, kind, results[(shape, kind)], header=len(results) == 1)
    return results


# Through nginx: the loader's connections for each replica behind it.
CONNECTIONS_PER_REPLICA = 2


def run_replicas(
    size: int | None, replicas: list[int], shapes: list[str] | None = None
) -> dict[tuple[str, int], dict[str, float]]:
    """Each shape through nginx in front of 1, 2, 3... `visionwatch serve` replicas on one
    PostgreSQL primary with its hot standby (tests/support/cluster.py, durable: fsync on),
    the floor the same rows by COPY into that primary."""
    size = size or DEFAULT_SIZE
    results: dict[tuple[str, int], dict[str, float]] = {}
    for count in replicas:
        with started(count) as cluster:
            env = cluster.server_env()
            key = new_workspace(env, "bench")
            for number, shape in enumerate(shapes or ("camera", "gateway")):
                workload = make_workload(shape, size, seed=number + 1)  # ids of its own
                loaded = _load(
                    cluster.url, key, workload, connections=CONNECTIONS_PER_REPLICA * count
                )
                assert loaded.accepted == workload.count, "not every inference was stored"
                floor_db = f"floor_{shape}_{count}"
                with psycopg.connect(
                    cluster.primary_url.rsplit("/", 1)[0] + "/postgres", autocommit=True
                ) as admin:
                    admin.execute(f"CREATE DATABASE {floor_db}")
                floor = floor_postgres(
                    cluster.primary_url.rsplit("/", 1)[0] + "/" + floor_db, workload
                )
                served = loaded.accepted / loaded.elapsed
                results[(shape, count)] = {
                    "served": served,
                    "floor": floor,
                    "ratio": served / floor,
                    "stats_p95_ms": _percentile(loaded.stats_latency, 95) * 1000,
                }
                if len(results) == 1:
                    print(
                        f"ingest through nginx: batches of {BATCH}, "
                        f"{CONNECTIONS_PER_REPLICA} connections per replica, PostgreSQL primary"
                    )
                    print(
                        f"{'shape':<10}{'replicas':>9}{'served /s':>12}{'floor /s':>12}"
                        f"{'ratio':>8}{'stats p95 ms':>14}"
                    )
                row = results[(shape, count)]
                print(
                    f"{shape:<10}{count:>9}{row['served']:>12.0f}{row['floor']:>12.0f}"
                    f"{row['ratio']:>8.2f}{row['stats_p95_ms']:>14.1f}",
                    flush=True,
                )
    return results


COLUMNS = (
    ("served /s", "served", "{:.0f}"),
    ("floor /s", "floor", "{:.0f}"),
    ("ratio", "ratio", "{:.2f}"),
    ("fresh p99 s", "freshness_p99_s", "{:.2f}"),
    ("stats p95 ms", "stats_p95_ms", "{:.1f}"),
    ("peak RSS MiB", "peak_rss_mib", "{:.0f}"),
    ("parsers MiB", "parsers_rss_mib", "{:.0f}"),
    ("B / inference", "bytes_per_inference", "{:.0f}"),
)


def _print_row(shape: str, kind: str, figures: dict[str, float], header: bool) -> None:
    if header:
        print(f"ingest: batches of {BATCH}, 5 detections and 3 metadata fields, 2 connections")
        print(f"{'shape':<10}{'database':<12}" + "".join(f"{c[0]:>15}" for c in COLUMNS))
    cells = "".join(f"{fmt.format(figures[name]):>15}" for _, name, fmt in COLUMNS)
    print(f"{shape:<10}{kind:<12}{cells}", flush=True)
