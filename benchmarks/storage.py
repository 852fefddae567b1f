"""Storage: bytes on disk per stored inference, everything included, table by table.

Two shapes of traffic, each through `visionwatch serve` (batches of 500 over loopback, two
connections), at `size` inferences:

- camera: one busy camera, one device and one model at 10 inferences a second, ending now;
- fleet: a fleet's day, 50 devices x 2 models over the last 24 hours, sent in time order.

Every inference has 5 detections of 20 classes (class, confidence, box), an inference time
and 2 metadata fields (a site of 5 and a shift of 3), with a uuid4 id: what the SDK or an
Inference Server sends for a detector.

What is counted, after the server stopped (its aggregator caught up, its jobs done):

- SQLite: every file of the data directory (the database, its WAL and shared memory, any
  image), over the inferences; and per table and index, the pages `dbstat` reports.
- PostgreSQL: every relation of the database (tables, their TOAST, indexes, partitions)
  after `VACUUM FULL`, less what an empty migrated database holds; per table and index,
  partitions added to their parent.
"""

import random
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from tests.support.server import serving_process
from tests.support.workspaces import new_workspace

from benchmarks.ingest import _databases, _migrated

DEFAULT_SIZE = 100_000
BATCH = 500
SHAPES = ("camera", "fleet")
DATABASES = ("sqlite", "postgresql")
CLASSES = [f"class-{i}" for i in range(20)]
DEVICES = [f"camera-{i}" for i in range(50)]
FLEET_MODELS = ["vehicles/3", "people/1"]
DAY = 86_400.0


@dataclass
class Measured:
    inferences: int
    total_bytes: int
    # table or index -> bytes; an index is named "table.index"
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def per_inference(self) -> float:
        return self.total_bytes / self.inferences


def items(shape: str, size: int, seed: int = 3) -> Iterator[dict[str, Any]]:
    """The shape's inferences, oldest first."""
    rng = random.Random(seed)
    now = time.time()
    times: Iterator[float]
    sources: Iterator[tuple[str, str]]
    if shape == "camera":
        times = (now - (size - n) / 10.0 for n in range(size))
        sources = ((FLEET_MODELS[0], DEVICES[0]) for _ in range(size))
    elif shape == "fleet":
        times = iter(sorted(now - rng.random() * DAY for _ in range(size)))
        sources = ((rng.choice(FLEET_MODELS), rng.choice(DEVICES)) for _ in range(size))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    for at, (model, device) in zip(times, sources, strict=True):
        yield {
            "inference_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "model_id": model,
            "device_id": device,
            "timestamp": at,
            "inference_time": round(0.01 + rng.random() / 20, 6),
            "image": {"width": 640, "height": 480},
            "predictions": [
                {
                    "class": rng.choice(CLASSES),
                    "confidence": round(rng.random(), 4),
                    "x": round(rng.uniform(0, 640), 1),
                    "y": round(rng.uniform(0, 480), 1),
                    "width": round(rng.uniform(10, 200), 1),
                    "height": round(rng.uniform(10, 200), 1),
                }
                for _ in range(5)
            ],
            "metadata": {"site": f"site-{DEVICES.index(device) % 5}", "shift": rng.randrange(3)},
        }


def _bodies(shape: str, size: int) -> Iterator[bytes]:
    batch: list[dict[str, Any]] = []
    for item in items(shape, size):
        batch.append(item)
        if len(batch) == BATCH:
            yield orjson.dumps({"inferences": batch})
            batch = []
    if batch:
        yield orjson.dumps({"inferences": batch})


def _load(base: str, key: str, shape: str, size: int, connections: int = 2) -> int:
    """Post the shape's batches; how many inferences the server stored."""
    bodies = _bodies(shape, size)
    lock = threading.Lock()
    stored = [0]
    failures: list[BaseException] = []
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}

    def post_all() -> None:
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
                while True:
                    with lock:
                        body = next(bodies, None)
                    if body is None:
                        return
                    response = http.post("/api/v1/inferences", content=body)
                    response.raise_for_status()
                    with lock:
                        stored[0] += int(response.json()["accepted"])
        except BaseException as error:  # re-raised in the main thread
            failures.append(error)

    loaders = [threading.Thread(target=post_all) for _ in range(connections)]
    for loader in loaders:
        loader.start()
    for loader in loaders:
        loader.join()
    if failures:
        raise failures[0]
    return stored[0]


def _settled(base: str, key: str, expected: int) -> None:
    """Until the dashboards count every inference: the aggregator caught up."""
    headers = {"Authorization": f"Bearer {key}"}
    params = {"start": int(time.time() - 3 * DAY), "end": int(time.time() + 3600)}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        answer = httpx.get(f"{base}/api/v1/stats", params=params, headers=headers).json()
        if answer["total_requests"]["current"] == expected:
            return
        time.sleep(0.2)
    raise AssertionError("the aggregator did not catch up in 10 minutes")


