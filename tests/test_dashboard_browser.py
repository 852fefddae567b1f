"""The dashboard in a real browser (Debian's Chromium) against `visionwatch serve` on loopback."""

import io
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from PIL import Image

from tests.support.browser import chromium, chromium_missing, sign_in
from tests.support.dashboard import PASSWORD
from tests.support.server import serving
from tests.support.services import unavailable
from tests.support.workspaces import new_workspace

# Chromium, and `visionwatch serve` as a process.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

NOW = datetime.now(UTC)
EMAIL = "ops@example.com"
HOSTILE = {
    "model": "<img src=x onerror=alert(1)>/1",
    "device": '"><script>alert(2)</script>',
    "class": "<svg onload=alert(3)>",
    "metadata": "<script>alert(4)</script>",
}


def seed(rng: random.Random) -> list[dict[str, Any]]:
    """Ten days of traffic from two models on three devices, so each period differs."""
    result = []
    for n in range(900):
        model = rng.choice(["vehicles/3", "ppe-detection/7"])
        classes = ["car", "bus", "truck"] if model == "vehicles/3" else ["helmet", "vest"]
        result.append(
            {
                "inference_id": f"seed-{n}",
                "model_id": model,
                "device_id": rng.choice(["gate-1", "gate-2", "dock-1"]),
                "timestamp": (NOW - timedelta(hours=rng.uniform(0.1, 240))).isoformat(),
                "inference_time": rng.lognormvariate(-3, 0.4),
                "image": {"width": 640, "height": 480},
                "predictions": [
                    {
                        "class": rng.choice(classes),
                        "confidence": round(rng.uniform(0.2, 0.99), 3),
                        "x": rng.uniform(60, 580),
                        "y": rng.uniform(60, 420),
                        "width": 50.0,
                        "height": 40.0,
                    }
                    for _ in range(rng.randrange(1, 6))
                ],
                "metadata": {"camera": rng.choice(["north", "south"]), "shift": rng.randrange(3)},
            }
        )
    return result


def hostile_items() -> list[dict[str, Any]]:
    return [
        {
            "inference_id": "hostile-1",
            "model_id": HOSTILE["model"],
            "device_id": HOSTILE["device"],
            "timestamp": (NOW - timedelta(minutes=5)).isoformat(),
            "predictions": [
                {
                    "class": HOSTILE["class"],
                    "confidence": 0.5,
                    "x": 10,
                    "y": 10,
                    "width": 5,
                    "height": 5,
                }
            ],
            "metadata": {HOSTILE["metadata"]: HOSTILE["metadata"]},
        }
    ]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    missing = chromium_missing()
    if missing:
        unavailable(missing)
    env = {"VISIONWATCH_DATA_DIR": str(tmp_path_factory.mktemp("dashboard"))}
    key = new_workspace(env, "acme", user=EMAIL)
    sent = seed(random.Random(11))
    with serving(env) as base:
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"})
        for start in range(0, len(sent), 300):
            batch = {"inferences": sent[start : start + 300]}
            assert api.post("/api/v1/inferences", json=batch).status_code == 200
        assert (
            api.post("/api/v1/inferences", json={"inferences": hostile_items()}).status_code == 200
        )
        with chromium() as browser:
            yield {"base": base, "api": api, "browser": browser, "sent": sent}
        api.close()


