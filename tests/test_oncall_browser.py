"""What an on-call engineer reads in Chromium: latency and error charts equal to the API's,
series that toggle, and an alert rule's firing span where it happened on the model's chart."""

import math
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.support.browser import chromium, chromium_missing, sign_in
from tests.support.dashboard import PASSWORD
from tests.support.server import serving
from tests.support.services import unavailable
from tests.support.workspaces import new_workspace

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

NOW = datetime.now(UTC)
SLOW_FOR = timedelta(hours=3)  # cam/1 has been slower since its deploy this long ago
EMAIL = "oncall@example.com"


def traffic(rng: random.Random) -> list[dict[str, Any]]:
    """Six hours of cam/1 (slower in the last three, a few failures), and its last ten
    minutes unsure: confidence 0.2, which fires the rule below 0.5."""
    sent = []
    for n in range(600):
        ago = timedelta(minutes=rng.uniform(12, 360))
        slow = ago < SLOW_FOR
        failed = rng.random() < 0.04
        sent.append(
            {
                "inference_id": f"cam-{n}",
                "model_id": "cam/1",
                "device_id": rng.choice(["dock-cam-1", "dock-cam-2"]),
                "timestamp": (NOW - ago).isoformat(),
                "inference_time": rng.lognormvariate(-3.0 if slow else -3.7, 0.4),
                "predictions": []
                if failed
                else [{"class": "box", "confidence": round(rng.uniform(0.6, 0.95), 3)}],
                "error": "decode failed" if failed else None,
            }
        )
    for n in range(12):
        sent.append(
            {
                "inference_id": f"cam-unsure-{n}",
                "model_id": "cam/1",
                "device_id": "dock-cam-3",
                "timestamp": (NOW - timedelta(minutes=9 - n * 0.5)).isoformat(),
                "inference_time": 0.05,
                "predictions": [{"class": "box", "confidence": 0.2}],
            }
        )
    return sent


# A parcel sorter's two versions over the same hours: the new one sees a new class.
SORTER = {
    "sorter/1": {"parcel": 0.7, "envelope": 0.3},
    "sorter/2": {"parcel": 0.5, "envelope": 0.3, "tube": 0.2},
}


def sorter_traffic(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "inference_id": f"{model}-{n}",
            "model_id": model,
            "device_id": "sorter-line",
            "timestamp": (NOW - timedelta(minutes=rng.uniform(15, 300))).isoformat(),
            "inference_time": 0.02,
            "predictions": [
                {
                    "class": rng.choices(list(mix), weights=list(mix.values()))[0],
                    "confidence": round(rng.uniform(0.51, 0.94), 2) + 0.002,
                }
                for _ in range(rng.randrange(1, 4))
            ],
        }
        for model, mix in SORTER.items()
        for n in range(150)
    ]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    missing = chromium_missing()
    if missing:
        unavailable(missing)
    env = {
        "VISIONWATCH_DATA_DIR": str(tmp_path_factory.mktemp("oncall")),
        "VISIONWATCH_ALERT_INTERVAL_SECONDS": "1",
    }
    key = new_workspace(env, "oncall", user=EMAIL)
    with serving(env) as base:
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"})
        rule = {
            "name": "cam/1 unsure",
            "metric": "avg_confidence",
            "condition": "below",
            "threshold": 0.5,
            "model_id": "cam/1",
            "window_seconds": 600,
            "min_samples": 5,
        }
        made = api.post("/api/v1/alerts", json=rule)
        assert made.status_code == 201, made.text
        sent = traffic(random.Random(5)) + sorter_traffic(random.Random(6))
        for start in range(0, len(sent), 500):
            response = api.post(
                "/api/v1/inferences", json={"inferences": sent[start : start + 500]}
            )
            assert response.status_code == 200, response.text
        with chromium() as browser:
            yield {
                "base": base,
                "api": api,
                "browser": browser,
                "rule": made.json()["id"],
                "sent": sent,
            }
        api.close()


@pytest.fixture
def page(site: dict[str, Any]) -> Iterator[Any]:
    context = site["browser"].new_context(base_url=site["base"])
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    sign_in(page, EMAIL, PASSWORD)
    yield page
    context.close()
    assert problems == [], problems


