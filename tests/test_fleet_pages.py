"""Fleets: devices paged and searched in the API and the pages (offline first), a page per
device, and models' and classes' long lists cut to what a page can show."""

import json
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
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db.engine import Database

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
OFFLINE_AFTER = 300


@pytest.fixture
def site(tmp_path: Any, database: Database, new_key: NewKey) -> Iterator[dict[str, Any]]:
    settings = Settings(
        data_dir=tmp_path / "data",
        alert_interval_seconds=0,
        prune_interval_seconds=0,
        device_offline_after=OFFLINE_AFTER,
    )
    clock = Clock(NOW)
    with SettledClient(create_app(settings, database, clock)) as client:
        key = auth(new_key("acme", ("ingest", "read", "admin")))
        new_user(database, "acme", "ops@example.com")
        sign_in(client, "ops@example.com")
        yield {"client": client, "key": key, "clock": clock}


def fleet(site: dict[str, Any], count: int) -> dict[str, dict[str, Any]]:
    """`count` devices, each last heard from at its own time (a third long silent), with a
    version and a host; some names carry LIKE's wildcards."""
    client, key, clock = site["client"], site["key"], site["clock"]
    rng = random.Random(4)
    made: dict[str, dict[str, Any]] = {}
    for n in range(count):
        name = f"Cam-{n:04d}" if n % 7 else f"dock_{n}%"
        silent = timedelta(seconds=rng.choice([rng.uniform(0, 200), rng.uniform(400, 86400)]))
        clock.now = NOW - timedelta(seconds=int(silent.total_seconds()))
        version = rng.choice(["1.2.0", "1.3.0"])
        beat = {"device_id": name, "version": version, "hostname": f"host-{n}"}
        assert client.post("/api/v1/heartbeats", json=beat, headers=key).status_code < 300
        made[name] = {"last_seen": clock.now, "version": version}
    clock.now = NOW
    return made


def expected_order(made: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    """Offline first, the most recently lost first (then by id: made in order), then the
    online by name."""
    limit = NOW - timedelta(seconds=OFFLINE_AFTER)
    index = {name: n for n, name in enumerate(made)}
    offline = [n for n in names if made[n]["last_seen"] < limit]
    online = [n for n in names if made[n]["last_seen"] >= limit]
    offline.sort(key=lambda n: (made[n]["last_seen"], index[n]), reverse=True)
    return offline + sorted(online)


def walk(site: dict[str, Any], **params: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = site["client"].get("/api/v1/devices", params=query, headers=site["key"])
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        found += body["devices"]
        cursor = body["next_cursor"]
        if cursor is None:
            return found, body
        assert len(body["devices"]) == int(params.get("limit", 100))


def test_devices_page_offline_first_and_every_device_once(site: dict[str, Any]) -> None:
    made = fleet(site, 230)
    limit = NOW - timedelta(seconds=OFFLINE_AFTER)
    found, last = walk(site, limit="37")
    assert [d["device_id"] for d in found] == expected_order(made, list(made))
    assert last["total"] == 230
    assert last["offline"] == sum(1 for d in made.values() if d["last_seen"] < limit)
    assert all(
        (d["status"] == "offline") == (made[d["device_id"]]["last_seen"] < limit) for d in found
    )
    # The default page: a hundred, with a cursor to the next.
    first = site["client"].get("/api/v1/devices", headers=site["key"]).json()
    assert len(first["devices"]) == 100
    assert first["next_cursor"]

    # Search is a part of the name in any case, wildcards taken as themselves.
    for search, picked in (
        ("cam-01", [n for n in made if "cam-01" in n.lower()]),
        ("_1", [n for n in made if "_1" in n]),
        ("%", [n for n in made if "%" in n]),
    ):
        found, last = walk(site, search=search, limit="10")
        assert [d["device_id"] for d in found] == expected_order(made, picked), search
        assert last["total"] == len(picked)
    found, last = walk(site, status="online", version="1.3.0", limit="15")
    picked = [n for n, d in made.items() if d["last_seen"] >= limit and d["version"] == "1.3.0"]
    assert [d["device_id"] for d in found] == expected_order(made, picked)
    assert last["offline"] == 0
    found, _ = walk(site, status="offline", limit="50")
    assert [d["device_id"] for d in found] == expected_order(
        made, [n for n, d in made.items() if d["last_seen"] < limit]
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"status": "asleep"}, "status"),
    ],
)
def test_bad_device_queries_name_the_parameter(
    site: dict[str, Any], params: dict[str, str], field: str
) -> None:
    answer = site["client"].get("/api/v1/devices", params=params, headers=site["key"])
    assert answer.status_code == 422, answer.text
    assert field in answer.text


