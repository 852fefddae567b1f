"""Dashboard reads at scale, beside DuckDB computing the same answers from the same rows.

A generator writes `size` inferences (5 predictions each) over 30 days across
10 models, 50 devices and 20 classes through the real ingest code
(`store.ingest`, in process, on SQLite), and the same rows to CSV files that
DuckDB loads into memory (its load is not timed). Each read is then timed
`repeat` times (after one untimed call) through the HTTP API in process, the
model dashboard page signed in as a user, and in DuckDB; the answers are
checked to agree.

Then a fleet: 50,000 devices (a third offline) and a model of 1,000 classes join the
workspace, and the overview, the devices page and that model's page are timed with
their size (targets: 100 KB of HTML and 50 ms p95). Below 100,000 inferences the fleet
shrinks with `size` (a smoke run's), half a device and a fifth of a wide inference each.

Before the timing, the garbage collector is tuned as `visionwatch serve` tunes it: the
generated rows and DuckDB's answers are the benchmark's heap, not a server's, and full
collections walking them would be timed as the pages' own.
"""

import csv
import random
import re
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

with warnings.catch_warnings():
    # Starlette's TestClient warns about its own httpx dependency; not ours to fix.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from tests.support.dashboard import HTML, PASSWORD, sign_in

from benchmarks.ingest import _databases
from visionwatch.aggregator import settle
from visionwatch.app import create_app
from visionwatch.cli import tune_garbage_collector
from visionwatch.config import Settings
from visionwatch.db import migrate
from visionwatch.db.engine import create_database
from visionwatch.items import Inference, Prediction
from visionwatch.store import accounts
from visionwatch.store.devices import upsert_devices
from visionwatch.store.ingest import ingest

USER = "bench@example.com"

DEFAULT_SIZE = 1_000_000
BATCH = 1000
DAYS = 30
CLASSES = [f"class-{i:02d}" for i in range(20)]
REPEAT = 30


