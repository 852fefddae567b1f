"""The aggregator's rollups equal an independent computation over the inferences stored,
whatever interrupts it: a run rolled back (as a crash would), two runs at once, ids re-sent,
late data for past hours.

The independent computation is `rollups.compute_deltas`, pure Python over the parsed
inferences (the way rollups were written before the aggregator), compared row by row with
every rollup table. A real server killed with SIGKILL between its commits and their
aggregation, then restarted, is held to the same account.
"""

import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.support.server import serving_process
from tests.support.workspaces import auth, ensure_workspace, new_workspace
from visionwatch.aggregator import Aggregator, settle
from visionwatch.db.engine import Database, create_database
from visionwatch.db.schema import (
    CLASS_SUMS,
    ROLLUP_SUMS,
    devices,
    labels,
    models,
    rollup_queue,
    rollups,
    workspaces,
)
from visionwatch.db.types import to_micros
from visionwatch.items import Inference, parse_batch
from visionwatch.packed.rollup import NO_CLASS as NO_CLASS_KEY
from visionwatch.packed.rollup import unpack_bins, unpack_classes
from visionwatch.rollups import (
    ALL_DEVICES,
    ALL_MODELS,
    ALL_MODELS_RESOLUTIONS,
    NO_CLASS,
    Deltas,
    compute_deltas,
)
from visionwatch.store.aggregate import aggregate_pending
from visionwatch.store.floors import Floors, read_floors
from visionwatch.store.ingest import ingest
from visionwatch.timeutil import utcnow

# Now, to the hour: the minutes kept (14 days of every device, 6 hours per device) cover
# part of the traffic, so that both sides of each floor are checked.
NOW = utcnow().replace(minute=0, second=0, microsecond=0)


def items(rng: random.Random, count: int, spread: timedelta) -> list[dict[str, Any]]:
    """Mixed traffic: many devices and models, errors, empty and untimed inferences."""
    made = []
    for _ in range(count):
        item: dict[str, Any] = {
            "inference_id": f"i{rng.getrandbits(64):x}",
            "model_id": f"m{rng.randrange(4)}/1",
            "timestamp": (NOW - spread * rng.random()).isoformat(),
            "predictions": [
                {
                    "class": rng.choice(["car", "bus", "van"]),
                    "confidence": rng.choice([0.0, 1.0, 0.29, 0.57, round(rng.random(), 4)]),
                    "x": 1,
                    "y": 1,
                    "width": 1,
                    "height": 1,
                }
                for _ in range(rng.choice([0, 1, 3, 5]))
            ],
        }
        if rng.random() < 0.8:
            item["device_id"] = f"cam-{rng.randrange(6)}"
        if rng.random() < 0.9:
            item["inference_time"] = rng.choice([0.00005, 0.0001, 0.01, 0.5, 200.0, rng.random()])
        if rng.random() < 0.05:
            item["predictions"] = []
            item["error"] = "model failed"
        made.append(item)
    return made


def parsed(batch: list[dict[str, Any]]) -> list[Inference]:
    return parse_batch(
        {"inferences": batch}, now=NOW, max_items=10_000, max_clock_skew=timedelta(days=1)
    )


def store(database: Database, workspace_id: int, batches: list[list[dict[str, Any]]]) -> None:
    for batch in batches:
        ingest(database, workspace_id, parsed(batch), NOW)


def expected(database: Database, sent: list[dict[str, Any]]) -> Deltas:
    """The deltas of every distinct inference sent (the first of a repeated id wins)."""
    first: dict[str, dict[str, Any]] = {}
    for item in sent:
        first.setdefault(item["inference_id"], item)
    with database.read() as conn:
        model_keys = dict(conn.execute(select(models.c.name, models.c.id)).all())
        device_keys = dict(conn.execute(select(devices.c.name, devices.c.id)).all())
    return compute_deltas(
        (i, model_keys[i.model], device_keys[i.device] if i.device else None)
        for i in parsed(list(first.values()))
    )


