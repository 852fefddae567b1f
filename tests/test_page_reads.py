"""The pages' lean reads give what the general ones give: percentiles per interval, class
totals, a fleet page's counts and its devices' requests."""

import math
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.support.workspaces import ensure_workspace
from visionwatch.aggregator import settle
from visionwatch.db.engine import Database
from visionwatch.db.schema import devices, inferences
from visionwatch.histograms import percentile_bin, percentile_bins, time_bin
from visionwatch.items import Inference, Prediction
from visionwatch.packed.body import unpack_body
from visionwatch.rollups import ALL_DEVICES
from visionwatch.store import devices as device_store
from visionwatch.store import stats as stats_store
from visionwatch.store.devices import DeviceQuery
from visionwatch.store.ingest import ingest
from visionwatch.store.rollup_read import (
    Scope,
    class_predictions,
    sum_classes,
    time_percentiles,
)
from visionwatch.store.stats import Filters, Period
from visionwatch.timeutil import floor_to

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PERCENTS = (50, 95, 99)
# Aligned and not: whole days and hours, and edges of minutes (a day chart of such a period
# adds minute, hour and day buckets into one interval).
PERIODS = [
    (NOW - timedelta(days=3), NOW),
    (NOW - timedelta(days=2, hours=5, minutes=17), NOW - timedelta(minutes=43)),
    (NOW - timedelta(hours=3, minutes=10), NOW - timedelta(minutes=5)),
]
INTERVALS = [timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)]


@given(
    st.dictionaries(st.integers(0, 121), st.integers(0, 50), max_size=30),
    st.lists(st.integers(1, 100), min_size=1, max_size=4),
)
def test_percentile_bins_are_the_nearest_ranks(counts: dict[int, int], percents: list[int]) -> None:
    """Against the definition: the value at rank ceil(p/100 * n) of the sorted values."""
    values = sorted(index for index, count in counts.items() for _ in range(count))
    found = percentile_bins(counts, tuple(percents))
    for percent in percents:
        expected = values[max(1, math.ceil(percent * len(values) / 100)) - 1] if values else None
        assert found.get(percent) == expected
        assert percentile_bin(counts, percent) == expected


@pytest.fixture
def filled(database: Database) -> Database:
    """Three days of inferences of three models on four devices, some failed or untimed."""
    workspace = ensure_workspace(database, "acme").id
    rng = random.Random(5)
    batch = [
        Inference(
            inference_id=f"i-{n}",
            model=f"model-{rng.randrange(3)}/1",
            device=f"device-{rng.randrange(4)}",
            timestamp=NOW - timedelta(minutes=rng.uniform(0, 3 * 1440)),
            task="object-detection",
            predictions=[
                Prediction(f"class-{rng.randrange(12)}", round(rng.random(), 4))
                for _ in range(rng.randrange(3))
            ],
            item={},
            inference_time=None if n % 7 == 0 else rng.lognormvariate(-3, 1),
            error="failed" if n % 11 == 0 else None,
        )
        for n in range(1500)
    ]
    for at in range(0, len(batch), 500):
        ingest(database, workspace, batch[at : at + 500], NOW)
    settle(database)
    return database


def _scopes(database: Database) -> list[Scope]:
    with database.read() as conn:
        model = stats_store.resolve_scope(conn, 1, Filters(model="model-1/1"))
        device = stats_store.resolve_scope(conn, 1, Filters(device="device-2"))
    assert model is not None
    assert device is not None
    return [Scope(1), model, device, Scope(1, model.model_id, device.device_id)]


@pytest.mark.parametrize("interval", INTERVALS, ids=["minute", "hour", "day"])
def test_percentiles_per_interval_are_those_of_the_stored_times(
    filled: Database, interval: timedelta
) -> None:
    for scope in _scopes(filled):
        for start, end in PERIODS:
            found, expected = _percentiles_both_ways(filled, scope, start, end, interval)
            assert found == expected, (scope, start, end)


def _percentiles_both_ways(
    database: Database, scope: Scope, start: datetime, end: datetime, interval: timedelta
) -> tuple[dict[datetime, dict[int, int]], dict[datetime, dict[int, int | None]]]:
    """The chart's percentiles per interval, and the independent answer: the nearest ranks
    of each interval's stored inference times, binned one by one (no rollup read)."""
    query = select(inferences.c.ts, inferences.c.body).where(
        inferences.c.workspace_id == scope.workspace_id,
        inferences.c.ts >= start,
        inferences.c.ts < end,
    )
    if scope.model_id is not None:
        query = query.where(inferences.c.model_id == scope.model_id)
    if scope.device_id != ALL_DEVICES:
        query = query.where(inferences.c.device_id == scope.device_id)
    with database.read() as conn:
        found = time_percentiles(conn, scope, start, end, interval, PERCENTS)
        stored = conn.execute(query).all()
    binned: dict[datetime, Counter[int]] = {}
    for moment, body in stored:
        seconds = unpack_body(body).inference_time
        if seconds is not None:
            binned.setdefault(floor_to(moment, interval), Counter())[time_bin(seconds)] += 1
    expected = {
        moment: {p: percentile_bin(counts, p) for p in PERCENTS}
        for moment, counts in binned.items()
    }
    return found, expected