def generate(database_url: str, folder: Path, size: int, seed: int = 7) -> tuple[str, datetime]:
    """Fill the database and the CSV files; return an API key and the end of the data."""
    rng = random.Random(seed)
    database = create_database(database_url)
    migrate.upgrade(database)
    accounts.create_workspace(database, "bench")
    _, key = accounts.create_key(database, "bench")
    accounts.create_user(database, "bench", USER, PASSWORD)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=DAYS)
    batches = max(size // BATCH, 1)
    window = (end - start) / batches
    with (
        open(folder / "inferences.csv", "w", newline="") as inference_file,
        open(folder / "predictions.csv", "w", newline="") as prediction_file,
    ):
        inference_rows, prediction_rows = csv.writer(inference_file), csv.writer(prediction_file)
        for number in range(batches):
            model, device = f"model-{number % 10}/1", f"device-{rng.randrange(50)}"
            began = start + number * window
            batch = []
            for _ in range(BATCH):
                moment = began + window * rng.random()
                failed = rng.random() < 0.01
                predictions = (
                    []
                    if failed
                    else [Prediction(rng.choice(CLASSES), round(rng.random(), 4)) for _ in range(5)]
                )
                inference = Inference(
                    inference_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                    model=model,
                    device=device,
                    timestamp=moment,
                    task="object-detection",
                    predictions=predictions,
                    item={},
                    inference_time=0.005 + rng.random() / 10,
                    error="failed" if failed else None,
                    metadata={"site": f"site-{rng.randrange(20)}"},
                )
                batch.append(inference)
                micros = int(moment.timestamp() * 1_000_000)
                inference_rows.writerow(
                    [
                        inference.inference_id,
                        model,
                        device,
                        micros,
                        inference.inference_time,
                        int(failed),
                        inference.metadata["site"],
                    ]
                )
                for p in predictions:
                    prediction_rows.writerow(
                        [inference.inference_id, p.class_name, p.confidence, micros]
                    )
            ingest(database, 1, batch, end)
            if number % 20 == 19:  # as the server's aggregator would, every so often
                settle(database, timeout=3600)
    settle(database, timeout=3600)  # the reads then see every inference in the rollups
    database.dispose()
    return key, end


def _analysed(url: str) -> None:
    """On PostgreSQL, what autovacuum does within a minute of a load: `ANALYZE`. Before it
    the planner takes the new partitions for empty, and a filtered first page probes the
    metadata or predictions of every inference of the week (0.5-1.5 s at 30,000 inferences,
    7 ms and 3 ms after)."""
    if url.startswith("sqlite"):
        return
    database = create_database(url)
    with database.write() as conn:
        conn.exec_driver_sql("ANALYZE")
    database.dispose()


def _load_duckdb(folder: Path) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE inferences AS SELECT * FROM read_csv(?, header=false, columns={"
        "'id': 'VARCHAR', 'model': 'VARCHAR', 'device': 'VARCHAR', 'ts': 'BIGINT', "
        "'time': 'DOUBLE', 'failed': 'INTEGER', 'site': 'VARCHAR'})",
        [str(folder / "inferences.csv")],
    )
    conn.execute(
        "CREATE TABLE predictions AS SELECT * FROM read_csv(?, header=false, columns={"
        "'id': 'VARCHAR', 'class': 'VARCHAR', 'confidence': 'DOUBLE', 'ts': 'BIGINT'})",
        [str(folder / "predictions.csv")],
    )
    return conn


def _model_page_by_hand(
    duck: duckdb.DuckDBPyConnection, model: str, lo: int, hi: int, before: int
) -> dict[str, Any]:
    """What the model dashboard shows, computed from the raw rows."""
    joined = (
        "predictions p JOIN inferences i USING (id) WHERE i.model = ? AND p.ts >= ? AND p.ts < ?"
    )

    def rows(text: str, *args: Any) -> list[Any]:
        return duck.execute(text, list(args)).fetchall()

    return {
        "figures": rows(
            "SELECT count(*), avg(time), (SELECT count(*) FROM inferences WHERE model = ? "
            "AND ts >= ? AND ts < ?) FROM inferences WHERE model = ? AND ts >= ? AND ts < ?",
            model,
            before,
            lo,
            model,
            lo,
            hi,
        ),
        "classes": rows(
            f"SELECT class, count(*), avg(confidence) FROM {joined} GROUP BY class", model, lo, hi
        ),
        "hourly": rows(
            f"SELECT p.ts // 3600000000 AS h, count(DISTINCT id), avg(confidence) FROM {joined} "
            "GROUP BY h",
            model,
            lo,
            hi,
        ),
        "confidence bins": rows(
            f"SELECT least(floor(confidence * 100), 99) AS b, count(*) FROM {joined} GROUP BY b",
            model,
            lo,
            hi,
        ),
        "time bins": rows(
            "SELECT floor(log10(time / 0.0001) * 20) + 1 AS b, count(*) FROM inferences "
            "WHERE model = ? AND ts >= ? AND ts < ? GROUP BY b",
            model,
            lo,
            hi,
        ),
    }


def _same_model_page(page: str, by_hand: dict[str, Any]) -> bool:
    shown = re.search(r'data-metric="total_requests" data-current="(\d+)"', page)
    classes = dict(re.findall(r'class="bar-row" data-class="([^"]+)" data-count="(\d+)"', page))
    return (
        shown is not None
        and int(shown.group(1)) == by_hand["figures"][0][0]
        and {name: int(count) for name, count in classes.items()}
        == {row[0]: row[1] for row in by_hand["classes"]}
    )


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _timed(query: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    # One untimed call first: a dashboard read in steady state finds its pages in
    # the cache; the first read after generating 10 million rows does not.
    query()
    durations, answer = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        answer = query()
        durations.append((time.perf_counter() - began) * 1000)
    ordered = sorted(durations)
    return statistics.median(ordered), ordered[max(0, -(-95 * len(ordered) // 100) - 1)], answer


def run(
    size: int | None, repeat: int = REPEAT, databases: list[str] | None = None
) -> dict[tuple[str, str], dict[str, float]]:
    """On SQLite unless told (`--db postgresql`: the same reads of PostgreSQL's weekly
    partitions)."""
    size = size or DEFAULT_SIZE
    found: dict[tuple[str, str], dict[str, float]] = {}
    for kind in databases or ["sqlite"]:
        with tempfile.TemporaryDirectory() as temporary, _databases(kind, Path(temporary)) as new:
            results = _run_on(new("reads"), Path(temporary), kind, size, repeat)
        found.update({(kind, name): figures for name, figures in results.items()})
    return found


def _run_on(
    url: str, folder: Path, kind: str, size: int, repeat: int
) -> dict[str, dict[str, float]]:
    began = time.perf_counter()
    key, end = generate(url, folder, size)
    _analysed(url)
    generated = time.perf_counter() - began
    duck = _load_duckdb(folder)
    week = {"start": (end - timedelta(days=7)).isoformat(), "end": end.isoformat()}
    lo, hi, before = (
        _micros(end - timedelta(days=7)),
        _micros(end),
        _micros(end - timedelta(days=14)),
    )
    headers = {"Authorization": f"Bearer {key}"}
    # No rate limit: the benchmark is one key asking as fast as it can.
    settings = Settings(database_url=url, data_dir=folder, rate_limit_per_second=0)
    results: dict[str, dict[str, float]] = {}
    with TestClient(create_app(settings)) as client:
        tune_garbage_collector()  # as `visionwatch serve` does once the app is made

        def api(path: str, **params: Any) -> Callable[[], Any]:
            return lambda: client.get(path, params={**week, **params}, headers=headers).json()

        def sql(text: str, *args: Any) -> Callable[[], Any]:
            return lambda: duck.execute(text, list(args)).fetchall()

        Read = tuple[Callable[[], Any], Callable[[], Any], Callable[[Any, Any], bool]]
        reads: dict[str, Read] = {
            "stats": (
                api("/api/v1/stats"),
                sql(
                    "SELECT (SELECT count(*) FROM inferences WHERE ts >= ? AND ts < ?), "
                    "(SELECT count(*) FROM inferences WHERE ts >= ? AND ts < ?), "
                    "(SELECT avg(confidence) FROM predictions WHERE ts >= ? AND ts < ?), "
                    "(SELECT median(confidence) FROM predictions WHERE ts >= ? AND ts < ?), "
                    "(SELECT quantile_disc(time, [0.5, 0.95, 0.99]) FROM inferences "
                    "WHERE ts >= ? AND ts < ?)",
                    lo,
                    hi,
                    before,
                    lo,
                    lo,
                    hi,
                    lo,
                    hi,
                    lo,
                    hi,
                ),
                lambda a, d: (
                    a["total_requests"]["current"] == d[0][0]
                    and a["total_requests"]["previous"] == d[0][1]
                ),
            ),
            "classes": (
                api("/api/v1/classes"),
                sql(
                    "SELECT class, count(*), avg(confidence) FROM predictions "
                    "WHERE ts >= ? AND ts < ? GROUP BY class ORDER BY 2 DESC",
                    lo,
                    hi,
                ),
                lambda a, d: (
                    sorted((c["class"], c["count"]) for c in a["classes"])
                    == sorted((row[0], row[1]) for row in d)
                ),
            ),
            "timeseries (7 days, hourly)": (
                api("/api/v1/timeseries", interval="hour"),
                sql(
                    "SELECT ts // 3600000000 AS h, count(*) FROM inferences "
                    "WHERE ts >= ? AND ts < ? GROUP BY h ORDER BY h",
                    lo,
                    hi,
                ),
                lambda a, d: sum(p["value"] for p in a["points"]) == sum(r[1] for r in d),
            ),
            "first page, metadata filter": (
                api("/api/v1/inferences", **{"metadata.site": "site-3"}),
                sql(
                    "SELECT id FROM inferences WHERE site = 'site-3' AND ts >= ? AND ts < ? "
                    "ORDER BY ts DESC LIMIT 50",
                    lo,
                    hi,
                ),
                lambda a, d: [i["inference_id"] for i in a["inferences"]] == [r[0] for r in d],
            ),
            "first page, class filter": (
                api("/api/v1/inferences", **{"class": "class-07"}),
                sql(
                    "SELECT id FROM inferences WHERE id IN (SELECT id FROM predictions "
                    "WHERE class = 'class-07' AND ts >= ? AND ts < ?) "
                    "ORDER BY ts DESC LIMIT 50",
                    lo,
                    hi,
                ),
                lambda a, d: [i["inference_id"] for i in a["inferences"]] == [r[0] for r in d],
            ),
        }
        assert sign_in(client, USER).status_code == 303
        # The model of the last batch: it has traffic in the last 7 days at any size.
        model = f"model-{(max(size // BATCH, 1) - 1) % 10}/1"
        reads["model dashboard page"] = (
            lambda: client.get(f"/models/{model}", params=week, headers=HTML).text,
            lambda: _model_page_by_hand(duck, model, lo, hi, before),
            _same_model_page,
        )
        for name, (ours, theirs, agree) in reads.items():
            p50, p95, answer = _timed(ours, repeat)
            d50, d95, duck_answer = _timed(theirs, repeat)
            if not agree(answer, duck_answer):
                raise AssertionError(f"{name}: visionwatch and DuckDB disagree")
            results[name] = {"p50": p50, "p95": p95, "duckdb_p50": d50, "duckdb_p95": d95}
        fleet = _fleet_pages(client, url, end, week, repeat, devices=min(FLEET_DEVICES, size // 2))
    described = (
        f"reads on {kind}: {size} inferences over {DAYS} days generated in {generated:.0f} s"
    )
    if kind == "sqlite":
        size_bytes = (folder / "reads.db").stat().st_size
        described += (
            f"; SQLite file {size_bytes / 1e6 / (size / 1e6):.0f} MB per million inferences"
        )
    print(described)
    columns = ("p50 ms", "p95 ms", "DuckDB p50", "DuckDB p95", "p95 ratio")
    print(f"{'read':<30}" + "".join(f"{c:>12}" for c in columns))
    for name, r in results.items():
        print(
            f"{name:<30}{r['p50']:>8.1f}{r['p95']:>8.1f}{r['duckdb_p50']:>12.1f}"
            f"{r['duckdb_p95']:>12.1f}{r['p95'] / r['duckdb_p95']:>11.2f}"
        )
    print(
        f"then {min(FLEET_DEVICES, size // 2):,} devices (a third offline) and a model of"
        f" {WIDE_CLASSES:,}"
        f" classes; targets {PAGE_KB} KB and {PAGE_MS} ms p95"
    )
    print(f"{'page':<30}{'KB':>8}{'p50 ms':>10}{'p95 ms':>10}")
    for name, r in fleet.items():
        print(f"{name:<30}{r['kb']:>8.0f}{r['p50']:>10.1f}{r['p95']:>10.1f}")
        results[name] = r
    return results


FLEET_DEVICES = 50_000
WIDE_CLASSES = 1_000
WIDE_INFERENCES = 20_000
PAGE_KB = 100
PAGE_MS = 50


def _fleet_pages(
    client: TestClient, url: str, end: datetime, week: dict[str, str], repeat: int, devices: int
) -> dict[str, dict[str, float]]:
    """The overview, the fleet's first page and a 1,000-class model's page, once the
    workspace has `devices` devices and that model: their size and their time."""
    rng = random.Random(11)
    database = create_database(url)
    rows: list[dict[str, object]] = [
        {
            "name": f"camera-{n:05d}",
            "version": rng.choice(["4.1.0", "4.2.0"]),
            "hostname": f"edge-{n:05d}",
            "last_seen": end - timedelta(hours=rng.uniform(1, 48))
            if n % 3 == 0
            else end - timedelta(seconds=rng.uniform(0, 60)),
        }
        for n in range(devices)
    ]
    with database.write() as conn:
        for at in range(0, len(rows), 5000):
            upsert_devices(conn, database.dialect, 1, rows[at : at + 5000], end)
    wide = [
        Inference(
            inference_id=f"wide-{n}",
            model="wide/1",
            device=f"camera-{rng.randrange(devices):05d}",
            timestamp=end - timedelta(days=rng.uniform(0, 7)),
            task="object-detection",
            predictions=[
                Prediction(f"class-{rng.randrange(WIDE_CLASSES):04d}", round(rng.random(), 4))
            ],
            item={},
            inference_time=0.01,
        )
        for n in range(min(WIDE_INFERENCES, devices * 2 // 5))
    ]
    for at in range(0, len(wide), BATCH):
        ingest(database, 1, wide[at : at + BATCH], end)
    settle(database, timeout=3600)
    database.dispose()
    _analysed(url)
    pages = {
        "overview page": "/",
        "devices page (first 100)": "/devices",
        "1,000-class model page": "/models/wide/1",
    }
    found = {}
    for name, path in pages.items():

        def page(path: str = path) -> str:
            text: str = client.get(path, params=week, headers=HTML).text
            return text

        p50, p95, text = _timed(page, repeat)
        assert "<table" in text, name
        found[name] = {"kb": len(text.encode()) / 1024, "p50": p50, "p95": p95}
    return found
