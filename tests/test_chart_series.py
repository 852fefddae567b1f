"""The charts' data: latency percentiles and error rate per bucket against the items sent,
the pages' series against the API's, and the marks (alert spans, deploys) they carry."""

import json
import math
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.clock import Clock
from tests.support.dashboard import HTML, sign_in
from tests.support.settled import SettledClient
from tests.support.workspaces import NewKey, auth, new_user
from visionwatch.alerts.evaluator import Evaluator
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db.engine import Database

# Six whole hours of traffic ending an hour before the clock.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
FIRST_HOUR = NOW - timedelta(hours=7)
HOURS = 6
# A time bin is a twentieth of a decade: its middle is within half a bin of any value in it.
HALF_BIN = 0.5 / 20


@pytest.fixture
def site(tmp_path: Any, database: Database, new_key: NewKey) -> Iterator[dict[str, Any]]:
    settings = Settings(
        data_dir=tmp_path / "data", alert_interval_seconds=0, prune_interval_seconds=0
    )
    clock = Clock(NOW)
    with SettledClient(create_app(settings, database, clock)) as client:
        key = auth(new_key("acme", ("ingest", "read", "admin")))
        new_user(database, "acme", "ops@example.com")
        sign_in(client, "ops@example.com")
        yield {
            "client": client,
            "key": key,
            "clock": clock,
            "evaluator": Evaluator(database, settings, clock),
        }


def traffic(rng: random.Random, model: str) -> list[dict[str, Any]]:
    """Each hour its own latency (the later hours slower) and its own share of failures."""
    sent = []
    for hour in range(HOURS):
        for n in range(rng.randrange(40, 90)):
            failed = rng.random() < 0.05 * hour
            sent.append(
                {
                    "inference_id": f"{model}-{hour}-{n}",
                    "model_id": model,
                    "device_id": rng.choice(["gate-1", "gate-2"]),
                    "timestamp": (
                        FIRST_HOUR + timedelta(hours=hour, seconds=rng.uniform(0, 3599))
                    ).isoformat(),
                    "inference_time": rng.lognormvariate(-3.5 + 0.2 * hour, 0.5),
                    "predictions": []
                    if failed
                    else [{"class": "car", "confidence": round(rng.uniform(0.3, 0.99), 3)}],
                    "error": "model timed out" if failed else None,
                }
            )
    return sent


def nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


def page_series(client: SettledClient, path: str) -> dict[str, Any]:
    page = client.get(path, headers=HTML)
    assert page.status_code == 200, page.text
    found = re.search(r'<script type="application/json" id="series-data">(.*?)</script>', page.text)
    assert found, "the page carries its charts' data"
    series: dict[str, Any] = json.loads(found.group(1))
    return series


def api_points(client: SettledClient, key: dict[str, str], **params: str) -> list[Any]:
    response = client.get("/api/v1/timeseries", params=params, headers=key)
    assert response.status_code == 200, response.text
    return [point["value"] for point in response.json()["points"]]


PERIOD = {
    "start": FIRST_HOUR.strftime("%Y-%m-%dT%H:%M"),
    "end": (FIRST_HOUR + timedelta(hours=HOURS)).strftime("%Y-%m-%dT%H:%M"),
}