@pytest.fixture
def page(site: dict[str, Any]) -> Iterator[Any]:
    context = site["browser"].new_context(
        base_url=site["base"], permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    sign_in(page, EMAIL, PASSWORD)
    page.problems = problems
    yield page
    context.close()
    assert problems == [], problems


def figure(page: Any, metric: str) -> float:
    return float(page.get_attribute(f'.figure[data-metric="{metric}"]', "data-current"))


def test_period_buttons_show_what_the_api_says(page: Any, site: dict[str, Any]) -> None:
    totals = []
    for label in ("24 hours", "30 days", "7 days"):
        page.click(f".period a:text-is('{label}')")
        page.wait_for_load_state()
        assert page.get_attribute(f".period a:text-is('{label}')", "class").endswith("active")
        period = page.locator(".period")
        start, end = period.get_attribute("data-start"), period.get_attribute("data-end")
        stats = site["api"].get("/api/v1/stats", params={"start": start, "end": end}).json()
        assert (stats["start"], stats["end"]) == (start, end)
        requests = figure(page, "total_requests")
        assert requests == stats["total_requests"]["current"]
        assert figure(page, "avg_confidence") == pytest.approx(stats["avg_confidence"]["current"])
        assert figure(page, "avg_inference_time") == pytest.approx(
            stats["avg_inference_time"]["current"]
        )
        shown = page.inner_text('.figure[data-metric="total_requests"] .figure-value')
        assert shown == f"{stats['total_requests']['current']:,}"
        change = page.locator('.figure[data-metric="total_requests"] .change')
        pct = stats["total_requests"]["change_pct"]
        if pct is not None:
            assert f"{pct:+.1f}%" in change.inner_text()
            assert change.get_attribute("class").split()[1] in ("good", "bad", "neutral")
        tooltip = change.get_attribute("title")
        assert "against the previous period" in tooltip
        totals.append(requests)
    assert len(set(totals)) == 3, "the seeded data should differ between the periods"
    # Both charts were drawn from the aggregated series.
    assert page.locator("#chart-requests canvas").count() == 1
    assert page.locator("#chart-confidence canvas").count() == 1


def test_a_custom_range_is_applied(page: Any, site: dict[str, Any]) -> None:
    page.click("summary:text-is('Custom range')")
    start = (NOW - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    end = (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    page.fill("input[name=start]", start)
    page.fill("input[name=end]", end)
    page.click(".period form button[type=submit]")
    page.wait_for_load_state()
    stats = site["api"].get("/api/v1/stats", params={"start": start, "end": end}).json()
    assert figure(page, "total_requests") == stats["total_requests"]["current"]
    assert page.locator(".period details.custom.active").count() == 1


def test_tabs_list_models_recent_inferences_and_devices(page: Any, site: dict[str, Any]) -> None:
    models = site["api"].get("/api/v1/models").json()["models"]
    rows = page.locator("#pane-models tbody tr")
    assert [rows.nth(i).get_attribute("data-model") for i in range(rows.count())] == [
        m["model_id"] for m in models
    ]
    assert page.locator("#pane-devices").is_hidden()
    page.click("#tab-devices")
    assert page.locator("#pane-devices").is_visible()
    devices = site["api"].get("/api/v1/devices").json()["devices"]
    shown = page.locator("#pane-devices tbody tr")
    assert shown.count() == len(devices)
    first = shown.first.get_attribute("data-device")
    status = next(d["status"] for d in devices if d["device_id"] == first)
    assert shown.first.locator(".status").inner_text() == status
    # The chosen tab survives a reload.
    page.reload()
    assert page.locator("#pane-devices").is_visible()
    page.click("#tab-recent")
    recent = page.locator("#pane-recent tbody tr")
    newest = site["api"].get("/api/v1/inferences", params={"limit": 20}).json()["inferences"]
    assert [recent.nth(i).get_attribute("data-inference-id") for i in range(recent.count())] == [
        i["inference_id"] for i in newest
    ]


def test_model_dashboard_matches_the_api(page: Any, site: dict[str, Any]) -> None:
    page.click("#pane-models a:text-is('vehicles/3')")
    page.wait_for_url(re.compile(r"/models/vehicles/3"))
    period = page.locator(".period")
    params = {
        "start": period.get_attribute("data-start"),
        "end": period.get_attribute("data-end"),
        "model_id": "vehicles/3",
    }
    classes = site["api"].get("/api/v1/classes", params=params).json()["classes"]
    bars = page.locator(".class-chart .bar-row")
    assert bars.count() == len(classes) > 1
    for i, expected in enumerate(classes):
        bar = bars.nth(i)
        assert bar.get_attribute("data-class") == expected["class"]
        assert int(bar.get_attribute("data-count")) == expected["count"]
        assert float(bar.get_attribute("data-share")) == pytest.approx(expected["share"])
        row = page.locator(f'.class-table tr[data-class="{expected["class"]}"] td')
        assert row.nth(1).inner_text() == f"{expected['count']:,}"
        assert row.nth(3).inner_text() == f"{expected['avg_confidence'] * 100:.1f}%"
    stats = site["api"].get("/api/v1/stats", params=params).json()
    assert figure(page, "total_requests") == stats["total_requests"]["current"]
    # Confidence and realised precision are drawn side by side, one line each; precision
    # only once operators have judged some of the period's inferences.
    judged = site["api"].get("/api/v1/precision", params=params).json()["judged"]
    legend = page.locator("#chart-confidence .u-legend .u-series th")
    lines = ["Avg confidence", *(["Realised precision"] if judged else [])]
    assert legend.all_inner_texts()[1:] == lines
    # The confidence histogram counts every prediction of the period.
    columns = page.locator("#confidence-histogram .column")
    counted = sum(int(columns.nth(i).get_attribute("data-count")) for i in range(columns.count()))
    assert counted == sum(c["count"] for c in classes)
    timed = page.locator("#time-histogram .column")
    assert (
        sum(int(timed.nth(i).get_attribute("data-count")) for i in range(timed.count()))
        == (stats["total_requests"]["current"])
    )
    page.click("a.see-all")
    page.wait_for_url(re.compile(r"/inferences\?"))
    models = page.locator("table.inferences tbody tr td:nth-child(3)")
    assert models.count() > 0
    assert set(models.all_inner_texts()) == {"vehicles/3"}


def test_filters_narrow_the_table_and_survive_a_reload(page: Any, site: dict[str, Any]) -> None:
    page.goto("/inferences")
    cameras = page.locator('td[data-field="camera"]')
    assert {"north", "south"} <= set(cameras.all_inner_texts())
    page.fill("input[name=class]", "bus")
    page.fill("input[name=meta_field]", "camera")
    page.fill("input[name=meta_value]", "north")
    page.fill("input[name=min_confidence]", "0.5")
    page.click(".filters button[type=submit]")
    page.wait_for_load_state()
    query = parse_qs(urlparse(page.url).query)
    assert (query["class"], query["meta_field"]) == (["bus"], ["camera"])
    expected = (
        site["api"]
        .get(
            "/api/v1/inferences",
            params={"class": "bus", "metadata.camera": "north", "min_confidence": 0.5, "limit": 50},
        )
        .json()["inferences"]
    )

    def ids() -> list[str]:
        shown: list[str] = page.locator("table.inferences tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.inferenceId)"
        )
        return shown

    assert ids() == [i["inference_id"] for i in expected]
    assert len(expected) > 0
    page.reload()
    assert ids() == [i["inference_id"] for i in expected]
    assert page.input_value("input[name=class]") == "bus"
    assert page.input_value('input[name="metadata.camera"]') == "north"
    # The metadata column shows the filtered value on every row.
    assert set(page.locator('td[data-field="camera"]').all_inner_texts()) == {"north"}


def test_inference_details(page: Any, site: dict[str, Any]) -> None:
    chosen = max(site["sent"], key=lambda i: (len(i["predictions"]), i["inference_id"]))
    page.goto(f"/inferences/{chosen['inference_id']}")
    predictions = chosen["predictions"]
    assert page.locator("#predictions-layer .shape rect").count() == len(predictions)
    # Boxes are drawn where they were predicted (centre-based x, y).
    first = page.locator("#predictions-layer .shape rect").first
    assert float(first.get_attribute("x")) == pytest.approx(predictions[0]["x"] - 25)
    # Each label sits inside its own box's top-left corner (not over the box above it), in
    # letters a person reads (10 to 30 pixels tall on the page, whatever the image's size).
    for shape in page.locator("#predictions-layer .shape").all():
        box = shape.locator("rect").bounding_box()
        label = shape.locator("text").bounding_box()
        assert box["x"] - 1 <= label["x"] < box["x"] + box["width"]
        assert box["y"] - 1 <= label["y"] < box["y"] + box["height"]
        assert 10 <= label["height"] <= 30
    # The verdict's buttons stay within the details panel, however narrow.
    panel = page.locator("section.details").bounding_box()
    for button in page.locator(".verdict-form button").all():
        shown = button.bounding_box()
        assert shown["x"] + shown["width"] <= panel["x"] + panel["width"]
    page.uncheck("#toggle-predictions")
    assert page.locator("#predictions-layer").is_hidden()
    page.check("#toggle-predictions")
    assert page.locator("#predictions-layer").is_visible()

    rows = page.locator(".detections-table tbody tr")

    def column(attribute: str) -> list[str]:
        return [rows.nth(i).get_attribute(attribute) for i in range(rows.count())]

    page.click("button.sort[data-sort='class']")
    assert column("data-class") == sorted(p["class"] for p in predictions)
    page.click("button.sort[data-sort='confidence']")
    assert [float(v) for v in column("data-confidence")] == sorted(
        p["confidence"] for p in predictions
    )
    page.click("button.sort[data-sort='confidence']")
    assert [float(v) for v in column("data-confidence")] == sorted(
        (p["confidence"] for p in predictions), reverse=True
    )

    # A field hidden from the cog menu stays hidden after a reload.
    assert page.locator('.field[data-field="task"]').is_visible()
    page.click("#field-menu summary")
    page.uncheck('[data-toggle-field="task"]')
    assert page.locator('.field[data-field="task"]').is_hidden()
    page.reload()
    assert page.locator('.field[data-field="task"]').is_hidden()
    assert page.locator('.field[data-field="model"]').is_visible()

    page.click("#copy-link")
    page.wait_for_function("document.getElementById('copy-status').textContent !== ''")
    assert page.evaluate("navigator.clipboard.readText()") == page.url
    assert page.locator("#download-image").is_disabled()  # no image stored

    page.click('.field[data-field="device"] a.search')
    page.wait_for_url(re.compile(r"/inferences\?"))
    devices = page.locator("table.inferences tbody tr td:nth-child(4)").all_inner_texts()
    assert len(devices) > 0
    assert set(devices) == {chosen["device_id"]}


def test_markup_in_names_is_shown_as_text(page: Any, site: dict[str, Any]) -> None:
    for path in ("/", "/inferences", "/inferences/hostile-1"):
        page.goto(path)
        page.click("#tab-models") if path == "/" else None
        assert page.get_by_text(HOSTILE["model"], exact=False).count() >= 1, path
    page.goto("/inferences/hostile-1")
    for value in HOSTILE.values():
        assert page.get_by_text(value, exact=False).count() >= 1, value
    page.goto("/models/" + HOSTILE["model"].replace("<", "%3C").replace(">", "%3E"))
    assert page.get_by_text(HOSTILE["class"], exact=False).count() >= 1
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("script:not([src]):not([type='application/json'])").count() == 0
    # Any dialog or script error from the payloads fails the test (see the `page` fixture).


def test_unknown_inference_is_a_page_that_says_so(page: Any) -> None:
    response = page.goto("/inferences/no-such-id")
    assert response.status == 404
    assert page.inner_text("h1") == "No such inference"
    assert "no-such-id" in page.inner_text(".message")
    page.problems.clear()  # the browser logs the 404 itself


def test_alert_pages_show_the_rule_its_preview_and_the_overview_tab(
    page: Any, site: dict[str, Any]
) -> None:
    rule = {
        "name": "<b>vehicles</b> confidence",
        "metric": "avg_confidence",
        "condition": "below",
        "threshold": 0.5,
        "model_id": "vehicles/3",
    }
    created = site["api"].post("/api/v1/alerts", json=rule)
    assert created.status_code == 201, created.text
    page.goto(f"/alerts/{created.json()['id']}")
    assert page.locator("#alert-preview canvas").count() == 1
    assert page.inner_text("#rule-state") == "ok"
    assert page.get_by_text("<b>vehicles</b> confidence").count() >= 1  # shown as text
    page.goto("/")
    page.click("#tab-alerts")
    assert page.locator(f'#pane-alerts tr[data-rule="{created.json()["id"]}"]').is_visible()


def test_an_event_page_draws_its_detections_over_its_image(page: Any, site: dict[str, Any]) -> None:
    api = site["api"]
    buffer = io.BytesIO()
    Image.new("RGB", (200, 100), (20, 90, 160)).save(buffer, format="PNG")
    uploaded = api.post(
        "/vision-events/upload", files={"file": ("frame.png", buffer.getvalue(), "image/png")}
    )
    assert uploaded.status_code == 201, uploaded.text
    source = uploaded.json()["sourceId"]
    event = {
        "eventId": "browser-event",
        "eventType": "safety_alert",
        "useCaseId": "dock",
        "timestamp": NOW.isoformat(),
        "eventData": {"alertType": "no_helmet"},
        "images": [
            {
                "sourceId": source,
                "objectDetections": [
                    {
                        "class": "person",
                        "x": 50,
                        "y": 50,
                        "width": 40,
                        "height": 20,
                        "confidence": 0.9,
                    }
                ],
            }
        ],
    }
    assert api.post("/vision-events", json=event).status_code == 201
    page.goto("/events/dock")
    page.click('tr[data-event-id="browser-event"] a')
    page.wait_for_url(re.compile(r"/events/dock/browser-event$"))
    # The box sits where it was detected, on the image scaled to the page.
    drawing = page.locator("svg.drawing").bounding_box()
    box = page.locator("svg.drawing .shape rect").bounding_box()
    scale = drawing["width"] / 200
    assert drawing["height"] == pytest.approx(100 * scale, abs=2)
    assert box["x"] - drawing["x"] == pytest.approx(30 * scale, abs=2)
    assert box["y"] - drawing["y"] == pytest.approx(40 * scale, abs=2)
    assert box["width"] == pytest.approx(40 * scale, abs=2)
    image = page.get_attribute("svg.drawing image", "href")
    assert page.evaluate("url => fetch(url).then(r => r.status)", image) == 200
    # A verdict, through the form as a person gives it.
    page.click('button[name="verdict"][value="incorrect"]')
    page.wait_for_url(re.compile(r"/events/dock/browser-event$"))
    assert page.inner_text("#latest-verdict").startswith("Latest verdict: Incorrect")