def test_a_minute_chart_of_days_reads_each_of_its_buckets(filled: Database) -> None:
    """2,880 minutes, each a bucket the statement makes and reads: the percentiles of the
    stored times of each minute."""
    start, end = NOW - timedelta(days=2), NOW
    for scope in _scopes(filled):
        found, expected = _percentiles_both_ways(filled, scope, start, end, INTERVALS[0])
        assert len(expected) > 50  # minutes with timed requests, each its own interval
        assert found == expected, scope


def test_class_predictions_are_the_sums_of_sum_classes_to_the_bit(filled: Database) -> None:
    for scope in _scopes(filled):
        for start, end in PERIODS:
            with filled.read() as conn:
                general = sum_classes(conn, scope, start, end, with_bins=False)
                lean = class_predictions(conn, scope, start, end)
            assert lean == {
                key: (totals.predictions, totals.confidence_sum) for key, totals in general.items()
            }
            assert list(lean) == list(general)  # the same order: merged sums add alike


def test_a_fleet_page_counts_and_names_its_devices(filled: Database) -> None:
    lost = [
        {"name": "gone-1", "last_seen": NOW - timedelta(hours=2)},
        {"name": "gone-2", "last_seen": NOW - timedelta(days=1)},
    ]
    with filled.write() as conn:
        device_store.upsert_devices(conn, filled.dialect, 1, lost, NOW - timedelta(days=2))
    now, after = NOW + timedelta(minutes=1), timedelta(minutes=5)
    names = [f"device-{n}" for n in range(4)] + ["gone-1", "gone-2"]
    every = [device_store.get_device(filled, 1, name, now, after) for name in names]
    assert all(device is not None for device in every)
    offline = sum(1 for device in every if device is not None and not device.online)
    assert 2 <= offline < 6  # both kinds, whatever the ingest made of the others
    expected: dict[Literal["online", "offline"] | None, tuple[int, int]] = {
        None: (6, offline),
        "offline": (offline, offline),
        "online": (6 - offline, 0),
    }
    for status, counts in expected.items():
        found = device_store.page_devices(
            filled, 1, now, after, DeviceQuery(status=status, limit=1)
        )
        assert (found.total, found.offline) == counts
    page = device_store.page_devices(filled, 1, now, after, DeviceQuery(limit=3))
    assert sorted(page.ids) == sorted(device.name for device in page.devices)
    period = Period(NOW - timedelta(days=3), NOW)
    shown = [device.name for device in page.devices]
    # Counted from the raw rows, not the rollups the read sums.
    with filled.read() as conn:
        counted: dict[str, int] = dict(
            conn.execute(
                select(devices.c.name, func.count())
                .select_from(inferences.join(devices, inferences.c.device_id == devices.c.id))
                .where(
                    inferences.c.ts >= period.start,
                    inferences.c.ts < period.end,
                    devices.c.name.in_(shown),
                )
                .group_by(devices.c.name)
            ).all()
        )
    assert counted, "the page holds devices that sent inferences"
    assert stats_store.requests_of_devices(filled, 1, period, page.ids) == counted


def test_a_page_snapshot_reads_one_moment(filled: Database) -> None:
    """Inside `snapshot` a page's figures and rows stay those of its first read while
    inferences land; after it, the next page sees them."""
    period = Period(NOW - timedelta(days=4), NOW + timedelta(hours=1))
    late = Inference(
        inference_id="late",
        model="model-0/1",
        device="device-0",
        timestamp=NOW - timedelta(minutes=5),
        task="object-detection",
        predictions=[],
        item={},
    )

    def seen() -> tuple[float | None, int]:
        requests = stats_store.stats(filled, 1, Filters(), period).total_requests.current
        with filled.read() as conn:
            rows = conn.execute(select(func.count()).select_from(inferences)).scalar_one()
        return requests, rows

    before = seen()
    assert before == (1500, 1500)
    with filled.snapshot():
        assert seen() == before

        # Another request's work: a thread of its own, outside this snapshot.
        def land() -> None:
            ingest(filled, 1, [late], NOW)
            settle(filled)

        with ThreadPoolExecutor(1) as other:
            other.submit(land).result()
        assert seen() == before
    assert seen() == (1501, 1501)