def test_latency_percentiles_and_error_rate_per_hour_match_the_items_sent(
    site: dict[str, Any],
) -> None:
    client, key = site["client"], site["key"]
    sent = traffic(random.Random(3), "parts/1") + traffic(random.Random(4), "parts/2")
    for start in range(0, len(sent), 500):
        batch = {"inferences": sent[start : start + 500]}
        assert client.post("/api/v1/inferences", json=batch, headers=key).status_code == 200
    for model in (None, "parts/2"):
        scope = {"model_id": model} if model else {}
        chosen = [item for item in sent if model is None or item["model_id"] == model]
        by_hour: list[list[dict[str, Any]]] = [[] for _ in range(HOURS)]
        for item in chosen:
            at = datetime.fromisoformat(item["timestamp"])
            by_hour[int((at - FIRST_HOUR) / timedelta(hours=1))].append(item)
        for percent in (50, 95, 99):
            shown = api_points(
                client,
                key,
                metric=f"inference_time_p{percent}",
                interval="hour",
                **PERIOD,
                **scope,
            )
            assert len(shown) == HOURS
            for hour, items in enumerate(by_hour):
                exact = nearest_rank([item["inference_time"] for item in items], percent)
                assert abs(math.log10(shown[hour] / exact)) <= HALF_BIN + 1e-9, (
                    model,
                    percent,
                    hour,
                    shown[hour],
                    exact,
                )
        rates = api_points(client, key, metric="error_rate", interval="hour", **PERIOD, **scope)
        for hour, items in enumerate(by_hour):
            failed = sum(1 for item in items if item["error"])
            assert rates[hour] == pytest.approx(failed / len(items))
        assert any(rate > 0 for rate in rates)

    # The pages chart exactly what the API answers.
    query = "start={start}&end={end}".format(**PERIOD)
    for path, scope in (("/", {}), ("/models/parts/2", {"model_id": "parts/2"})):
        series = page_series(client, f"{path}?{query}")
        assert series["interval"] == "minute"  # six hours: a point a minute
        for column, metric in (
            ("requests", "requests"),
            ("errors", "errors"),
            ("confidence", "avg_confidence"),
            ("p50", "inference_time_p50"),
            ("p95", "inference_time_p95"),
            ("p99", "inference_time_p99"),
            ("error_rate", "error_rate"),
        ):
            expected = api_points(client, key, metric=metric, interval="minute", **PERIOD, **scope)
            assert series[column] == expected, (path, column)


def test_an_unknown_metric_is_a_400_naming_it(site: dict[str, Any]) -> None:
    response = site["client"].get(
        "/api/v1/timeseries", params={"metric": "inference_time_p42"}, headers=site["key"]
    )
    assert response.status_code in (400, 422)
    assert "metric" in response.text


def rule(client: SettledClient, key: dict[str, str], **fields: Any) -> int:
    body = {
        "metric": "avg_confidence",
        "condition": "below",
        "threshold": 0.5,
        "window_seconds": 600,
        "min_samples": 5,
        **fields,
    }
    made = client.post("/api/v1/alerts", json=body, headers=key)
    assert made.status_code == 201, made.text
    rule_id: int = made.json()["id"]
    return rule_id


def confident(
    model: str, start: datetime, minutes: int, confidence: float, device: str | None = None
) -> dict[str, Any]:
    return {
        "inferences": [
            {
                "inference_id": f"{model}-{start.isoformat()}-{m}",
                "model_id": model,
                "device_id": device,
                "timestamp": (start + timedelta(minutes=m)).isoformat(),
                "predictions": [{"class": "car", "confidence": confidence}],
            }
            for m in range(minutes)
        ]
    }


