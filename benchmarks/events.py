"""Vision Events: committed events per second through `visionwatch serve`, against the
floor, and what each query filter costs beside a use case's unfiltered first page.

The traffic: batches of 100 events (`POST /vision-events/batch`) of one use case, from 20
devices and 5 workflows mixed in every batch: quality_check, inventory_count and
safety_alert events with their eventData, one image each with 3 detections of 10 classes,
3 custom metadata fields (a string, a number, a boolean), timestamps over the last day
(backfilled, out of order); and a fifth of the events operator_feedback, each naming an
earlier event (most in a later batch than the event they judge, some in the same batch,
after it or before it, some in an earlier batch).

A loader posts pre-serialised bodies over loopback with two connections (the first batch
alone: it makes the use case); the rate counts events the server acknowledged (committed).
The floor, in the same run: the same events
inserted into the `vision_events` and `event_metadata` tables as their first version laid
them out, with plain `executemany` (SQLite, WAL, synchronous=FULL) or `COPY`
(PostgreSQL), one transaction per batch, with no HTTP, validation or derived facts (the
event's data fields, its detected classes, operators' verdicts).

Then, on the same server (on PostgreSQL once the tables are analysed, as autovacuum does
within a minute), each query (`POST /vision-events/query`, and the use case's realised
precision by class) is called once untimed and timed `repeat` times, one at a time; its
answer (its `total` and first page, the precision's groups) is checked against what was
sent.
"""

import random
import sqlite3
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from tests.support.server import serving_process
from tests.support.workspaces import new_workspace

from benchmarks.ingest import _databases, _migrated, _percentile

DEFAULT_SIZE = 20_000
BATCH = 100  # the API's most a batch
FEEDBACK_SHARE = 0.2
REPEAT = 50
PAGE = 50  # the query's default limit
USE_CASE = "line-inspection"
CLASSES = [f"class-{i}" for i in range(10)]
DEVICES = [f"camera-{i}" for i in range(20)]
WORKFLOWS = [f"workflow-{i}" for i in range(5)]
VERDICTS = ("correct", "incorrect", "inconclusive")
DATABASES = ("sqlite", "postgresql")
DAY_MICROS = 86_400 * 1_000_000
HOUR_MICROS = 3_600 * 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Event = dict[str, Any]


@dataclass
class Workload:
    """The events in batches as posted, their bodies, and what a reading of them needs:
    each event's time, classes (highest confidence) and the verdict it was given."""

    batches: list[list[Event]]
    bodies: list[bytes]
    micros: dict[str, int]  # event id -> its timestamp
    classes: dict[str, dict[str, float]]  # event id -> class -> highest confidence
    verdicts: dict[str, str]  # judged event id -> its verdict
    placement: Counter[str] = field(default_factory=Counter)  # where feedback arrived

    @property
    def count(self) -> int:
        return sum(len(batch) for batch in self.batches)

    @property
    def events(self) -> Iterator[Event]:
        for batch in self.batches:
            yield from batch


def make_workload(size: int, seed: int = 1) -> Workload:
    rng = random.Random(seed)
    now = _micros(datetime.now(UTC))
    used: set[int] = set()

    def moment(lo: int, hi: int) -> int:  # a timestamp no other event has: pages are exact
        while True:
            at = rng.randrange(lo, hi)
            if at not in used:
                used.add(at)
                return at

    feedback_count = round(size * FEEDBACK_SHARE)
    primaries = [
        _event(rng, n, moment(now - DAY_MICROS, now)) for n in range(size - feedback_count)
    ]
    judged = rng.sample(range(len(primaries)), min(feedback_count, len(primaries)))
    # Each event's place in the stream: primaries in order; a feedback event mostly a few
    # batches after the event it judges, some right after or right before it (the same
    # batch, mostly), some a few batches before it.
    keyed: list[tuple[float, Event]] = [(float(n), event) for n, event in enumerate(primaries)]
    verdicts: dict[str, str] = {}
    for n in judged:
        target = primaries[n]
        draw = rng.random()
        if draw < 0.55:
            key = n + rng.uniform(BATCH, 5 * BATCH)
        elif draw < 0.8:
            key = n + 0.5
        elif draw < 0.9:
            key = n - 0.5
        else:
            key = n - rng.uniform(BATCH, 5 * BATCH)
        verdict = rng.choice(VERDICTS)
        verdicts[target["eventId"]] = verdict
        judged_at = _micros_of(target)
        given = moment(judged_at + 1, max(min(judged_at + HOUR_MICROS, now), judged_at + 2))
        keyed.append((key, _feedback(rng, target["eventId"], verdict, given)))
    keyed.sort(key=lambda pair: pair[0])
    stream = [event for _, event in keyed]
    batches = [stream[i : i + BATCH] for i in range(0, len(stream), BATCH)]
    workload = Workload(
        batches=batches,
        bodies=[orjson.dumps({"events": batch}) for batch in batches],
        micros={event["eventId"]: _micros_of(event) for event in stream},
        classes={event["eventId"]: _classes(event) for event in stream},
        verdicts=verdicts,
    )
    workload.placement = _placement(batches)
    return workload


