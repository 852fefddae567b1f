"""The dashboard's Events pages over HTTP: what the API stored, as a signed-in user sees it.

Events are written through the API; the pages are read as HTML and checked against what
was sent (names, counts, ids, the order), never against the store's own answers.
"""

import html
import io
import random
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from PIL import Image

from tests.support.dashboard import HTML, csrf_token, sign_in
from tests.support.workspaces import NewKey, auth, new_user
from visionwatch.db.engine import Database
from visionwatch.web.rendering import when_exact

NOW = datetime.now(UTC).replace(microsecond=0)
EMAIL = "ops@example.com"
TYPES = ("quality_check", "inventory_count", "safety_alert", "custom")
DEVICES = ("cam-1", "cam-2", "cam-3")
Event = dict[str, Any]


def events_for(use_case: str, count: int, seed: int) -> list[Event]:
    """`count` events, newest first by index; pairs share a time, so that paging must
    break ties (by arrival: the later-sent of a pair comes first)."""
    rng = random.Random(seed)
    made = []
    for n in range(count):
        event: Event = {
            "eventId": f"evt-{seed}-{n:03d}",
            "eventType": rng.choice(TYPES),
            "useCaseId": use_case,
            "timestamp": (NOW - timedelta(minutes=5 * (n // 2))).isoformat(),
            "eventData": {"result": rng.choice(["pass", "fail"]), "n": n},
            "streamId": rng.choice(["s-1", "s-2"]),
            "workflowId": rng.choice(["wf-a", "wf-b"]),
            "customMetadata": {
                "shift": rng.choice(["a", "b"]),
                "temperature": 60 + n % 15,
                "night": rng.random() < 0.5,
            },
        }
        device = rng.choice([*DEVICES, None])
        if device is not None:  # some events name no device
            event["deviceId"] = device
        if n % 3:  # detections, for the detected-class filter
            event["images"] = [
                {
                    "objectDetections": [
                        {
                            "x": 20,
                            "y": 20,
                            "width": 10,
                            "height": 10,
                            "class": rng.choice(["person", "forklift"]),
                            "confidence": round(rng.uniform(0.3, 0.99), 2),
                        }
                        for _ in range(rng.randint(1, 2))
                    ]
                }
            ]
        made.append(event)
    return made


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def write(client: TestClient, key: str, events: list[Event]) -> None:
    for start in range(0, len(events), 100):
        batch = {"events": events[start : start + 100]}
        response = client.post("/vision-events/batch", json=batch, headers=auth(key))
        assert response.status_code == 201, response.text


def new_use_case(client: TestClient, key: str, name: str) -> str:
    made = client.post("/vision-events/use-cases", json={"name": name}, headers=auth(key))
    assert made.status_code == 201, made.text
    use_case: str = made.json()["id"]
    return use_case


def upload(client: TestClient, key: str, data: bytes) -> str:
    sent = client.post(
        "/vision-events/upload",
        files={"file": ("frame.png", data, "image/png")},
        headers=auth(key),
    )
    assert sent.status_code == 201, sent.text
    source: str = sent.json()["sourceId"]
    return source


def newest_first(events: list[Event]) -> list[str]:
    """Ids by time, newest first; among equal times the later-sent first."""
    order = sorted(enumerate(events), key=lambda p: (p[1]["timestamp"], p[0]), reverse=True)
    return [event["eventId"] for _, event in order]


def listed(page: str) -> list[str]:
    return [html.unescape(i) for i in re.findall(r'<tr data-event-id="([^"]*)"', page)]


def total_of(page: str) -> int:
    found = re.search(r'<span id="event-total">([\d,]+)</span>', page)
    assert found, "the page shows no total"
    return int(found.group(1).replace(",", ""))


def crawl(client: TestClient, url: str) -> tuple[list[str], int]:
    """Every event the list shows from `url` on, following its "Older" links; the total
    the pages state (the same on each)."""
    seen: list[str] = []
    totals = set()
    next_url: str | None = url
    while next_url:
        response = client.get(next_url, headers=HTML)
        assert response.status_code == 200, (next_url, response.text)
        seen += listed(response.text)
        totals.add(total_of(response.text))
        found = re.search(r'<a class="button next" href="([^"]+)"', response.text)
        next_url = html.unescape(found.group(1)) if found else None
    assert len(totals) == 1, totals
    return seen, totals.pop()


def signed_in(client: TestClient, database: Database) -> None:
    new_user(database, "acme", EMAIL)
    assert sign_in(client, EMAIL).status_code == 303


def test_the_use_cases_list_what_the_api_wrote(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    key = new_key("acme")
    dock = new_use_case(client, key, "Dock safety")
    old = new_use_case(client, key, "Old line")
    write(client, key, events_for(dock, 7, seed=1))
    write(client, key, events_for("line-3", 3, seed=2))  # made by its first event
    write(client, key, events_for(old, 2, seed=3))
    archived = client.post(f"/vision-events/use-cases/{old}/archive", headers=auth(key))
    assert archived.status_code == 200
    signed_in(client, database)

    page = client.get("/events", headers=HTML).text
    rows = re.findall(
        r'<tr data-use-case="([^"]+)">\s*<td><a href="([^"]+)">([^<]*)</a></td>\s*'
        r'<td><code>[^<]*</code></td>\s*<td class="num" data-count="(\d+)">[^<]*</td>\s*'
        r'<td><time datetime="[^"]+" data-style="exact">([^<]*)</time></td>',
        page,
    )
    newest = when_exact(NOW)  # each use case's first event is at NOW
    assert rows == [
        (dock, f"/events/{dock}", "Dock safety", "7", newest),
        ("line-3", "/events/line-3", "line-3", "3", newest),
    ]
    assert 'href="/events?status=archived"' in page
    assert 'aria-current="page">Events</a>' in page

    shelved = client.get("/events?status=archived", headers=HTML).text
    assert re.findall(r'<tr data-use-case="([^"]+)"', shelved) == [old]
    assert "Old line" in shelved
    bad = client.get("/events?status=deleted", headers=HTML)
    assert bad.status_code == 400
    assert "Unknown status" in bad.text


# Each filter: its URL parameters, and which sent events it keeps.
FILTERS: list[tuple[list[tuple[str, str]], Callable[[Event], bool]]] = [
    ([("type", "quality_check")], lambda e: e["eventType"] == "quality_check"),
    (
        [("type", "custom"), ("type", "safety_alert")],
        lambda e: e["eventType"] in ("custom", "safety_alert"),
    ),
    ([("device", "cam-2")], lambda e: e.get("deviceId") == "cam-2"),
    ([("stream", "s-1")], lambda e: e["streamId"] == "s-1"),
    ([("workflow", "wf-b")], lambda e: e["workflowId"] == "wf-b"),
    ([("meta.shift", "a")], lambda e: e["customMetadata"]["shift"] == "a"),
    # Metadata is typed: the URL's text is compared as the field's numbers and booleans.
    ([("meta.temperature", "70")], lambda e: e["customMetadata"]["temperature"] == 70),
    ([("meta.night", "true")], lambda e: e["customMetadata"]["night"] is True),
    # The search form's pair is one more metadata filter.
    ([("meta_field", "shift"), ("meta_value", "b")], lambda e: e["customMetadata"]["shift"] == "b"),
    (
        [
            ("start", (NOW - timedelta(minutes=60)).isoformat()),
            ("end", (NOW - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%S")),
        ],
        lambda e: (
            NOW - timedelta(minutes=60)
            <= datetime.fromisoformat(e["timestamp"])
            < NOW - timedelta(minutes=20)
        ),
    ),
    (
        [("type", "custom"), ("device", "cam-1"), ("meta.shift", "a"), ("device", "")],
        lambda e: (
            e["eventType"] == "custom"
            and e.get("deviceId") == "cam-1"
            and e["customMetadata"]["shift"] == "a"
        ),
    ),
    ([("device", "nobody")], lambda e: False),
    # eventData, typed as metadata is; detected classes, with a least confidence.
    ([("data.result", "fail")], lambda e: e["eventData"]["result"] == "fail"),
    ([("data.n", "7")], lambda e: e["eventData"]["n"] == 7),
    ([("class", "forklift")], lambda e: bool(detected(e, "forklift", 0.0))),
    (
        [("class", "person"), ("min_confidence", "0.8")],
        lambda e: bool(detected(e, "person", 0.8)),
    ),
]


def detected(event: Event, name: str, least: float) -> list[dict[str, Any]]:
    return [
        d
        for image in event.get("images", [])
        for d in image["objectDetections"]
        if d["class"] == name and d["confidence"] >= least
    ]


def test_filters_narrow_the_list_to_the_matching_events(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    key = new_key("acme")
    use_case = new_use_case(client, key, "Dock safety")
    sent = events_for(use_case, 130, seed=4)
    write(client, key, sent)
    write(client, key, events_for("other", 20, seed=5))  # another use case's stay out
    signed_in(client, database)
    for params, keeps in FILTERS:
        expected = newest_first([event for event in sent if keeps(event)])
        seen, total = crawl(client, f"/events/{use_case}?{urlencode(params)}")
        assert seen == expected, params
        assert total == len(expected), params


def test_paging_shows_every_event_exactly_once(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    key = new_key("acme")
    sent = events_for("line-3", 123, seed=6)  # three pages of 50
    write(client, key, sent)
    signed_in(client, database)
    seen, total = crawl(client, "/events/line-3")
    assert seen == newest_first(sent)
    assert len(set(seen)) == len(sent) == total == 123
    first = client.get("/events/line-3", headers=HTML).text
    assert "Newest</a>" not in first
    older = re.search(r'<a class="button next" href="([^"]+)"', first)
    assert older
    second = client.get(html.unescape(older.group(1)), headers=HTML).text
    assert '<a class="button" href="/events/line-3">Newest</a>' in second


CHIP = (
    r'<li class="chip">(?:<label class="chip-label" for="([^"]+)"[^>]*>|<span class="chip-label">)'
    r'([^<]+)</(?:label|span)> <span class="chip-value">([^<]+)</span> '
    r'<a class="remove" href="([^"]+)"'
)


def test_filter_chips_each_remove_their_filter(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    key = new_key("acme")
    sent = events_for("line-3", 60, seed=7)
    write(client, key, sent)
    signed_in(client, database)
    params = [("type", "custom"), ("device", "cam-1"), ("meta.shift", "a")]
    page = client.get(f"/events/line-3?{urlencode(params)}", headers=HTML).text
    chips = re.findall(CHIP, page)
    assert [(label, value) for _, label, value, _ in chips] == [
        ("Type", "custom"),
        ("Device", "cam-1"),
        ("shift", "a"),
    ]
    # A chip's label edits it: it is the label of the form's input that holds its value.
    for edit, _, value, _ in chips[1:]:
        field = re.search(rf'<input id="{re.escape(edit)}" name="[^"]+" value="([^"]*)"', page)
        assert field, edit
        assert html.unescape(field.group(1)) == value
    for removed, (_, _, _, link) in enumerate(chips):
        kept = params[:removed] + params[removed + 1 :]
        after = client.get(html.unescape(link), headers=HTML).text
        shown = [value for _, _, value, _ in re.findall(CHIP, after)]
        assert shown == [value for _, value in kept]

        def matches(event: Event, kept: list[tuple[str, str]] = kept) -> bool:
            fields = {
                "type": event["eventType"],
                "device": event.get("deviceId"),
                "meta.shift": event["customMetadata"]["shift"],
            }
            return all(fields[name] == value for name, value in kept)

        assert total_of(after) == sum(1 for event in sent if matches(event))


def test_bad_parameters_get_a_page_that_says_why(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    key = new_key("acme")
    write(client, key, events_for("line-3", 3, seed=8))
    signed_in(client, database)
    cases = {
        "/events/line-3?start=yesterday": (400, "This period cannot be read"),
        "/events/line-3?end=2026-13-40": (400, "This period cannot be read"),
        "/events/line-3?start=2026-01-02&end=2026-01-01": (400, "This period is empty"),
        "/events/line-3?cursor=zzz": (400, "Bad page link"),
        "/events/line-3?meta.no%21such=1": (400, "Bad metadata filter"),
        f"/events/line-3?type={'x' * 65}": (400, "Bad filter"),
        f"/events/line-3?device={'d' * 257}": (400, "Bad filter"),
        "/events/line-3?feedback=maybe": (400, "feedback: correct, incorrect"),
        "/events/line-3?class=person&min_confidence=2": (400, "min_confidence: a number"),
        "/events/line-3?class=person&min_confidence=nan": (400, "min_confidence: a number"),
        "/events/line-3?min_confidence=0.5": (400, "name the detected class"),
        f"/events/line-3?data.{'f' * 101}=1": (400, "A field name is at most 100"),
        "/events/no-such-use-case": (404, "No such use case"),
        "/events/line-3/no-such-event": (404, "No such event"),
    }
    for path, (status, title) in cases.items():
        response = client.get(path, headers=HTML)
        assert response.status_code == status, path
        assert title in response.text, path
        assert response.headers["content-type"].startswith("text/html"), path


def detected_event(use_case: str, source: str) -> Event:
    return {
        "eventId": "evt-drawn",
        "eventType": "safety_alert",
        "useCaseId": use_case,
        "timestamp": NOW.isoformat(),
        "deviceId": "cam-2",
        "streamId": "dock-door",
        "workflowId": "ppe-check",
        "eventData": {"alertType": "no_helmet", "severity": "high"},
        "customMetadata": {"shift": "b", "temperature": 71},
        "images": [
            {
                "sourceId": source,
                "label": "frame",
                "objectDetections": [
                    {
                        "class": "person",
                        "x": 20,
                        "y": 20,
                        "width": 10,
                        "height": 16,
                        "confidence": 0.8,
                    }
                ],
                "instanceSegmentations": [
                    {
                        "class": "spill",
                        "x": 40,
                        "y": 30,
                        "width": 8,
                        "height": 6,
                        "confidence": 0.6,
                        "points": [[36, 27], [44, 27], [40, 33]],
                    }
                ],
                "keypoints": [
                    {
                        "class": "worker",
                        "x": 10,
                        "y": 10,
                        "width": 4,
                        "height": 4,
                        "confidence": 0.7,
                        "keypoints": [{"id": 0, "x": 11, "y": 9}],
                    }
                ],
                "classifications": [{"class": "indoor", "confidence": 0.9}],
            }
        ],
    }


def test_an_event_shows_its_image_detections_source_data_and_metadata(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    key = new_key("acme")
    image = png(64, 48)
    source = upload(client, key, image)
    use_case = new_use_case(client, key, "Dock safety")
    sent = events_for(use_case, 40, seed=9)
    write(client, key, [*sent, detected_event(use_case, source)])
    signed_in(client, database)

    listing = client.get(f"/events/{use_case}?type=safety_alert", headers=HTML).text
    row = re.search(r'<tr data-event-id="evt-drawn">(.*?)</tr>', listing, re.S)
    assert row
    assert f'<img src="/event-thumbnails/{source}"' in row.group(1)
    assert "alertType: no_helmet · severity: high" in row.group(1)
    assert f'href="/events/{use_case}/evt-drawn"' in row.group(1)

    page = client.get(f"/events/{use_case}/evt-drawn", headers=HTML)
    assert page.status_code == 200
    text = page.text
    # The detections over the image, in its pixels (64 x 48, read from the stored image).
    assert 'viewBox="0 0 64 48"' in text
    assert f'<image href="/event-images/{source}" x="0" y="0" width="64" height="48"/>' in text
    assert '<rect x="15.0" y="12.0" width="10" height="16"/>' in text
    assert '<polygon points="36,27 44,27 40,33"/>' in text
    assert '<circle cx="11" cy="9" r="3"/>' in text
    assert "person 80%" in text
    assert "indoor 90.0%" in text
    # Where it came from, what it says, and links to the events sharing each value.
    for label, value, parameter in (
        ("Device", "cam-2", "device"),
        ("Stream", "dock-door", "stream"),
        ("Workflow", "ppe-check", "workflow"),
    ):
        assert f'<span class="value">{value}</span>' in text, label
        assert f'href="/events/{use_case}?{parameter}={value}"' in text, label
    # Event data values filter too: the link lists the events with the same value.
    data_link = re.search(
        r'<dt>alertType</dt><dd><a class="data-value" href="([^"]+)"[^>]*>no_helmet</a>', text
    )
    assert data_link, "the event data's value is shown, as a link to its events"
    assert html.unescape(data_link.group(1)) == f"/events/{use_case}?data.alertType=no_helmet"
    assert when_exact(NOW) in text

    links = {
        value: html.unescape(href)
        for href, value in re.findall(
            r'<a class="metadata-value" href="([^"]+)"[^>]*>([^<]+)</a>', text
        )
    }
    assert set(links) == {"b", "71"}
    seen, _ = crawl(client, links["71"])
    everything = [*sent, detected_event(use_case, source)]
    assert seen == newest_first([e for e in everything if e["customMetadata"]["temperature"] == 71])
    seen, _ = crawl(client, links["b"])
    assert seen == newest_first([e for e in everything if e["customMetadata"]["shift"] == "b"])

    served = client.get(f"/event-images/{source}")
    assert served.status_code == 200
    assert served.content == image
    assert served.headers["content-type"] == "image/png"
    thumbnail = client.get(f"/event-thumbnails/{source}")
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"


def query_feedback(client: TestClient, key: str, use_case: str) -> list[Event]:
    answer = client.post(
        "/vision-events/query",
        json={"useCaseId": use_case, "eventType": "operator_feedback"},
        headers=auth(key),
    )
    assert answer.status_code == 200, answer.text
    events: list[Event] = answer.json()["events"]
    return events


def test_the_verdict_buttons_store_operator_feedback_as_the_api_would(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    key = new_key("acme")
    use_case = new_use_case(client, key, "Dock safety")
    # evt-1 and evt-10: feedback on one must not show on the other.
    sent = [
        {**e, "eventId": i}
        for e, i in zip(events_for(use_case, 2, seed=10), ("evt-1", "evt-10"), strict=True)
    ]
    write(client, key, sent)
    signed_in(client, database)
    url = f"/events/{use_case}/evt-1"
    page = client.get(url, headers=HTML).text
    assert "No verdict yet." in page
    for verdict in ("Correct", "Incorrect", "Inconclusive"):
        assert f'name="verdict" value="{verdict.lower()}"' in page
        assert f">{verdict}</button>" in page

    before = datetime.now(UTC)
    given = client.post(
        f"{url}/feedback",
        data={"verdict": "incorrect", "csrf_token": csrf_token(page)},
        headers=HTML,
        follow_redirects=False,
    )
    after = datetime.now(UTC)
    assert given.status_code == 303
    assert given.headers["location"] == url
    (stored,) = query_feedback(client, key, use_case)
    assert stored["eventType"] == "operator_feedback"
    assert stored["useCaseId"] == use_case
    assert stored["eventData"] == {"relatedEventId": "evt-1", "feedback": "incorrect"}
    assert uuid.UUID(stored["eventId"]).version == 4
    assert before <= datetime.fromisoformat(stored["timestamp"]) <= after

    page = client.get(url, headers=HTML).text
    assert re.search(
        r'id="latest-verdict" data-verdict="incorrect">Latest verdict: <strong[^>]*>Incorrect<',
        page,
    )
    assert "No verdict yet." in client.get(f"/events/{use_case}/evt-10", headers=HTML).text

    # A later verdict replaces it; one sent through the API (as Roboflow's tools do) counts.
    client.post(
        f"{url}/feedback", data={"verdict": "correct", "csrf_token": csrf_token(page)}, headers=HTML
    )
    assert 'data-verdict="correct">Latest verdict: <strong class="verdict-correct">Correct<' in (
        client.get(url, headers=HTML).text
    )

    def from_tools(related: str, verdict: str, minutes: int) -> Event:
        return {
            "eventId": str(uuid.uuid4()),
            "eventType": "operator_feedback",
            "useCaseId": use_case,
            "timestamp": (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat(),
            "eventData": {"relatedEventId": related, "feedback": verdict},
            "comment": f"{verdict}: glare on the lens",
        }

    # The newest feedback is on evt-10, whose id starts with evt-1's: not evt-1's verdict.
    write(client, key, [from_tools("evt-1", "inconclusive", 1), from_tools("evt-10", "correct", 2)])
    page = client.get(url, headers=HTML).text
    assert ">Inconclusive</strong>" in page
    assert "<q>inconclusive: glare on the lens</q>" in page
    other = client.get(f"/events/{use_case}/evt-10", headers=HTML).text
    assert 'data-verdict="correct"' in other
    verdicts = [e["eventData"]["feedback"] for e in query_feedback(client, key, use_case)]
    assert sorted(verdicts) == ["correct", "correct", "inconclusive", "incorrect"]
    # The list filters by each event's latest verdict, and states the realised precision.
    for status, expected in (
        ("inconclusive", ["evt-1"]),
        ("correct", ["evt-10"]),
        ("incorrect", []),
        ("none", []),
    ):
        listing = client.get(f"/events/{use_case}?feedback={status}", headers=HTML).text
        assert listed(listing) == expected, status
    precision = client.get(f"/events/{use_case}", headers=HTML).text
    assert re.search(
        r'Realised precision <span class="value">100\.0\s*%</span> over 1 judged events', precision
    ), "evt-10 correct; evt-1's latest verdict is inconclusive, which does not count"
    listing = client.get("/events", headers=HTML).text
    row = listing.split(f'<tr data-use-case="{use_case}">', 1)[1].split("</tr>", 1)[0]
    assert re.search(r'<td class="num precision">100\.0\s*% \(1\)</td>', row)
    assert "Events and their images are kept 14 days." in listing

    refused = client.post(
        f"{url}/feedback", data={"verdict": "maybe", "csrf_token": csrf_token(page)}, headers=HTML
    )
    assert refused.status_code == 400
    assert "Unknown verdict" in refused.text
    forged = client.post(f"{url}/feedback", data={"verdict": "correct"}, headers=HTML)
    assert forged.status_code == 403
    assert len(query_feedback(client, key, use_case)) == 4


def test_another_workspaces_events_are_not_found(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    theirs = new_key("globex")
    their_source = upload(client, theirs, png())
    their_case = new_use_case(client, theirs, "globex-secret-case")
    write(client, theirs, [detected_event(their_case, their_source)])
    mine = new_key("acme")
    # An acme event naming globex's image: the page must not show it.
    write(client, mine, [detected_event("line-3", their_source)])
    signed_in(client, database)

    assert "globex-secret-case" not in client.get("/events", headers=HTML).text
    for path, title in (
        (f"/events/{their_case}", "No such use case"),
        ("/events/globex-secret-case", "No such use case"),
        (f"/events/{their_case}/evt-drawn", "No such use case"),
        (f"/event-images/{their_source}", "No such image"),
        (f"/event-thumbnails/{their_source}", "No such image"),
    ):
        response = client.get(path, headers=HTML)
        assert response.status_code == 404, path
        assert title in response.text, path
    page = client.get("/events/line-3/evt-drawn", headers=HTML).text
    assert their_source not in page
    assert "No image stored" in page
    token = csrf_token(page)
    refused = client.post(
        f"/events/{their_case}/evt-drawn/feedback",
        data={"verdict": "incorrect", "csrf_token": token},
        headers=HTML,
    )
    assert refused.status_code == 404
    assert query_feedback(client, theirs, their_case) == []


HOSTILE = {
    "script": "<script>alert(1)</script>",
    "attribute": "\"'><img src=x onerror=alert(2)>",
    "svg": "<svg onload=alert(3)>",
}


@pytest.mark.parametrize("where", ["list", "event"])
def test_hostile_text_is_shown_as_text(
    client: TestClient, database: Database, new_key: NewKey, where: str
) -> None:
    key = new_key("acme")
    source = upload(client, key, png())
    use_case = new_use_case(client, key, HOSTILE["script"])
    event = {
        "eventId": 'evt-<b>"1"</b>',
        "eventType": "custom",
        "useCaseId": use_case,
        "timestamp": NOW.isoformat(),
        "deviceId": HOSTILE["attribute"],
        "eventData": {"a": HOSTILE["svg"], HOSTILE["script"]: HOSTILE["attribute"]},
        "customMetadata": {"note": HOSTILE["script"], "quote": HOSTILE["attribute"]},
        "images": [
            {
                "sourceId": source,
                "label": HOSTILE["svg"],
                "objectDetections": [
                    {
                        "class": HOSTILE["svg"],
                        "x": 5,
                        "y": 5,
                        "width": 2,
                        "height": 2,
                        "confidence": 0.5,
                    },
                    {"class": "odd", "x": '1"/><script>', "y": 1, "width": 1, "height": 1},
                ],
            }
        ],
    }
    write(client, key, [event])
    signed_in(client, database)
    path = (
        f"/events/{use_case}"
        if where == "list"
        else f"/events/{use_case}/evt-%3Cb%3E%221%22%3C%2Fb%3E"
    )
    response = client.get(path, headers=HTML)
    assert response.status_code == 200
    page = response.text
    for text in HOSTILE.values():
        assert text not in page
    for text in (HOSTILE["script"], HOSTILE["svg"]):
        assert str(escape(text)) in page
    assert "<script>" not in page
    if where == "event":
        assert str(escape(HOSTILE["attribute"])) in page
        # A coordinate that is not a number is not drawn.
        assert page.count('<g class="shape"') == 2
        assert page.count("<rect x=") == 1