def test_alert_spans_and_deploys_are_marked_on_the_charts_they_concern(
    site: dict[str, Any],
) -> None:
    client, key, clock, evaluator = site["client"], site["key"], site["clock"], site["evaluator"]
    start = NOW - timedelta(hours=3)
    clock.now = start
    on_model = rule(client, key, name="cam confidence", model_id="cam/2")
    on_project = rule(client, key, name="cam project", project="cam")
    elsewhere = rule(client, key, name="other model", model_id="dock/1")
    # cam/1 was seen days ago; cam/2 (the deploy) starts now with low confidence.
    old = confident("cam/1", NOW - timedelta(days=3), 3, 0.9)
    assert client.post("/api/v1/inferences", json=old, headers=key).status_code == 200
    low = confident("cam/2", start, 10, 0.2)
    assert client.post("/api/v1/inferences", json=low, headers=key).status_code == 200
    clock.now = start + timedelta(minutes=11)
    evaluator.run_once()
    # Confidence recovers; both rules resolve at the next evaluation after the window.
    high = confident("cam/2", start + timedelta(minutes=12), 20, 0.9)
    assert client.post("/api/v1/inferences", json=high, headers=key).status_code == 200
    clock.now = start + timedelta(minutes=40)
    evaluator.run_once()

    def moves(rule_id: int) -> list[dict[str, Any]]:
        found = client.get(f"/api/v1/alerts/{rule_id}/history", headers=key)
        assert found.status_code == 200, found.text
        events: list[dict[str, Any]] = found.json()["events"]
        return events

    def seconds(text: str) -> int:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())

    def span_of(rule_id: int) -> tuple[int, int | None]:
        events = moves(rule_id)
        fired = [e for e in events if e["to"] == "firing"]
        ended = [e for e in events if e["from"] == "firing"]
        assert len(fired) == 1, events
        return seconds(fired[0]["at"]), seconds(ended[0]["at"]) if ended else None

    expected = {on_model: span_of(on_model), on_project: span_of(on_project)}
    assert all(end is not None for _, end in expected.values()), "both resolved"
    assert all(e["to"] != "firing" for e in moves(elsewhere))

    series = page_series(client, "/models/cam/2?period=24h")
    alerts = {m["rule_id"]: (m["start"], m["end"]) for m in series["marks"] if m["kind"] == "alert"}
    assert alerts == expected
    deploys = [(m["model"], m["at"]) for m in series["marks"] if m["kind"] == "deploy"]
    assert deploys == [("cam/2", int(start.timestamp()))], "cam/1 came before the period"
    assert all(m["url"] == f"/alerts/{m['rule_id']}" for m in series["marks"] if "rule_id" in m)

    # dock/1's page: neither cam rule; the overview: every rule that fired.
    assert (
        client.post(
            "/api/v1/inferences", json=confident("dock/1", start, 2, 0.9), headers=key
        ).status_code
        == 200
    )
    dock = page_series(client, "/models/dock/1?period=24h")
    assert [m for m in dock["marks"] if m["kind"] == "alert"] == []
    overview = page_series(client, "/?period=24h")
    assert {m["rule_id"] for m in overview["marks"] if m["kind"] == "alert"} == set(expected)
    assert {m["model"] for m in overview["marks"] if m["kind"] == "deploy"} == {"cam/2", "dock/1"}

    # A rule still firing has a span with no end; a period before it shows no span.
    again = confident("cam/2", start + timedelta(minutes=60), 10, 0.1)
    assert client.post("/api/v1/inferences", json=again, headers=key).status_code == 200
    clock.now = start + timedelta(minutes=71)
    evaluator.run_once()
    clock.now += timedelta(minutes=1)  # the page opened a minute later
    series = page_series(client, "/models/cam/2?period=24h")
    ongoing = [m for m in series["marks"] if m["kind"] == "alert" and m["end"] is None]
    assert {m["rule_id"] for m in ongoing} == {on_model, on_project}
    earlier = (start - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M")
    before = page_series(
        client, f"/models/cam/2?start={earlier}&end={start.strftime('%Y-%m-%dT%H:%M')}"
    )
    assert before["marks"] == []


def test_a_rule_on_a_device_or_a_model_marks_only_the_charts_it_ran_on(
    site: dict[str, Any],
) -> None:
    """A camera's rule on the charts of models it ran, a model's rule on the pages of devices
    that ran it: not on the others."""
    client, key, clock, evaluator = site["client"], site["key"], site["clock"], site["evaluator"]
    start = NOW - timedelta(hours=2)
    clock.now = start
    on_model = rule(client, key, name="cam/2 unsure", model_id="cam/2")
    on_device = rule(client, key, name="dock camera unsure", device_id="dock-cam")
    for model, device in (("cam/2", "gate-cam"), ("dock/1", "dock-cam")):
        sent = confident(model, start, 10, 0.2, device)
        assert client.post("/api/v1/inferences", json=sent, headers=key).status_code == 200
    clock.now = start + timedelta(minutes=11)
    evaluator.run_once()
    clock.now += timedelta(minutes=1)  # the pages opened a minute later

    def alert_marks(path: str) -> set[int]:
        series = page_series(client, path)
        return {m["rule_id"] for m in series["marks"] if m["kind"] == "alert"}

    assert alert_marks("/?period=24h") == {on_model, on_device}, "both fired"
    assert alert_marks("/models/cam/2?period=24h") == {on_model}
    assert alert_marks("/models/dock/1?period=24h") == {on_device}
    assert alert_marks("/devices/gate-cam?period=24h") == {on_model}
    assert alert_marks("/devices/dock-cam?period=24h") == {on_device}
    # Once the dock camera runs cam/2 too, each rule concerns the other's charts.
    later = confident("cam/2", start + timedelta(minutes=5), 2, 0.9, "dock-cam")
    assert client.post("/api/v1/inferences", json=later, headers=key).status_code == 200
    assert alert_marks("/models/cam/2?period=24h") == {on_model, on_device}
    assert alert_marks("/devices/dock-cam?period=24h") == {on_model, on_device}


def selection_items(rng: random.Random) -> list[dict[str, Any]]:
    """Three models on three devices over six hours, with metadata and a few images' worth
    of classes, so that every filter picks a different set."""
    sent = []
    for n in range(700):
        model = rng.choice(["dock/1", "dock/2", "gate/1"])
        sent.append(
            {
                "inference_id": f"sel-{n}",
                "model_id": model,
                "device_id": rng.choice(["dock-cam-1", "dock-cam-2", "dock-cam-3"]),
                "timestamp": (
                    FIRST_HOUR + timedelta(seconds=rng.uniform(0, HOURS * 3600 - 1))
                ).isoformat(),
                "predictions": [
                    {
                        "class": rng.choice(["box", "pallet", "person"]),
                        "confidence": round(rng.uniform(0.05, 0.99), 3),
                    }
                    for _ in range(rng.randrange(0, 4))
                ],
                "metadata": {"shift": rng.choice(["day", "night"])},
            }
        )
    return sent


def selected(item: dict[str, Any], filters: dict[str, str]) -> tuple[bool, list[float]]:
    """Whether the inferences list matches the item, and the confidences of the predictions
    the filters select (an independent reading of the filters' documented meaning)."""
    if "model_id" in filters and item["model_id"] != filters["model_id"]:
        return False, []
    if "device_id" in filters and item["device_id"] != filters["device_id"]:
        return False, []
    for name, value in filters.items():
        if name.startswith("metadata.") and str(item["metadata"][name[9:]]) != value:
            return False, []

    def meets(prediction: dict[str, Any]) -> bool:
        low, high = float(filters.get("min_confidence", 0)), float(filters.get("max_confidence", 1))
        return bool(
            filters.get("class", prediction["class"]) == prediction["class"]
            and low <= prediction["confidence"] <= high
        )

    chosen = [p["confidence"] for p in item["predictions"] if meets(p)]
    narrowed = any(name in filters for name in ("class", "min_confidence", "max_confidence"))
    if narrowed and not chosen:
        return False, []
    return True, chosen


@pytest.mark.parametrize(
    ("filters", "source"),
    [
        ({}, "rollups"),
        ({"model_id": "dock/2"}, "rollups"),
        ({"device_id": "dock-cam-3"}, "rollups"),
        ({"class": "pallet"}, "rollups"),
        ({"class": "person", "device_id": "dock-cam-1", "model_id": "gate/1"}, "rollups"),
        ({"metadata.shift": "night", "model_id": "dock/1"}, "rows"),
        ({"class": "box", "max_confidence": "0.4"}, "rows"),
    ],
)
def test_the_filtered_selection_is_charted_exactly(
    site: dict[str, Any], filters: dict[str, str], source: str
) -> None:
    client, key = site["client"], site["key"]
    sent = selection_items(random.Random(8))
    for start in range(0, len(sent), 500):
        batch = {"inferences": sent[start : start + 500]}
        assert client.post("/api/v1/inferences", json=batch, headers=key).status_code == 200
    chart = client.get("/inferences.series", params={**PERIOD, **filters}, headers=HTML)
    assert chart.status_code == 200, chart.text
    found = chart.json()
    assert found["source"] == source
    assert found["interval"] == "minute"
    # Independently: per minute, the matching inferences and the selected confidences.
    counts: dict[int, int] = {}
    confidences: dict[int, list[float]] = {}
    for item in sent:
        matched, chosen = selected(item, filters)
        if matched:
            minute = int(datetime.fromisoformat(item["timestamp"]).timestamp()) // 60 * 60
            counts[minute] = counts.get(minute, 0) + 1
            confidences.setdefault(minute, []).extend(chosen)
    assert found["inferences"] == [counts.get(t, 0) for t in found["t"]]
    for t, shown in zip(found["t"], found["confidence"], strict=True):
        values = confidences.get(t, [])
        assert shown == (pytest.approx(sum(values) / len(values)) if values else None)
    # The chart's total is the list's count.
    listed, cursor = 0, None
    while True:
        params = {**PERIOD, **filters, "limit": "500", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/inferences", params=params, headers=key).json()
        listed += len(page["inferences"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert found["total"] == listed == sum(counts.values()) > 0