def assert_rollups(database: Database, workspace_id: int, deltas: Deltas) -> None:
    """Every rollup row, its sums, histograms and class figures, against the independent
    deltas: every grain kept (minutes from their floors on), and nothing else."""
    stored: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    stored_bins: dict[tuple[Any, ...], dict[str, dict[int, int]]] = {}
    with database.read() as conn:
        floors = read_floors(conn)
        assert floors is not None
        names = dict(
            conn.execute(
                select(labels.c.id, labels.c.name).where(labels.c.workspace_id == workspace_id)
            ).all()
        )
        names[NO_CLASS_KEY] = NO_CLASS
        for resolution, table in rollups.items():
            for row in conn.execute(select(table).where(table.c.workspace_id == workspace_id)):
                key = (resolution, row.bucket, row.model_id, row.device_id)
                if resolution == "minute" and not kept(floors, row.bucket, row.device_id):
                    continue  # under its floor: read from the rows, left to retention
                stored[key] = tuple(getattr(row, s) for s in ROLLUP_SUMS)
                stored_bins[key] = {
                    "confidence": dict(unpack_bins(row.confidence_bins)),
                    "time": dict(unpack_bins(row.time_bins)),
                }
                blobs = unpack_classes(row.classes)
                for class_id, figures in blobs.classes.items():
                    stored[(*key, names[class_id])] = tuple(getattr(figures, s) for s in CLASS_SUMS)
                for (class_id, index), count in blobs.class_bins.items():
                    kinds = stored_bins.setdefault((*key, names[class_id]), {"confidence": {}})
                    kinds["confidence"][index] = count
    wanted: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    wanted_bins: dict[tuple[Any, ...], dict[str, dict[int, int]]] = {}
    for key, delta in deltas.rollups.items():
        if key[0] == "minute" and not kept(floors, key[1], key[3]):
            continue
        wanted[key] = tuple(getattr(delta, s) for s in ROLLUP_SUMS)
        wanted_bins[key] = {"confidence": _bins(delta.confidence_bins)}
        wanted_bins[key]["time"] = _bins(delta.time_bins)
    # Every model of every device (by the hour and day): the models' rows added up.
    for (resolution, bucket, _, device), delta in deltas.rollups.items():
        if device == ALL_DEVICES and resolution in ALL_MODELS_RESOLUTIONS:
            key = (resolution, bucket, ALL_MODELS, ALL_DEVICES)
            sums = wanted.get(key, (0,) * len(ROLLUP_SUMS))
            wanted[key] = tuple(
                a + getattr(delta, s) for a, s in zip(sums, ROLLUP_SUMS, strict=True)
            )
            kinds = wanted_bins.setdefault(key, {"confidence": {}, "time": {}})
            for kind, counts in (("confidence", delta.confidence_bins), ("time", delta.time_bins)):
                for index, count in counts.items():
                    kinds[kind][index] = kinds[kind].get(index, 0) + count
    for class_key, class_delta in deltas.classes.items():
        if class_key[0] == "minute" and not kept(floors, class_key[1], class_key[3]):
            continue
        wanted[class_key] = tuple(getattr(class_delta, s) for s in CLASS_SUMS)
        wanted_bins[class_key] = {"confidence": _bins(class_delta.confidence_bins)}
    assert sorted(stored, key=repr) == sorted(wanted, key=repr)
    for key, values in wanted.items():
        assert stored[key] == pytest.approx(values, rel=1e-9, abs=1e-9), key
    # Sparse: a stored bin is never empty.
    wanted_bins = {key: {k: b for k, b in kinds.items() if b} for key, kinds in wanted_bins.items()}
    stored_bins = {key: {k: b for k, b in kinds.items() if b} for key, kinds in stored_bins.items()}
    assert {k: v for k, v in stored_bins.items() if v} == {
        k: v for k, v in wanted_bins.items() if v
    }


def kept(floors: Floors, bucket: datetime, device: int) -> bool:
    """Whether a minute's rollup is kept: every device's from one floor, a device's from
    the other."""
    floor = floors.minutes if device == ALL_DEVICES else floors.device_minutes
    return to_micros(bucket) >= floor