def traffic(device: str, model: str, count: int, start: datetime) -> dict[str, Any]:
    return {
        "inferences": [
            {
                "inference_id": f"{device}-{model}-{n}",
                "model_id": model,
                "device_id": device,
                "timestamp": (start + timedelta(minutes=n)).isoformat(),
                "inference_time": 0.02 + n / 1000,
                "predictions": [{"class": "box", "confidence": 0.5 + (n % 5) / 10}],
            }
            for n in range(count)
        ]
    }


def test_a_device_has_its_own_page(site: dict[str, Any]) -> None:
    client, key = site["client"], site["key"]
    start = NOW - timedelta(hours=2)
    for device, model, count in (("dock-cam-3", "parts/1", 30), ("dock-cam-3", "parts/2", 12)):
        sent = client.post(
            "/api/v1/inferences", json=traffic(device, model, count, start), headers=key
        )
        assert sent.status_code == 200
    sent = client.post(
        "/api/v1/inferences", json=traffic("gate-1", "parts/1", 9, start), headers=key
    )
    assert sent.status_code == 200
    beat = {"device_id": "dock-cam-3", "version": "2.4.1", "hostname": "jetson-17"}
    assert client.post("/api/v1/heartbeats", json=beat, headers=key).status_code < 300
    rule = {
        "name": "dock-cam-3 silent",
        "metric": "device_silence",
        "condition": "above",
        "threshold": 600,
        "device_id": "dock-cam-3",
    }
    assert client.post("/api/v1/alerts", json=rule, headers=key).status_code == 201
    other = {**rule, "name": "gate-1 silent", "device_id": "gate-1"}
    assert client.post("/api/v1/alerts", json=other, headers=key).status_code == 201

    page = client.get("/devices/dock-cam-3?period=24h", headers=HTML)
    assert page.status_code == 200, page.text
    text = page.text
    assert re.search(r'id="device-status" class="status online">online<', text)
    assert 'id="device-version">2.4.1<' in text
    assert 'id="device-hostname">jetson-17<' in text
    stats = client.get(
        "/api/v1/stats",
        params={
            "device_id": "dock-cam-3",
            "start": (NOW - timedelta(hours=24)).isoformat(),
            "end": NOW.isoformat(),
        },
        headers=key,
    ).json()
    shown = re.search(r'data-metric="total_requests" data-current="(\d+)"', text)
    assert shown
    assert int(shown.group(1)) == stats["total_requests"]["current"] == 42
    ran = re.findall(r'<tr data-model="([^"]+)">', text)
    assert sorted(ran) == ["parts/1", "parts/2"]
    assert "dock-cam-3 silent" in text
    assert "gate-1 silent" not in text
    assert text.count('<tr data-inference-id="dock-cam-3-') == 20  # the recent ones
    # Its charts: the device's requests per bucket, equal to the API's, 42 in all.
    series = re.search(r'id="series-data">(.*?)</script>', text)
    assert series
    charted = json.loads(series.group(1))
    points = client.get(
        "/api/v1/timeseries",
        params={
            "device_id": "dock-cam-3",
            "interval": charted["interval"],
            "start": (NOW - timedelta(hours=24)).isoformat(),
            "end": NOW.isoformat(),
        },
        headers=key,
    ).json()["points"]
    assert charted["requests"] == [point["value"] for point in points]
    assert sum(charted["requests"]) == 42

    missing = client.get("/devices/nowhere", headers=HTML)
    assert missing.status_code == 404
    assert "nowhere" in missing.text
    # Device links lead there: the devices tab, the fleet page, the inference rows.
    overview = client.get("/?period=24h", headers=HTML).text
    assert 'href="/devices/dock-cam-3?period=24h"' in overview
    assert 'href="/devices/dock-cam-3"' in client.get("/inferences?period=24h", headers=HTML).text