def chart_data(page: Any, chart: str) -> list[list[float | None]]:
    page.wait_for_function(f"window.visionwatchCharts && window.visionwatchCharts[{chart!r}]")
    data: list[list[float | None]] = page.evaluate(
        f"window.visionwatchCharts[{chart!r}].data.map((column) => Array.from(column))"
    )
    return data


def period_of(page: Any) -> dict[str, str]:
    period = page.locator(".period")
    return {"start": period.get_attribute("data-start"), "end": period.get_attribute("data-end")}


def api_values(site: dict[str, Any], metric: str, **params: str) -> list[Any]:
    found = site["api"].get("/api/v1/timeseries", params={"metric": metric, **params})
    assert found.status_code == 200, found.text
    return [point["value"] for point in found.json()["points"]]


def test_latency_and_error_charts_show_what_the_api_answers(
    page: Any, site: dict[str, Any]
) -> None:
    page.goto("/models/cam/1?period=7d")
    period = {**period_of(page), "model_id": "cam/1", "interval": "hour"}
    latency = chart_data(page, "chart-latency")
    for column, metric in ((1, "p50"), (2, "p95"), (3, "p99")):
        assert latency[column] == api_values(site, f"inference_time_{metric}", **period), metric
    # The deploy after which it slowed shows: every hour that held only slow requests has a
    # higher p95 than every hour that held only earlier ones. Hours are told apart by what
    # was sent in them (the last hour may hold only dock-cam-3's 0.05 s requests).
    slow_hours: list[float] = []
    fast_hours: list[float] = []
    for hour, p95 in zip(latency[0], latency[2], strict=True):
        assert hour is not None
        sent = [
            item
            for item in site["sent"]
            if item["model_id"] == "cam/1"
            and hour <= datetime.fromisoformat(item["timestamp"]).timestamp() < hour + 3600
        ]
        if p95 is None or len(sent) < 20 or any(i["device_id"] == "dock-cam-3" for i in sent):
            continue
        slow = {NOW - datetime.fromisoformat(i["timestamp"]) < SLOW_FOR for i in sent}
        if slow == {True}:
            slow_hours.append(p95)
        elif slow == {False}:
            fast_hours.append(p95)
    assert slow_hours, "an hour of only slow requests"
    assert len(fast_hours) >= 2, "two hours of only earlier requests"
    assert min(slow_hours) > max(fast_hours), (slow_hours, fast_hours)
    errors = chart_data(page, "chart-errors")
    assert errors[1] == api_values(site, "error_rate", **period)
    assert any(value for value in errors[1] if value)
    requests = chart_data(page, "chart-requests")
    assert requests[2] == api_values(site, "errors", **period)
    # The overview draws the same charts for the whole workspace.
    page.goto("/?period=7d")
    overview = {**period_of(page), "interval": "hour"}
    assert chart_data(page, "chart-latency")[2] == api_values(
        site, "inference_time_p95", **overview
    )