def _event(rng: random.Random, number: int, at: int) -> Event:
    kind = rng.choice(("quality_check", "inventory_count", "safety_alert"))
    if kind == "quality_check":
        data: dict[str, Any] = {"result": rng.choice(("pass", "fail"))}
    elif kind == "inventory_count":
        data = {"itemCount": rng.randrange(200), "itemType": rng.choice(("box", "pallet", "crate"))}
    else:
        data = {
            "alertType": rng.choice(("no_helmet", "no_vest", "restricted_zone")),
            "severity": rng.choice(("low", "medium", "high")),
        }
    return {
        "eventId": str(uuid.UUID(int=rng.getrandbits(128))),
        "eventType": kind,
        "useCaseId": USE_CASE,
        "timestamp": _iso(at),
        "deviceId": rng.choice(DEVICES),
        "workflowId": rng.choice(WORKFLOWS),
        "eventData": data,
        "images": [
            {
                "sourceId": f"s-{number}",
                "objectDetections": [
                    {
                        "x": 100.0,
                        "y": 80.0,
                        "width": 20.0,
                        "height": 30.0,
                        "class": rng.choice(CLASSES),
                        "confidence": round(rng.random(), 4),
                    }
                    for _ in range(3)
                ],
            }
        ],
        "customMetadata": {
            "line": f"line-{rng.randrange(5)}",
            "temperature": round(rng.uniform(15, 45), 1),
            "reviewed": rng.random() < 0.5,
        },
    }


def _feedback(rng: random.Random, related: str, verdict: str, at: int) -> Event:
    return {
        "eventId": str(uuid.UUID(int=rng.getrandbits(128))),
        "eventType": "operator_feedback",
        "useCaseId": USE_CASE,
        "timestamp": _iso(at),
        "eventData": {"relatedEventId": related, "feedback": verdict},
    }


def _iso(micros: int) -> str:
    return (EPOCH + timedelta(microseconds=micros)).isoformat()


def _micros(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _micros_of(event: Event) -> int:
    return _micros(datetime.fromisoformat(event["timestamp"]))


def _classes(event: Event) -> dict[str, float]:
    best: dict[str, float] = {}
    for image in event.get("images", ()):
        for detection in image["objectDetections"]:
            name, confidence = detection["class"], detection["confidence"]
            best[name] = max(best.get(name, confidence), confidence)
    return best


def _top_class(event: Event) -> str | None:
    """The class its images predicted most often, ties to the first name."""
    counts = Counter(d["class"] for image in event["images"] for d in image["objectDetections"])
    return min(counts, key=lambda name: (-counts[name], name)) if counts else None


def _placement(batches: list[list[Event]]) -> Counter[str]:
    """Where each feedback event arrived, beside the event it judges."""
    where = {
        event["eventId"]: (number, index)
        for number, batch in enumerate(batches)
        for index, event in enumerate(batch)
    }
    placement: Counter[str] = Counter()
    for event in (e for batch in batches for e in batch):
        if event["eventType"] != "operator_feedback":
            continue
        (fb, fi), (jb, ji) = where[event["eventId"]], where[event["eventData"]["relatedEventId"]]
        if fb != jb:
            placement["a later batch" if fb > jb else "an earlier batch"] += 1
        else:
            placement["the same batch, after" if fi > ji else "the same batch, before"] += 1
    return placement


# -- writes through the server ----------------------------------------------------------


@dataclass
class Loaded:
    accepted: int = 0
    elapsed: float = 0.0


def _load(base: str, key: str, workload: Workload) -> Loaded:
    loaded = Loaded()
    lock = threading.Lock()
    pending = iter(workload.bodies)
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}

    def post_all() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
            while True:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                response = http.post("/vision-events/batch", content=body)
                response.raise_for_status()
                with lock:
                    loaded.accepted += int(response.json()["created"])

    began = time.perf_counter()
    # The first batch alone: it makes the use case. Two first writes naming a new use case
    # at once both insert it, and on PostgreSQL the second fails (a 500) on its unique key.
    with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
        response = http.post("/vision-events/batch", content=next(pending))
        response.raise_for_status()
        loaded.accepted += int(response.json()["created"])
    loaders = [threading.Thread(target=post_all) for _ in range(2)]
    for loader in loaders:
        loader.start()
    for loader in loaders:
        loader.join()
    loaded.elapsed = time.perf_counter() - began
    return loaded