def test_the_fleet_page_and_the_tab_show_the_head_of_a_long_list(site: dict[str, Any]) -> None:
    made = fleet(site, 160)
    client = site["client"]
    text = client.get("/devices?period=24h", headers=HTML).text
    names = re.findall(r'<tr data-device="([^"]+)"', text)
    order = expected_order(made, list(made))
    assert names == order[:100]
    nxt = re.search(r'<a class="button next" href="([^"]+)">', text)
    assert nxt
    rest = client.get(nxt.group(1).replace("&amp;", "&"), headers=HTML).text
    assert re.findall(r'<tr data-device="([^"]+)"', rest) == order[100:]
    assert re.search(r'data-total="160"', text)
    searched = client.get("/devices?search=CAM-000", headers=HTML).text
    assert re.findall(r'<tr data-device="([^"]+)"', searched) == expected_order(
        made, [n for n in made if "cam-000" in n.lower()]
    )
    assert client.get("/devices?status=asleep", headers=HTML).status_code == 400
    # The overview's tab: the first 50, offline first, and the way to the rest.
    sent = client.post(
        "/api/v1/inferences",
        json=traffic("Cam-0001", "parts/1", 3, NOW - timedelta(hours=1)),
        headers=site["key"],
    )
    assert sent.status_code == 200
    overview = client.get("/?period=24h", headers=HTML).text
    tab = overview.split('id="pane-devices"', 1)[1].split("</section>", 1)[0]
    assert re.findall(r'<tr data-device="([^"]+)"', tab) == order[:50]
    assert "Search and page them all" in tab


def test_a_thousand_classes_are_bars_for_the_first_and_a_searchable_table(
    site: dict[str, Any],
) -> None:
    client, key = site["client"], site["key"]
    rng = random.Random(9)
    counts = {f"class-{n:04d}": 1 + (n * 7919) % 13 for n in range(1000)}
    items = []
    for name, count in counts.items():
        for k in range(count):
            items.append(
                {
                    "inference_id": f"{name}-{k}",
                    "model_id": "coco/9",
                    "timestamp": (NOW - timedelta(minutes=rng.uniform(1, 600))).isoformat(),
                    "predictions": [{"class": name, "confidence": 0.8}],
                }
            )
    for at in range(0, len(items), 1000):
        sent = client.post(
            "/api/v1/inferences", json={"inferences": items[at : at + 1000]}, headers=key
        )
        assert sent.status_code == 200
    ranked = sorted(counts, key=lambda name: (-counts[name], name))
    text = client.get("/models/coco/9?period=24h", headers=HTML).text
    bars = re.findall(r'<div class="bar-row" data-class="([^"]+)"', text)
    assert bars == ranked[:20]
    others = re.search(r'<div class="bar-row others" data-count="(\d+)"', text)
    assert others
    assert int(others.group(1)) == sum(counts[n] for n in ranked[20:])
    rows = re.findall(r'<tr data-class="([^"]+)">', text)
    assert rows == ranked[:50]
    more = re.search(r'<a class="button next" href="([^"]+)">More classes', text)
    assert more
    after = client.get(more.group(1).replace("&amp;", "&"), headers=HTML).text
    assert re.findall(r'<tr data-class="([^"]+)">', after) == ranked[50:100]
    found = client.get("/models/coco/9?period=24h&class_search=CLASS-09", headers=HTML).text
    assert (
        re.findall(r'<tr data-class="([^"]+)">', found)
        == [n for n in ranked if "class-09" in n][:50]
    )
    assert len(text) < 100_000, len(text)
