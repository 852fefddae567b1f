"""The read API against an independent computation over the items sent."""

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.oracle import (
    EPOCH,
    change_pct,
    expected,
    nearest_rank,
    stored_in_batches,
    when,
)
from tests.support.workspaces import NewKey, auth

NOW = datetime.now(UTC)
# A UTC midnight safely in the past: periods around it cross minute, hour and day edges.
MIDNIGHT = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC) - timedelta(days=3)
MODELS = ("vehicles/3", "people/1")
DEVICES = (None, "edge-1", "edge-2")
CLASSES = ("car", "bus", "person")

_workspaces = itertools.count()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    # Milliseconds around midnight, on both sides of every boundary; sometimes exactly on one.
    offset_ms = draw(
        st.one_of(
            st.integers(-36 * 3_600_000, 36 * 3_600_000),
            st.integers(-36 * 60, 36 * 60).map(lambda minutes: minutes * 60_000),
        )
    )
    item: dict[str, Any] = {
        "inference_id": f"inf-{draw(st.integers(0, 60))}",  # a small pool: duplicates happen
        "model_id": draw(st.sampled_from(MODELS)),
        "timestamp": (MIDNIGHT - EPOCH).total_seconds() + offset_ms / 1000,
    }
    device = draw(st.sampled_from(DEVICES))
    if device is not None:
        item["device_id"] = device
    duration = draw(st.one_of(st.none(), st.floats(0.0005, 20.0)))
    if duration is not None:
        item["time"] = duration
    confidence = st.floats(0.0, 1.0)
    kind = draw(st.sampled_from(["detection", "detection", "classification", "error", "empty"]))
    if kind == "detection":
        item["predictions"] = [
            {
                "class": draw(st.sampled_from(CLASSES)),
                "confidence": draw(confidence),
                "x": 10.0,
                "y": 10.0,
                "width": 5.0,
                "height": 5.0,
            }
            for _ in range(draw(st.integers(1, 4)))
        ]
    elif kind == "classification":
        item["top"] = draw(st.sampled_from(CLASSES))
        item["confidence"] = draw(confidence)
        item["predictions"] = [{"class": item["top"], "confidence": item["confidence"]}]
    elif kind == "error":
        item["error"] = "CUDA out of memory"
        item["predictions"] = [{"class": "car", "confidence": 0.5}]  # ignored: it failed
    else:
        item["predictions"] = []
    return item


periods = st.tuples(st.integers(-2000, 0), st.integers(1, 2000)).map(
    lambda bounds: (
        MIDNIGHT + timedelta(minutes=bounds[0]),
        MIDNIGHT + timedelta(minutes=bounds[1]),
    )
)


def assert_confidence_bin(reported: float | None, values: list[float]) -> None:
    if not values:
        assert reported is None
        return
    truth = nearest_rank(values, 50)
    # Exact to a bin of 0.01: the reported value is the middle of the true value's bin.
    assert reported is not None
    assert abs(reported - truth) <= 0.005 + 1e-9


def assert_time_bin(reported: float | None, values: list[float], percent: int) -> None:
    if not values:
        assert reported is None
        return
    truth = nearest_rank(values, percent)
    # Log bins, 20 per decade: the reported middle is within half a bin's ratio of the truth.
    half_bin = 10 ** (1 / 40)
    assert reported is not None
    assert truth / half_bin * (1 - 1e-9) <= reported <= truth * half_bin * (1 + 1e-9)


def assert_close(reported: float | None, expected: float | None, rel: float, abs_: float) -> None:
    """Equal within tolerance, or both absent (pytest.approx refuses None since pytest 9)."""
    if expected is None:
        assert reported is None
    else:
        assert reported == pytest.approx(expected, rel=rel, abs=abs_)