# -- queries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A query's body (beyond the use case), and which events it should match."""

    name: str
    body: dict[str, Any]
    matches: Callable[[Event], bool]


def _queries(workload: Workload) -> list[Query]:
    classes, verdicts = workload.classes, workload.verdicts
    feedback = "operator_feedback"

    def confident(event: Event) -> bool:
        return classes[event["eventId"]].get("class-3", -1.0) >= 0.8

    def metadata(event: Event) -> bool:
        given = event.get("customMetadata", {})
        return (
            given.get("line") == "line-2"
            and given.get("temperature", -1.0) >= 30
            and given.get("reviewed") is True
        )

    return [
        Query("first page", {}, lambda e: True),
        Query(
            "detectionClass",
            {"detectionClass": "class-3"},
            lambda e: "class-3" in classes[e["eventId"]],
        ),
        Query(
            "detectionClass, minConfidence 0.8",
            {"detectionClass": "class-3", "minConfidence": 0.8},
            confident,
        ),
        Query(
            "feedbackStatus none",
            {"feedbackStatus": "none"},
            lambda e: e["eventType"] != feedback and e["eventId"] not in verdicts,
        ),
        Query(
            "feedbackStatus incorrect",
            {"feedbackStatus": "incorrect"},
            lambda e: verdicts.get(e["eventId"]) == "incorrect",
        ),
        Query(
            "eventFieldFilters severity",
            {"eventFieldFilters": [{"field": "severity", "operator": "eq", "value": "high"}]},
            lambda e: e.get("eventData", {}).get("severity") == "high",
        ),
        Query(
            "customMetadataFilters (3)",
            {
                "customMetadataFilters": [
                    {"field": "line", "operator": "eq", "value": "line-2"},
                    {"field": "temperature", "operator": "gte", "value": 30},
                    {"field": "reviewed", "operator": "eq", "value": True},
                ]
            },
            metadata,
        ),
    ]


PRECISION = "precision by class"


def _expected_page(workload: Workload, query: Query) -> tuple[int, list[str]]:
    """How many events the query matches, and the ids of its first page (newest first)."""
    found = [event["eventId"] for event in workload.events if query.matches(event)]
    found.sort(key=lambda event_id: workload.micros[event_id], reverse=True)
    return len(found), found[:PAGE]


def _expected_precision(workload: Workload) -> dict[str | None, tuple[int, int, int]]:
    """Verdicts by the judged event's most predicted class: (correct, incorrect,
    inconclusive)."""
    counts: dict[str | None, Counter[str]] = {}
    for event in workload.events:
        verdict = workload.verdicts.get(event["eventId"])
        if verdict is not None:
            counts.setdefault(_top_class(event), Counter())[verdict] += 1
    return {name: (c["correct"], c["incorrect"], c["inconclusive"]) for name, c in counts.items()}