def test_a_legend_label_toggles_its_series_and_hovering_reads_a_bucket(page: Any) -> None:
    page.goto("/models/cam/1?period=7d")
    chart_data(page, "chart-latency")
    legend = page.locator("#chart-latency .u-legend .u-series").filter(has_text="p99")
    legend.locator(".u-label").click()
    shown = page.evaluate("window.visionwatchCharts['chart-latency'].series[3].show")
    assert shown is False
    legend.locator(".u-label").click()
    assert page.evaluate("window.visionwatchCharts['chart-latency'].series[3].show") is True
    # Hovering over the plot fills the legend with the bucket's values.
    box = page.locator("#chart-latency .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] / 2)
    value = page.locator("#chart-latency .u-legend .u-series").filter(has_text="p95")
    assert value.locator(".u-value").inner_text().endswith("ms")


@pytest.mark.parametrize(
    ("rule", "name", "caption", "unit", "scale"),
    [
        (
            {"metric": "p95_inference_time", "condition": "above", "threshold": 0.1},
            "p95 inference time",
            "100.0 ms",
            " ms",
            1000,
        ),
        (
            {"metric": "avg_confidence", "condition": "below", "threshold": 0.5},
            "Average confidence",
            "50.0%",
            "%",
            100,
        ),
    ],
    ids=["latency", "confidence"],
)
def test_an_alert_preview_reads_in_its_metrics_unit(
    page: Any,
    site: dict[str, Any],
    rule: dict[str, Any],
    name: str,
    caption: str,
    unit: str,
    scale: int,
) -> None:
    """Not 0.1 or 0.85: the threshold in the caption and the hovered values in the legend in
    the unit the rule's history writes (milliseconds, percent), the metric by its name."""
    made = site["api"].post(
        "/api/v1/alerts", json={"name": f"cam {rule['metric']}", "model_id": "cam/1", **rule}
    )
    assert made.status_code == 201, made.text
    page.goto(f"/alerts/{made.json()['id']}")
    figure = page.inner_text("figure.chart figcaption")
    assert figure.startswith(f"{name} over the last day")  # not the API's metric id
    assert f"the threshold is {caption}" in figure
    values = page.evaluate("JSON.parse(document.getElementById('alert-series').textContent)")
    last = next(v for v in reversed(values["value"]) if v is not None)
    box = page.locator("#alert-preview .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2)
    legend = page.locator("#alert-preview .u-legend .u-series")
    shown = legend.filter(has_text=name).locator(".u-value").inner_text()
    threshold = legend.filter(has_text="threshold").locator(".u-value").inner_text()
    assert shown.endswith(unit)
    assert threshold == caption
    # The value the chart holds, to the one decimal shown (of a millisecond, of a percent).
    assert float(shown.removesuffix(unit)) == pytest.approx(last * scale, abs=0.051)


def test_a_firing_rule_is_marked_on_the_model_chart_when_it_fired(
    page: Any, site: dict[str, Any]
) -> None:
    rule = site["rule"]
    deadline = time.monotonic() + 30
    while True:
        history = site["api"].get(f"/api/v1/alerts/{rule}/history").json()["events"]
        fired = [event for event in history if event["to"] == "firing"]
        if fired:
            break
        assert time.monotonic() < deadline, history
        time.sleep(0.5)
    start = int(datetime.fromisoformat(fired[-1]["at"].replace("Z", "+00:00")).timestamp())
    page.goto("/models/cam/1?period=24h")
    chart_data(page, "chart-confidence")
    mark = page.locator(f'#chart-confidence .mark-alert[data-rule="{rule}"]')
    assert mark.count() == 1
    assert int(mark.get_attribute("data-start")) == start
    assert mark.get_attribute("data-end") == ""  # still firing
    root = page.locator("#chart-confidence .uplot")
    low, high = float(root.get_attribute("data-x-min")), float(root.get_attribute("data-x-max"))
    width = float(root.get_attribute("data-width"))
    left = page.evaluate(
        "(element) => parseFloat(element.style.left)",
        mark.element_handle(),
    )
    assert abs(left - (start - low) / (high - low) * width) <= 1.5
    # The same span on the requests chart; a click on its edge opens the rule.
    assert page.locator(f'#chart-requests .mark-alert[data-rule="{rule}"]').count() == 1
    mark.locator(".mark-edge").click()
    page.wait_for_url(f"**/alerts/{rule}")
    assert page.inner_text("#rule-state") == "firing"


def total_shown(page: Any) -> int:
    found = page.evaluate(
        "document.querySelector('.figure[data-metric=\"total_requests\"]').dataset.current"
    )
    return int(found)


def send_now(site: dict[str, Any], count: int, tag: str) -> None:
    items = [
        {
            "inference_id": f"live-{tag}-{n}",
            "model_id": "cam/1",
            "device_id": "dock-cam-1",
            "timestamp": datetime.now(UTC).isoformat(),
            "inference_time": 0.03,
            "predictions": [{"class": "box", "confidence": 0.8}],
        }
        for n in range(count)
    ]
    sent = site["api"].post("/api/v1/inferences", json={"inferences": items})
    assert sent.status_code == 200, sent.text


def counted(site: dict[str, Any], total: int) -> None:
    """Wait until the server's rollups hold `total` inferences of cam/1 in the last day."""
    deadline = time.monotonic() + 15
    while True:
        now = datetime.now(UTC)
        stats = (
            site["api"]
            .get(
                "/api/v1/stats",
                params={
                    "model_id": "cam/1",
                    "start": (now - timedelta(hours=24)).isoformat(),
                    "end": (now + timedelta(minutes=1)).isoformat(),
                },
            )
            .json()
        )
        if stats["total_requests"]["current"] == total:
            return
        assert time.monotonic() < deadline, stats
        time.sleep(0.2)


def shown_eventually(page: Any, total: int) -> None:
    deadline = time.monotonic() + 15
    while total_shown(page) != total:
        assert time.monotonic() < deadline, total_shown(page)
        time.sleep(0.2)


SET_VISIBILITY = """(state) => {
  Object.defineProperty(document, "visibilityState", { get: () => state, configurable: true });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_a_page_ending_now_refreshes_itself_and_rests_while_hidden(
    page: Any, site: dict[str, Any]
) -> None:
    page.clock.install()
    page.goto("/models/cam/1?period=24h")
    before = total_shown(page)
    page.evaluate("window.notReloaded = true")
    send_now(site, 5, "a")
    counted(site, before + 5)
    page.clock.run_for(31_000)
    shown_eventually(page, before + 5)
    assert page.evaluate("window.notReloaded") is True  # swapped in place, not reloaded
    assert page.evaluate("document.querySelector('main').dataset.refreshes") == "1"
    assert page.locator("#chart-latency canvas").count() == 1  # charts drawn again
    assert page.inner_text("#live-status").startswith("Live")

    # Hidden, it rests however long; shown again, it catches up at once.
    page.evaluate(SET_VISIBILITY, "hidden")
    send_now(site, 4, "b")
    counted(site, before + 9)
    page.clock.run_for(95_000)
    time.sleep(1)
    assert total_shown(page) == before + 5
    assert page.evaluate("document.querySelector('main').dataset.refreshes") == "1"
    page.evaluate(SET_VISIBILITY, "visible")
    page.clock.run_for(100)
    shown_eventually(page, before + 9)

    # A custom range that ended in the past does not refresh.
    page.goto(
        "/models/cam/1?start={}&end={}".format(
            (NOW - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M"),
            (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        )
    )
    assert page.locator("main[data-live]").count() == 0
    assert page.locator("#live-status").count() == 0


def test_times_show_in_the_viewers_zone_with_utc_on_hover_or_in_utc_by_choice(
    site: dict[str, Any],
) -> None:
    context = site["browser"].new_context(base_url=site["base"], timezone_id="America/New_York")
    page = context.new_page()
    sign_in(page, EMAIL, PASSWORD)
    page.goto("/models/cam/1?period=24h")
    seen = page.locator(".model-facts time")
    moment = datetime.fromisoformat(seen.get_attribute("datetime").replace("Z", "+00:00"))
    local = moment.astimezone(ZoneInfo("America/New_York"))
    assert seen.inner_text() == local.strftime("%Y-%m-%d %H:%M ") + str(local.tzname())
    assert seen.get_attribute("title") == moment.strftime("%Y-%m-%d %H:%M UTC")
    assert page.locator("#time-zone").input_value() == "local"

    with page.expect_navigation():
        page.select_option("#time-zone", "utc")
    assert page.locator(".model-facts time").inner_text() == moment.strftime("%Y-%m-%d %H:%M UTC")
    page.reload()
    assert page.locator("#time-zone").input_value() == "utc"
    assert page.locator(".model-facts time").inner_text() == moment.strftime("%Y-%m-%d %H:%M UTC")
    context.close()


@pytest.mark.parametrize(
    ("filters", "source"),
    [("device_id=dock-cam-3", "rollups"), ("max_confidence=0.3&model_id=cam/1", "rows")],
)
def test_the_inferences_page_charts_exactly_its_filters(
    page: Any, site: dict[str, Any], filters: str, source: str
) -> None:
    page.goto(f"/inferences?period=24h&{filters}")
    page.wait_for_selector("#selection[data-total]")
    total = int(page.get_attribute("#selection", "data-total"))
    rows = page.locator("table.inferences tbody tr").count()
    assert total == rows == 12  # the unsure dozen, on one page
    assert page.locator(".pages .next").count() == 0
    data = chart_data(page, "chart-selection")
    assert sum(value or 0 for value in data[1]) == total
    assert page.inner_text("#selection-total") == "12"
    expected = "from the rollups" if source == "rollups" else "counted from the rows"
    assert expected in page.inner_text("#selection-source")
    # Its mean confidence is the dozen's: 0.2 wherever any of them fell.
    shown = [value for value in data[2] if value is not None]
    assert shown
    assert shown == pytest.approx([0.2] * len(shown))


def drift_scores(current: Counter[str], baseline: Counter[str]) -> tuple[float, float]:
    """PSI (a share of 0 counted as 1e-4) and Jensen-Shannon distance (base 2), from scratch."""
    p_total, q_total = sum(current.values()), sum(baseline.values())
    psi, divergence = 0.0, 0.0
    for key in set(current) | set(baseline):
        p, q = current[key] / p_total, baseline[key] / q_total
        psi += (max(p, 1e-4) - max(q, 1e-4)) * math.log(max(p, 1e-4) / max(q, 1e-4))
        m = (p + q) / 2
        divergence += sum(x / 2 * math.log2(x / m) for x in (p, q) if x)
    return psi, math.sqrt(divergence)


def test_the_comparison_shows_the_class_mix_and_drift_the_items_give(
    page: Any, site: dict[str, Any]
) -> None:
    page.goto("/compare?period=24h&a_model_id=sorter/1&b_model_id=sorter/2")
    api = site["api"].get(
        "/api/v1/compare",
        params={"a_model_id": "sorter/1", "b_model_id": "sorter/2", **period_of(page)},
    )
    assert api.status_code == 200, api.text
    answer = api.json()
    counted = {
        model: Counter(
            p["class"]
            for item in site["sent"]
            if item["model_id"] == model
            for p in item["predictions"]
        )
        for model in SORTER
    }
    shown = {}
    for row in page.locator("#compare-classes tbody tr").all():
        cells = [cell.inner_text().strip() for cell in row.locator("td").all()]
        shown[cells[0]] = (int(cells[1].replace(",", "")), int(cells[3].replace(",", "")))
    assert shown == {
        name: (counted["sorter/1"][name], counted["sorter/2"][name])
        for name in counted["sorter/1"] | counted["sorter/2"]
    }
    assert shown == {row["class"]: (row["a_count"], row["b_count"]) for row in answer["classes"]}
    psi, js = drift_scores(counted["sorter/2"], counted["sorter/1"])
    for score, expected in (("class_psi", psi), ("class_js", js)):
        text = page.locator(f'#drift [data-score="{score}"] dd').inner_text().split()[0]
        assert float(text) == pytest.approx(answer["drift"][score], abs=5e-4)
        assert float(text) == pytest.approx(expected, abs=5e-4)
    requests = page.locator('#compare-figures tr[data-figure="requests"] td').all()
    assert [cell.inner_text() for cell in requests[:2]] == ["150", "150"]


def test_a_device_page_shows_the_figures_the_api_gives(page: Any, site: dict[str, Any]) -> None:
    page.goto("/devices/dock-cam-3?period=24h")
    stats = (
        site["api"]
        .get("/api/v1/stats", params={"device_id": "dock-cam-3", **period_of(page)})
        .json()
    )
    fleet = site["api"].get("/api/v1/devices", params={"search": "dock-cam-3"}).json()
    (device,) = [found for found in fleet["devices"] if found["device_id"] == "dock-cam-3"]
    figure = page.locator('.figure[data-metric="total_requests"] .figure-value')
    assert figure.inner_text() == f"{stats['total_requests']['current']:,}" == "12"
    confidence = page.locator('.figure[data-metric="avg_confidence"] .figure-value')
    assert confidence.inner_text() == f"{stats['avg_confidence']['current'] * 100:.1f}%"
    assert page.inner_text("#device-status") == device["status"]
    # No errors at all: the error-rate axis still reads from 0 to a sensible rate.
    assert stats["errors"]["current"] == 0
    chart_data(page, "chart-errors")
    axis = page.evaluate("window.visionwatchCharts['chart-errors'].scales.y")
    assert axis["min"] == 0
    assert 0.01 <= axis["max"] <= 0.02
