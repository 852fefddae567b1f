"""/metrics as Prometheus reads it: counters only ever grow, database figures are gauges.

Prometheus takes any decrease of a counter for a process restart, so a counter summed
from rollups that retention deletes, or capped to the busiest models, would read as
resets and invent traffic in rate() and increase(). The text is parsed with
client_python's own parser, as a scraper would read it.
"""

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.workspaces import NewKey, auth
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.images.blobs import FilesystemStore
from visionwatch.retention import prune
from visionwatch.store import exporter
from visionwatch.timeutil import MINUTE, floor_to

NOW = datetime.now(UTC)
WINDOW = timedelta(hours=24)
WINDOWED = {
    "inferences": "visionwatch_model_inferences_last_24h",
    "errors": "visionwatch_model_errors_last_24h",
    "predictions": "visionwatch_model_predictions_last_24h",
}

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def item(inference_id: str, model: str, age: timedelta, **extra: Any) -> dict[str, Any]:
    return {
        "inference_id": inference_id,
        "model_id": model,
        "timestamp": (NOW - age).isoformat(),
        **extra,
    }


def send(client: TestClient, key: str, items: list[dict[str, Any]]) -> None:
    response = client.post("/api/v1/inferences", json={"inferences": items}, headers=auth(key))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] + answer["duplicates"] == len(items), answer


def scrape(client: TestClient) -> dict[str, Any]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def key_of(sample: Sample) -> SeriesKey:
    return sample.name, tuple(sorted(sample.labels.items()))