def _timed(call: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """p50 and p95 in ms over `repeat` calls after one untimed call, and the last answer."""
    call()
    durations, answer = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        answer = call()
        durations.append((time.perf_counter() - began) * 1000)
    return _percentile(durations, 50), _percentile(durations, 95), answer


def _ask(base: str, key: str, workload: Workload, repeat: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
        for query in _queries(workload):
            body = orjson.dumps({"useCaseId": USE_CASE, **query.body})

            def call(body: bytes = body) -> Any:
                response = http.post(
                    "/vision-events/query",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                response.raise_for_status()
                return response.json()

            p50, p95, answer = _timed(call, repeat)
            total, page = _expected_page(workload, query)
            shown = [event["eventId"] for event in answer["events"]]
            if answer["total"] != total or shown != page:
                raise AssertionError(
                    f"{query.name}: total {answer['total']} (expected {total}), first page "
                    f"{'as expected' if shown == page else 'differs'}"
                )
            results[query.name] = {"p50": p50, "p95": p95, "total": total}

        def precision() -> Any:
            params = {"use_case": USE_CASE, "group": "class"}
            response = http.get("/api/v1/precision", params=params)
            response.raise_for_status()
            return response.json()

        p50, p95, answer = _timed(precision, repeat)
        by_class = {
            group["key"]: tuple(group[v] for v in VERDICTS) for group in answer.get("groups", [])
        }
        expected = _expected_precision(workload)
        # Every verdict is counted once; one left under another class (or none) is counted
        # and shown, not refused: on PostgreSQL a verdict written while the event it judges
        # is being written (concurrent batches) never learns the event's class.
        for n in range(len(VERDICTS)):
            counted = sum(counts[n] for counts in by_class.values())
            if counted != sum(counts[n] for counts in expected.values()):
                raise AssertionError(f"{PRECISION}: {by_class} != {expected}")
        misfiled = sum(
            max(0, counts[n] - expected.get(name, (0, 0, 0))[n])
            for name, counts in by_class.items()
            for n in range(len(VERDICTS))
        )
        results[PRECISION] = {
            "p50": p50,
            "p95": p95,
            "total": len(workload.verdicts),
            "misfiled": misfiled,
        }
    return results


@dataclass
class Served:
    rate: float
    queries: dict[str, dict[str, float]]


def serve(database_url: str, workload: Workload, repeat: int) -> Served:
    with tempfile.TemporaryDirectory() as data:
        env = {
            "VISIONWATCH_DATABASE_URL": database_url,
            "VISIONWATCH_DATA_DIR": data,
            "VISIONWATCH_RATE_LIMIT_PER_SECOND": "0",  # many senders share one key here
        }
        key = new_workspace(env, "bench")
        with serving_process(env) as (base, _):
            loaded = _load(base, key, workload)
            if loaded.accepted != workload.count:
                raise AssertionError(f"{loaded.accepted} of {workload.count} events stored")
            if not database_url.startswith("sqlite"):
                # What autovacuum does within a minute of such a load: before it, the planner
                # takes the new tables for empty, and the feedback filters' joins go quadratic.
                with psycopg.connect(database_url, autocommit=True) as conn:
                    conn.execute("ANALYZE")
            queries = _ask(base, key, workload, repeat)
    return Served(loaded.accepted / loaded.elapsed, queries)


# -- the floor --------------------------------------------------------------------------

EVENT_COLUMNS = (
    "id, workspace_id, use_case_id, event_id, event_type, ts, received_at, device, stream, "
    "workflow, event"
)
METADATA_COLUMNS = "workspace_id, event_pk, field, kind, text_value, number_value"
# The tables as the first version of Vision Events laid them out (migration 0009), without
# foreign keys: the floor stays the same yardstick whatever the server's schema becomes.
FLOOR_SCHEMA = """
CREATE TABLE vision_events (
    id {id_type} PRIMARY KEY, workspace_id INTEGER NOT NULL, use_case_id INTEGER NOT NULL,
    event_id VARCHAR(256) NOT NULL, event_type VARCHAR(64) NOT NULL, ts BIGINT NOT NULL,
    received_at BIGINT NOT NULL, device VARCHAR(256), stream VARCHAR(256),
    workflow VARCHAR(256), event TEXT NOT NULL, UNIQUE (workspace_id, event_id));
CREATE INDEX ix_vision_events_page ON vision_events (workspace_id, use_case_id, ts, id);
CREATE TABLE event_metadata (
    workspace_id INTEGER NOT NULL, event_pk BIGINT NOT NULL, field VARCHAR(100) NOT NULL,
    kind VARCHAR(8) NOT NULL, text_value TEXT, number_value FLOAT,
    PRIMARY KEY (event_pk, field));
"""


def _rows(workload: Workload) -> list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Per batch: the event and metadata rows, with ids assigned up front."""
    pk = 0
    received = _micros(datetime.now(UTC))
    batches = []
    for batch in workload.batches:
        event_rows, metadata_rows = [], []
        for event in batch:
            pk += 1
            event_rows.append(
                (
                    pk,
                    1,
                    1,
                    event["eventId"],
                    event["eventType"],
                    workload.micros[event["eventId"]],
                    received,
                    event.get("deviceId"),
                    event.get("streamId"),
                    event.get("workflowId"),
                    orjson.dumps(event).decode(),
                )
            )
            for name, value in event.get("customMetadata", {}).items():
                metadata_rows.append((1, pk, name, *_typed(value)))
        batches.append((event_rows, metadata_rows))
    return batches


def _typed(value: str | float | bool) -> tuple[str, str, float | None]:
    if isinstance(value, bool):
        return "boolean", "true" if value else "false", None
    if isinstance(value, int | float):
        return "number", repr(float(value)), float(value)
    return "string", value, None


def floor_sqlite(path: Path, workload: Workload) -> float:
    rows = _rows(workload)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # as the server: committed means on disk
    conn.executescript(FLOOR_SCHEMA.format(id_type="INTEGER"))
    began = time.perf_counter()
    for event_rows, metadata_rows in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO vision_events ({EVENT_COLUMNS}) VALUES ({', '.join('?' * 11)})",
            event_rows,
        )
        conn.executemany(
            f"INSERT INTO event_metadata ({METADATA_COLUMNS}) VALUES ({', '.join('?' * 6)})",
            metadata_rows,
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    return workload.count / elapsed


def floor_postgres(url: str, workload: Workload) -> float:
    rows = _rows(workload)
    with psycopg.connect(url) as conn:
        with conn.transaction():
            conn.execute(FLOOR_SCHEMA.format(id_type="BIGINT"))
        began = time.perf_counter()
        for event_rows, metadata_rows in rows:
            with conn.transaction(), conn.cursor() as cursor:
                for table, columns, values in (
                    ("vision_events", EVENT_COLUMNS, event_rows),
                    ("event_metadata", METADATA_COLUMNS, metadata_rows),
                ):
                    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in values:
                            copy.write_row(row)
        elapsed = time.perf_counter() - began
    return workload.count / elapsed


# -- the run ----------------------------------------------------------------------------


def run(
    size: int | None, databases: list[str] | None = None, repeat: int = REPEAT
) -> dict[str, dict[str, Any]]:
    size = size or DEFAULT_SIZE
    workload = make_workload(size)
    feedback = sum(workload.placement.values())
    where = ", ".join(f"{n} in {place}" for place, n in sorted(workload.placement.items()))
    print(
        f"events: {workload.count} in batches of {BATCH} (one image of 3 detections, 3 metadata "
        f"fields each), 2 connections; {feedback} operator_feedback: {where}"
    )
    results: dict[str, dict[str, Any]] = {}
    for kind in databases or DATABASES:
        with tempfile.TemporaryDirectory() as temporary, _databases(kind, Path(temporary)) as new:
            served = serve(_migrated(new("serve_events")), workload, repeat)
            floor_url = new("floor_events")
            if kind == "sqlite":
                floor = floor_sqlite(Path(floor_url.removeprefix("sqlite:///")), workload)
            else:
                floor = floor_postgres(floor_url, workload)
        results[kind] = {
            "served": served.rate,
            "floor": floor,
            "ratio": served.rate / floor,
            "queries": served.queries,
        }
        _print(kind, results[kind], repeat)
    return results


def _print(kind: str, figures: dict[str, Any], repeat: int) -> None:
    print(
        f"{kind:<12}writes: served {figures['served']:,.0f} /s, floor {figures['floor']:,.0f} /s,"
        f" ratio {figures['ratio']:.2f}"
    )
    queries = figures["queries"]
    first = queries["first page"]
    columns = ("p50 ms", "p95 ms", "total", "p50 ratio", "p95 ratio")
    print(f"{kind:<12}{f'query ({repeat} calls each)':<36}" + "".join(f"{c:>11}" for c in columns))
    for name, q in queries.items():
        print(
            f"{kind:<12}{name:<36}{q['p50']:>11.1f}{q['p95']:>11.1f}{q['total']:>11.0f}"
            f"{q['p50'] / first['p50']:>11.2f}{q['p95'] / first['p95']:>11.2f}",
            flush=True,
        )
    misfiled = queries[PRECISION]["misfiled"]
    if misfiled:
        print(
            f"{kind:<12}{PRECISION}: {misfiled:.0f} of {queries[PRECISION]['total']:.0f} verdicts "
            "not under the class of the event they judge",
            flush=True,
        )