def _bins(counts: dict[int, int]) -> dict[int, int]:
    return {index: count for index, count in counts.items() if count}


def queued(database: Database) -> int:
    with database.read() as conn:
        return len(conn.execute(select(rollup_queue.c.id)).all())


def workspace(database: Database) -> int:
    return ensure_workspace(database, f"ws-{random.randrange(10**9)}").id


def test_rollups_equal_an_independent_computation(database: Database) -> None:
    rng = random.Random(5)
    ws = workspace(database)
    sent = items(rng, 400, timedelta(days=3))
    # Re-sent ids, and late data for past hours after the first ones were aggregated.
    store(database, ws, [sent[:150], sent[100:250]])
    settle(database)
    late = items(rng, 100, timedelta(days=9))
    store(database, ws, [sent[200:], late, sent[:50]])
    assert queued(database) > 0
    settle(database)
    assert queued(database) == 0
    assert_rollups(database, ws, expected(database, sent + late))


class Crash(Exception):
    pass


def run_and_crash(database: Database) -> None:
    with database.write() as conn:
        assert aggregate_pending(conn, database.dialect) == 2
        raise Crash


def test_a_run_undone_counts_nothing_and_the_next_counts_once(database: Database) -> None:
    rng = random.Random(6)
    ws = workspace(database)
    sent = items(rng, 200, timedelta(hours=5))
    store(database, ws, [sent[:100], sent[100:]])

    # The run's statements all go through, then the process "dies" before the commit.
    with pytest.raises(Crash):
        run_and_crash(database)
    assert queued(database) == 2
    with database.read() as conn:
        assert conn.execute(select(rollups["day"])).first() is None
    settle(database)
    assert_rollups(database, ws, expected(database, sent))


def test_runs_at_once_count_each_batch_once(database: Database) -> None:
    """Several aggregators at once (threads here; replicas on PostgreSQL take the same job
    lock and SKIP LOCKED queue rows), one batch each run, racing over forty batches."""
    rng = random.Random(7)
    ws = workspace(database)
    batches = [items(rng, 25, timedelta(hours=2)) for _ in range(40)]
    store(database, ws, batches)
    aggregators = [Aggregator(database, max_ranges=1) for _ in range(3)]
    threads = [threading.Thread(target=a.drain) for a in aggregators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert queued(database) == 0
    assert_rollups(database, ws, expected(database, [i for b in batches for i in b]))


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_server_killed_before_aggregating_counts_everything_once_after_restart(
    tmp_path: Path, database_url: str
) -> None:
    env = {
        "VISIONWATCH_DATA_DIR": str(tmp_path),
        "VISIONWATCH_DATABASE_URL": database_url,
        # After a run the aggregator waits this long: the batches of that time stay queued.
        "VISIONWATCH_AGGREGATE_SPACING_SECONDS": "10",
    }
    key = new_workspace(env, "killed")
    headers = auth(key)
    database = create_database(database_url)
    rng = random.Random(8)
    first = items(rng, 60, timedelta(days=2))
    later = [items(rng, 80, timedelta(days=2)) for _ in range(4)]
    later[2] += later[0][:10]  # ids sent again: stored and counted once
    try:
        with serving_process(env) as (base, process):

            def post(batch: list[dict[str, Any]]) -> None:
                response = httpx.post(
                    f"{base}/api/v1/inferences", json={"inferences": batch}, headers=headers
                )
                assert response.status_code == 200, response.text

            post(first)
            wait_until(lambda: queued(database) == 0, "first run")  # then it waits 10 s
            for batch in later:
                post(batch)
            assert queued(database) == len(later)  # acknowledged, committed, not aggregated
            process.kill()
            process.wait()
        assert queued(database) == len(later)
        with serving_process(env):
            wait_until(lambda: queued(database) == 0, "aggregation after the restart")
        with database.read() as conn:
            (space,) = conn.execute(select(workspaces.c.id)).scalars().all()
        sent = first + [item for batch in later for item in batch]
        assert_rollups(database, space, expected(database, sent))
    finally:
        database.dispose()