def counter_values(families: dict[str, Any]) -> dict[SeriesKey, float]:
    return {
        key_of(sample): sample.value
        for family in families.values()
        if family.type == "counter"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def gauge(families: dict[str, Any], name: str) -> dict[tuple[str, str], float]:
    return {(s.labels["workspace"], s.labels["model"]): s.value for s in families[name].samples}


def test_every_counter_comes_out_as_name_total(client: TestClient, new_key: NewKey) -> None:
    send(client, new_key(), [item("a", "m/1", timedelta(hours=1))])
    send(client, new_key(), [item("a", "m/1", timedelta(hours=1))])  # a duplicate
    client.get("/healthz")
    families = scrape(client)
    counters = {name: f for name, f in families.items() if f.type == "counter"}
    assert {
        "visionwatch_http_requests",
        "visionwatch_inferences_ingested",
        "visionwatch_inferences_duplicate",
    } <= counters.keys()
    for name, family in counters.items():
        names = {sample.name for sample in family.samples}
        assert f"{name}_total" in names, name
        assert names <= {f"{name}_total", f"{name}_created"}, name
    for name, family in families.items():
        # The parser strips one _total from a counter's name: a second one is a naming bug.
        assert not name.endswith("_total"), name
        assert all("_total_total" not in s.name for s in family.samples), name
        assert family.documentation.strip(), f"{name} has no HELP text"
    for name in WINDOWED.values():
        assert families[name].type == "gauge"


def test_no_counter_decreases_when_retention_prunes_old_rollups(
    client: TestClient, new_key: NewKey, settings: Settings, database: Database
) -> None:
    key = new_key()
    old = [item(f"old-{i}", "m/1", timedelta(days=340)) for i in range(5)]
    old.append(item("old-only", "m/old", timedelta(days=340), error="boom"))
    recent = [item(f"new-{i}", "m/1", timedelta(hours=1)) for i in range(2)]
    send(client, key, old + recent)
    before = counter_values(scrape(client))

    # Sixty days on, the 340-day-old rollups are past the 365 days rollups are kept.
    later = NOW + timedelta(days=60)
    assert settings.rollup_retention_days == 365
    report = prune(database, FilesystemStore(settings.images_dir()), settings, later)
    assert report.rollup_rows > 0
    after = counter_values(scrape(client))

    for series, value in before.items():
        assert series in after, f"counter series vanished: {series}"
        assert after[series] >= value, f"counter decreased: {series} {value} -> {after[series]}"


def test_windowed_gauges_count_what_was_sent_inside_the_last_24_hours(
    client: TestClient, new_key: NewKey
) -> None:
    car = {"class": "car", "confidence": 0.9}
    sent: dict[str, list[dict[str, Any]]] = {
        "acme": [
            item("in-1", "m/1", timedelta(hours=1), predictions=[car, car]),
            item("in-2", "m/1", timedelta(hours=23), predictions=[car]),
            item("in-3", "m/1", timedelta(minutes=5), error="boom"),
            item("in-4", "m/2", timedelta(hours=12), predictions=[car] * 3),
            item("out-1", "m/1", timedelta(hours=25), predictions=[car]),
            item("out-2", "m/1", timedelta(days=40), error="boom"),
            item("out-3", "m/3", timedelta(days=3)),  # a model with nothing in the window
            item("ahead", "m/1", -timedelta(hours=2), predictions=[car]),  # a skewed clock
        ],
        "beta": [
            item("in-1", "m/1", timedelta(hours=2), predictions=[car]),
            item("out-1", "m/1", timedelta(hours=30), predictions=[car]),
        ],
    }
    for workspace, items in sent.items():
        send(client, new_key(workspace), items)

    expected = _count_window(sent, NOW - WINDOW, NOW)
    families = scrape(client)
    for field, name in WINDOWED.items():
        assert gauge(families, name) == expected[field], name
    assert ("acme", "m/3") not in gauge(families, WINDOWED["inferences"])


def _count_window(
    sent: dict[str, list[dict[str, Any]]], start: datetime, end: datetime
) -> dict[str, dict[tuple[str, str], float]]:
    """Per field, per (workspace, model): what the test sent with start < timestamp <= end."""
    counts: dict[str, Counter[tuple[str, str]]] = {field: Counter() for field in WINDOWED}
    for workspace, items in sent.items():
        for one in items:
            if not start < datetime.fromisoformat(one["timestamp"]) <= end:
                continue
            series = (workspace, one["model_id"])
            counts["inferences"][series] += 1
            counts["errors"][series] += 1 if "error" in one else 0
            counts["predictions"][series] += len(one.get("predictions", []))
    return {field: {k: float(v) for k, v in c.items()} for field, c in counts.items()}


def test_the_window_is_the_current_minute_and_the_1439_before(
    client: TestClient, new_key: NewKey, database: Database
) -> None:
    """At its edges: the window holds whole minutes, the last one the minute of `now`."""
    now = floor_to(NOW, MINUTE) - timedelta(hours=2) + timedelta(seconds=30)
    end = floor_to(now, MINUTE) + MINUTE
    start = end - WINDOW
    edges = {
        "first": start,
        "before-first": start - timedelta(microseconds=1),
        "last": end - timedelta(microseconds=1),
        "after-last": end,
    }
    items = [
        {"inference_id": name, "model_id": "m/1", "timestamp": moment.isoformat()}
        for name, moment in edges.items()
    ]
    send(client, new_key(), items)
    client.get("/healthz")  # the client lets the aggregator count what was sent
    inside = sum(1 for moment in edges.values() if start <= moment < end)
    assert inside == 2
    totals = exporter.window_totals(database, now, WINDOW, limit=10)
    assert [(t.workspace, t.model, t.inferences) for t in totals] == [("acme", "m/1", inside)]


def test_only_the_busiest_models_get_series(
    client: TestClient, new_key: NewKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("visionwatch.metrics.MAX_SERIES", 2)
    busy = [("m/busy", 3), ("m/second", 2), ("m/quiet", 1)]
    items = [
        item(f"{model}-{i}", model, timedelta(hours=1))
        for model, count in busy
        for i in range(count)
    ]
    send(client, new_key(), items)
    families = scrape(client)
    assert gauge(families, WINDOWED["inferences"]) == {
        ("acme", "m/busy"): 3.0,
        ("acme", "m/second"): 2.0,
    }


def test_http_methods_outside_the_standard_ones_share_one_label(client: TestClient) -> None:
    for method in ("BREW", "PROPFIND", "X-ANYTHING"):
        client.request(method, "/healthz")
    client.get("/healthz")
    families = scrape(client)
    methods = _labels(families["visionwatch_http_requests"].samples, "method")
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert "other" in methods


def _labels(samples: Iterable[Sample], label: str) -> set[str]:
    return {sample.labels[label] for sample in samples}
