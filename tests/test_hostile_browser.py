"""Markup and script payloads through every field that reaches a page, looked at in Chromium.

Each payload goes in as a model, device, class, inference id, metadata field and value,
error message, device version, hostname and tag, alert rule name, capture rule class and
metadata, URL filter, sign-in `next` and email; and as every text of a vision event (use
case, id, source, event data, metadata, image label, classes, a verdict's comment). On
every page: no payload script ran, and no payload became markup (no element with an event
handler, no javascript: link, no inline script or frame): the page's own escaping holds,
whatever the CSP would also stop.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from tests.support.browser import chromium, chromium_missing, sign_in
from tests.support.dashboard import PASSWORD
from tests.support.server import serving
from tests.support.services import unavailable
from tests.support.workspaces import new_workspace

# Chromium, and `visionwatch serve` as a process.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

EMAIL = "ops@example.com"
PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    '"><svg onload=window.__pwned=1>',
    "'><iframe srcdoc='<script>parent.__pwned=1</script>'>",
    "javascript:window.__pwned=1",
    "</textarea></title><script>window.__pwned=1</script>",
    "{{7*7}}${7*7}<b>bold</b>",
    '<a href="javascript:window.__pwned=1">x</a>',
)
# What each page must not have: anything a payload could have turned into live markup.
INSPECT = """() => {
  const live = [];
  for (const element of document.querySelectorAll("*")) {
    for (const attribute of element.attributes) {
      const scripted = /^\\s*javascript:/i.test(attribute.value)
        && ["href", "src", "action", "formaction", "xlink:href"].includes(attribute.name);
      if (attribute.name.startsWith("on") || scripted) live.push(element.outerHTML.slice(0, 120));
    }
  }
  for (const script of document.querySelectorAll("script:not([src])")) {
    if (script.type !== "application/json") live.push(script.outerHTML.slice(0, 120));
  }
  // <b> is a payload's own tag (the pages' bold is <strong>): found, it was not escaped.
  for (const frame of document.querySelectorAll("iframe, object, embed, base, b")) {
    live.push(frame.outerHTML.slice(0, 120));
  }
  return { pwned: window.__pwned === 1, live, text: document.body.innerText };
}"""


def hostile_items(now: datetime) -> list[dict[str, Any]]:
    items = []
    for number, payload in enumerate(PAYLOADS):
        items.append(
            {
                "inference_id": f"h{number}-{payload}",
                "model_id": f"{payload}/1",
                "device_id": payload,
                "timestamp": (now - timedelta(minutes=number + 1)).isoformat(),
                "inference_time": 0.02,
                "image": {"width": 100, "height": 100},
                "predictions": [
                    {
                        "class": payload,
                        "confidence": 0.5,
                        "x": 50,
                        "y": 50,
                        "width": 20,
                        "height": 20,
                    }
                ],
                "metadata": {payload[:100]: payload, "note": payload},
            }
        )
        items.append(
            {
                "inference_id": f"e{number}",
                "model_id": f"{payload}/1",
                "timestamp": (now - timedelta(minutes=number + 1)).isoformat(),
                "error": payload,
            }
        )
    return items


def hostile_events(now: datetime) -> list[dict[str, Any]]:
    """An event per payload, the payload in every text an event carries (its use case too),
    and an operator's verdict on each, commented with the payload."""
    events: list[dict[str, Any]] = []
    for number, payload in enumerate(PAYLOADS):
        event_id = f"ev{number}-{payload}"
        events.append(
            {
                "eventId": event_id,
                "eventType": "custom",
                "useCaseId": payload,
                "timestamp": (now - timedelta(minutes=number + 1)).isoformat(),
                "deviceId": payload,
                "streamId": payload,
                "workflowId": payload,
                "eventData": {"value": payload, payload[:100]: payload, "externalId": payload},
                "images": [
                    {
                        "sourceId": payload,
                        "label": payload,
                        "objectDetections": [
                            {
                                "x": 5,
                                "y": 5,
                                "width": 4,
                                "height": 4,
                                "class": payload,
                                "confidence": 0.9,
                            }
                        ],
                        "classifications": [{"class": payload, "confidence": 0.4}],
                    }
                ],
                "customMetadata": {"note": payload},
            }
        )
        events.append(
            {
                "eventId": f"fb{number}",
                "eventType": "operator_feedback",
                "useCaseId": payload,
                "timestamp": now.isoformat(),
                "eventData": {"relatedEventId": event_id, "feedback": "incorrect"},
                "comment": payload,
            }
        )
    return events


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    missing = chromium_missing()
    if missing:
        unavailable(missing)
    env = {"VISIONWATCH_DATA_DIR": str(tmp_path_factory.mktemp("hostile"))}
    key = new_workspace(env, "acme", user=EMAIL)
    with serving(env) as base:
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"})
        batch = {"inferences": hostile_items(datetime.now(UTC))}
        assert api.post("/api/v1/inferences", json=batch).status_code == 200
        rules = []
        for payload in PAYLOADS:
            beat = {
                "device_id": payload,
                "version": payload,
                "hostname": payload,
                "tags": [payload],
            }
            assert api.post("/api/v1/heartbeats", json=beat).status_code == 200
            rule = {
                "name": payload,
                "metric": "avg_confidence",
                "condition": "below",
                "threshold": 0.9,
                "model_id": f"{payload}/1",
                "device_id": payload,
                "min_samples": 0,
            }
            created_rule = api.post("/api/v1/alerts", json=rule)
            assert created_rule.status_code == 201, created_rule.text
            rules.append(created_rule.json()["id"])
            capture = {
                "model_id": f"{payload}/1",
                "classes": [payload],
                "metadata": {"note": payload},
            }
            assert api.put("/api/v1/capture-rules", json=capture).status_code == 200
        events = hostile_events(datetime.now(UTC))
        written = api.post("/vision-events/batch", json={"events": events})
        assert written.status_code == 201, written.text
        with chromium() as browser:
            yield {"base": base, "browser": browser, "rules": rules, "events": events}
        api.close()