def assert_change(block: dict[str, Any], current: float | None, previous: float | None) -> None:
    assert_close(block["current"], current, rel=1e-9, abs_=1e-12)
    assert_close(block["previous"], previous, rel=1e-9, abs_=1e-12)
    assert_close(block["change_pct"], change_pct(current, previous), rel=1e-6, abs_=1e-9)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sent=st.lists(items(), min_size=0, max_size=40),
    batch_size=st.integers(1, 40),
    period=periods,
    model=st.sampled_from((None, *MODELS)),
    device=st.sampled_from((None, "edge-1", "edge-2")),
)
def test_read_api_agrees_with_independent_computation(
    client: TestClient,
    db_kind: str,
    new_key: NewKey,
    sent: list[dict[str, Any]],
    batch_size: int,
    period: tuple[datetime, datetime],
    model: str | None,
    device: str | None,
) -> None:
    key = auth(new_key(f"ws{next(_workspaces)}"))
    for at in range(0, len(sent), batch_size):
        batch = sent[at : at + batch_size]
        response = client.post("/api/v1/inferences", json={"inferences": batch}, headers=key)
        assert response.status_code == 200, response.text
    # An id sent again with a time more than a day from its batch's is a new inference on
    # PostgreSQL (ids are unique per week of partitions: docs/architecture.md).
    window = None if db_kind == "sqlite" else timedelta(days=1)
    stored = stored_in_batches(sent, batch_size, window)

    start, end = period
    params: dict[str, str] = {"start": iso(start), "end": iso(end)}
    if model:
        params["model_id"] = model
    if device:
        params["device_id"] = device

    stats = client.get("/api/v1/stats", params=params, headers=key).json()
    now = expected(stored, start, end, model, device, as_stored=True)
    before = expected(stored, start - (end - start), start, model, device, as_stored=True)
    assert (parse(stats["start"]), parse(stats["end"])) == (start, end)
    assert parse(stats["previous_start"]) == start - (end - start)
    assert_change(stats["total_requests"], now.requests, before.requests)
    assert_change(stats["errors"], now.errors, before.errors)
    assert_change(stats["avg_confidence"], now.avg_confidence, before.avg_confidence)
    assert_change(stats["avg_inference_time"], now.avg_inference_time, before.avg_inference_time)
    assert_confidence_bin(stats["median_confidence"], now.confidences)
    for percent in (50, 95, 99):
        assert_time_bin(stats[f"inference_time_p{percent}"], now.times, percent)

    classes = client.get("/api/v1/classes", params=params, headers=key).json()["classes"]
    assert [(c["class"], c["count"]) for c in classes] == sorted(
        now.classes.items(), key=lambda pair: (-pair[1], pair[0])
    )
    if classes:
        assert math.fsum(c["share"] for c in classes) == pytest.approx(1.0)
    for row in classes:
        values = now.class_confidences[row["class"]]
        assert row["avg_confidence"] == pytest.approx(sum(values) / len(values))
        assert row["share"] == pytest.approx(row["count"] / len(now.confidences))

    series = client.get(
        "/api/v1/timeseries",
        params={**params, "metric": "requests", "interval": "hour"},
        headers=key,
    ).json()["points"]
    hour = start.replace(minute=0)
    hours = []
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    assert [parse(p["t"]) for p in series] == hours
    for point in series:
        t = parse(point["t"])
        bucket = expected(
            stored, max(t, start), min(t + timedelta(hours=1), end), model, device, True
        )
        assert point["value"] == bucket.requests

    models = client.get("/api/v1/models", params=params, headers=key).json()["models"]
    for row in models:
        per_model = expected(stored, start, end, row["model_id"], device, as_stored=True)
        assert row["total_requests"]["current"] == per_model.requests
        assert_close(row["avg_confidence"]["current"], per_model.avg_confidence, 1e-9, 1e-12)


def test_timeseries_metrics_per_minute(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    base = MIDNIGHT + timedelta(hours=5)
    sent = [
        {
            "inference_id": "a",
            "model_id": "m/1",
            "timestamp": iso(base + timedelta(seconds=5)),
            "time": 0.1,
            "predictions": [{"class": "car", "confidence": 0.2}],
        },
        {
            "inference_id": "b",
            "model_id": "m/1",
            "timestamp": iso(base + timedelta(seconds=59)),
            "time": 0.3,
            "predictions": [{"class": "car", "confidence": 0.6}],
        },
        {
            "inference_id": "c",
            "model_id": "m/1",
            "timestamp": iso(base + timedelta(minutes=2)),
            "error": "timeout",
        },
    ]
    assert (
        client.post("/api/v1/inferences", json={"inferences": sent}, headers=key).status_code == 200
    )
    params = {"start": iso(base), "end": iso(base + timedelta(minutes=3)), "interval": "minute"}

    def values(metric: str) -> list[float | None]:
        response = client.get(
            "/api/v1/timeseries", params={**params, "metric": metric}, headers=key
        )
        return [p["value"] for p in response.json()["points"]]

    assert values("requests") == [2, 0, 1]
    assert values("errors") == [0, 0, 1]
    assert values("avg_confidence") == [pytest.approx(0.4), None, None]
    assert values("avg_inference_time") == [pytest.approx(0.2), None, None]


def test_period_is_widened_to_whole_minutes_and_defaults_to_a_week(
    client: TestClient, new_key: NewKey
) -> None:
    key = auth(new_key())
    start = MIDNIGHT + timedelta(minutes=10, seconds=30)
    end = MIDNIGHT + timedelta(minutes=20, seconds=1)
    stats = client.get(
        "/api/v1/stats", params={"start": iso(start), "end": iso(end)}, headers=key
    ).json()
    assert parse(stats["start"]) == MIDNIGHT + timedelta(minutes=10)
    assert parse(stats["end"]) == MIDNIGHT + timedelta(minutes=21)
    default = client.get("/api/v1/stats", headers=key).json()
    assert parse(default["end"]) - parse(default["start"]) == timedelta(days=7)
    assert abs(parse(default["end"]) - datetime.now(UTC)) < timedelta(minutes=2)


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-13-45"}, "end"),
        ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start"),
        ({"metric": "fps"}, "metric"),
        ({"interval": "week"}, "interval"),
        ({"interval": "minute", "start": "2020-01-01T00:00:00Z"}, "interval"),
    ],
)
def test_bad_read_parameters_are_named(
    client: TestClient, new_key: NewKey, params: dict[str, str], path: str
) -> None:
    response = client.get("/api/v1/timeseries", params=params, headers=auth(new_key()))
    assert response.status_code == 422
    assert [e["path"] for e in response.json()["errors"]] == [path]


def test_unknown_model_or_device_reads_as_nothing(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    sent = [
        {"model_id": "m/1", "device_id": "cam", "predictions": [{"class": "a", "confidence": 1}]}
    ]
    client.post("/api/v1/inferences", json={"inferences": sent}, headers=key)
    for params in ({"model_id": "nope/1"}, {"device_id": "nope"}):
        stats = client.get("/api/v1/stats", params=params, headers=key).json()
        assert stats["total_requests"]["current"] == 0
        assert client.get("/api/v1/classes", params=params, headers=key).json()["classes"] == []
    stats = client.get("/api/v1/stats", params={"device_id": "cam"}, headers=key).json()
    assert stats["total_requests"]["current"] == 1
    assert when({"timestamp": 0}) == EPOCH