def measure(database_url: str, shape: str, size: int) -> Measured:
    with tempfile.TemporaryDirectory() as data:
        env = {
            "VISIONWATCH_DATABASE_URL": database_url,
            "VISIONWATCH_DATA_DIR": data,
            "VISIONWATCH_RATE_LIMIT_PER_SECOND": "0",
        }
        key = new_workspace(env, "bench")
        with serving_process(env) as (base, _):
            stored = _load(base, key, shape, size)
            _settled(base, key, stored)
        assert stored == size, f"{size - stored} inferences were not stored"
        if database_url.startswith("sqlite:///"):
            return _sqlite_bytes(Path(data), Path(database_url.removeprefix("sqlite:///")), stored)
        return _postgres_bytes(database_url, stored)


def _sqlite_bytes(data: Path, path: Path, inferences: int) -> Measured:
    # The data directory's files, and the database's own (other databases may share its
    # folder).
    files = {f for f in data.rglob("*") if f.is_file()}
    files |= {f for f in path.parent.glob(f"{path.name}*") if f.is_file()}
    total = sum(f.stat().st_size for f in files)
    with sqlite3.connect(path) as conn:
        parts = dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        owners = dict(
            conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'").fetchall()
        )
    named = {(f"{owners[n]}.{n}" if n in owners else n): int(b) for n, b in parts.items()}
    return Measured(inferences, total, named)


# Every relation of the schema with its bytes: a partition or a TOAST table counts as its
# parent's, an index as "table.index" (a partition's index as its parent table's).
_RELATIONS = """
WITH RECURSIVE parents(child, root) AS (
    SELECT c.oid, c.oid FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
        AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
    UNION ALL
    SELECT i.inhrelid, p.root FROM pg_inherits i JOIN parents p ON i.inhparent = p.child
)
SELECT root::regclass::text AS owner, NULL AS index_name,
    pg_relation_size(child) + COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0)
FROM parents JOIN pg_class c ON c.oid = child
UNION ALL
SELECT root::regclass::text, COALESCE(ip.relname, ic.relname), pg_relation_size(ix.indexrelid)
FROM parents
JOIN pg_index ix ON ix.indrelid = child
JOIN pg_class ic ON ic.oid = ix.indexrelid
LEFT JOIN pg_inherits ii ON ii.inhrelid = ix.indexrelid
LEFT JOIN pg_class ip ON ip.oid = ii.inhparent
"""


def _postgres_parts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM FULL")
        parts: dict[str, int] = {}
        for owner, index, size in conn.execute(_RELATIONS).fetchall():
            name = owner if index is None else f"{owner}.{index}"
            parts[name] = parts.get(name, 0) + int(size)
    return parts


def _postgres_bytes(url: str, inferences: int) -> Measured:
    empty = _EMPTY.get(url.rsplit("/", 1)[0])
    assert empty is not None, "measure an empty migrated database on this server first"
    parts = _postgres_parts(url)
    added = {name: size - empty.get(name, 0) for name, size in parts.items()}
    return Measured(inferences, sum(added.values()), added)


_EMPTY: dict[str, dict[str, int]] = {}


def run(
    size: int | None, shapes: list[str] | None = None, databases: list[str] | None = None
) -> dict[tuple[str, str], Measured]:
    size = size or DEFAULT_SIZE
    results: dict[tuple[str, str], Measured] = {}
    for kind in databases or DATABASES:
        with tempfile.TemporaryDirectory() as temporary, _databases(kind, Path(temporary)) as new:
            if kind == "postgresql":
                url = _migrated(new("empty"))
                _EMPTY[url.rsplit("/", 1)[0]] = _postgres_parts(url)
            for shape in shapes or SHAPES:
                began = time.perf_counter()
                found = measure(_migrated(new(f"storage_{shape}")), shape, size)
                results[(shape, kind)] = found
                _print(shape, kind, found, time.perf_counter() - began)
    return results


def _print(shape: str, kind: str, found: Measured, seconds: float) -> None:
    print(
        f"storage: {shape} on {kind}, {found.inferences:,} inferences: "
        f"{found.per_inference:,.0f} B per inference in all ({seconds:.0f} s)",
        flush=True,
    )
    shown = sorted(found.parts.items(), key=lambda part: -part[1])
    for name, size in shown:
        if abs(size) / found.inferences >= 0.5:
            print(f"    {name:<58}{size / found.inferences:>10.1f}", flush=True)
    other = sum(size for _, size in shown if abs(size) / found.inferences < 0.5)
    print(f"    {'(the rest, each under 0.5 B)':<58}{other / found.inferences:>10.1f}")
    counted = sum(found.parts.values())
    print(
        f"    {'(files beyond the tables: free pages, WAL)':<58}"
        f"{(found.total_bytes - counted) / found.inferences:>10.1f}",
        flush=True,
    )