class Visits:
    """A browser context that inspects every page it shows."""

    def __init__(self, site: dict[str, Any], signed_in: bool = True) -> None:
        self.context = site["browser"].new_context(base_url=site["base"])
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.checked = 0
        self.page.on("dialog", lambda dialog: self.problems.append(f"dialog {dialog.message}"))
        self.page.on("pageerror", lambda error: self.problems.append(f"page error {error}"))
        if signed_in:
            sign_in(self.page, EMAIL, PASSWORD)

    def check(self, where: str) -> str:
        found = self.page.evaluate(INSPECT)
        assert not found["pwned"], f"a payload ran on {where}"
        assert found["live"] == [], f"payload markup on {where}: {found['live']}"
        self.checked += 1
        text: str = found["text"]
        return text

    def visit(self, path: str) -> str:
        response = self.page.goto(path)
        assert response is not None
        assert response.status < 500, (path, response.status)
        return self.check(path)

    def close(self) -> None:
        print(f"\npages inspected: {self.checked}")  # shown with -s; docs/reliability.md
        self.context.close()
        assert self.problems == [], self.problems


def test_no_payload_runs_or_becomes_markup_on_any_page(site: dict[str, Any]) -> None:
    visits = Visits(site)
    try:
        text = visits.visit("/?period=24h")
        for tab in ("#tab-models", "#tab-recent", "#tab-devices", "#tab-alerts"):
            visits.page.click(tab)
            text += visits.check(f"/ {tab}")
        for payload in PAYLOADS:
            assert payload in text, f"{payload!r} is shown as text on the overview"
        visits.visit("/inferences?period=24h")
        visits.visit("/alerts")
        visits.visit("/capture-rules")
        for number, payload in enumerate(PAYLOADS):
            model = quote(f"{payload}/1", safe="/")
            shown = visits.visit(f"/models/{model}?period=24h")
            assert payload in shown, visits.page.url
            detail = visits.visit("/inferences/" + quote(f"h{number}-{payload}", safe=""))
            assert detail.count(payload) >= 3  # the model, device, class, metadata
            if visits.page.locator("summary").count():  # the cog menu of hidden fields
                visits.page.locator("summary").first.click()
                visits.check(f"cog menu of {payload!r}")
            visits.visit("/inferences/" + quote(f"e{number}", safe=""))
            filters = {
                "model_id": f"{payload}/1",
                "device_id": payload,
                "class": payload,
                "meta_field": "note",
                "meta_value": payload,
                "period": "24h",
            }
            listed = visits.visit("/inferences?" + urlencode(filters))
            assert payload in listed
            rows = visits.page.locator("table.inferences tbody tr, table tbody tr").count()
            assert rows >= 1, "the filters find the payload's inference"
            visits.visit(f"/alerts/{site['rules'][number]}")
            # A form sent back with an error shows what was typed, as text.
            visits.visit("/alerts/new")
            visits.page.fill("input[name=name]", payload)
            visits.page.fill("input[name=threshold]", "not a number")
            visits.page.click('form.rule-form button:text("Save rule")')
            shown = visits.check(f"the alert form re-shown with {payload!r}")
            assert "threshold" in shown.lower()  # the error names the field
            assert visits.page.input_value("input[name=name]") == payload
        assert visits.checked >= 8 * len(PAYLOADS)
    finally:
        visits.close()


def test_no_payload_runs_on_the_sign_in_page(site: dict[str, Any]) -> None:
    visits = Visits(site, signed_in=False)
    try:
        for payload in PAYLOADS:
            visits.visit("/login?" + urlencode({"next": payload}))
            visits.page.fill("input[name=email]", payload)
            visits.page.fill("input[name=password]", "wrong password")
            visits.page.click("button[type=submit]")
            visits.check(f"the failed sign-in of {payload!r}")
            visits.visit("/no-such-page/" + quote(payload, safe=""))
    finally:
        visits.close()


def css_string(text: str) -> str:
    """`text` inside a CSS attribute selector's double quotes."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def test_no_payload_runs_on_the_events_pages(site: dict[str, Any]) -> None:
    """The Events pages: the use cases, a use case's events filtered by every filter
    (chips show each value), an event with its drawing, data, metadata and verdict."""
    visits = Visits(site)
    try:
        listing = visits.visit("/events")
        for number, payload in enumerate(PAYLOADS):
            assert payload in listing, f"{payload!r} is shown as text among the use cases"
            # Followed from the list, as a user does: ids with a "/" keep their page.
            link = visits.page.locator(f'tr[data-use-case="{css_string(payload)}"] a')
            use_case = str(link.get_attribute("href"))
            shown = visits.visit(use_case)
            assert payload in shown
            filters = {
                "device": payload,
                "stream": payload,
                "workflow": payload,
                "class": payload,
                "min_confidence": "0.5",
                "feedback": "incorrect",
                "meta.note": payload,
                f"data.{payload[:100]}": payload,
                "meta_field": "note",
                "meta_value": payload,
            }
            filtered = visits.visit(use_case + "?" + urlencode(filters))
            assert visits.page.locator("table.events tbody tr").count() == 1, filtered
            assert filtered.count(payload) >= 6, "each chip shows its value as text"
            visits.visit(use_case)
            judged = css_string(f"ev{number}-{payload}")
            with visits.page.expect_navigation():
                visits.page.locator(f'table.events tr[data-event-id="{judged}"] a').click()
            event = visits.check(f"the event of {payload!r}")
            assert event.count(payload) >= 6  # source, data, metadata, label, class, comment
            visits.visit("/events")
        assert visits.checked == 1 + 5 * len(PAYLOADS)
    finally:
        visits.close()
