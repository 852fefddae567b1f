"""Vision events filtered by what they detected, by their eventData and by operators'
verdicts; the realised precision of those verdicts; each workspace's own lookback. Every
answer is checked against a plain-Python reading of the events as they were sent."""

import random
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.workspaces import NewKey, auth
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.images.blobs import FilesystemStore
from visionwatch.retention import prune
from visionwatch.store import accounts
from visionwatch.store import feedback as feedback_store
from visionwatch.store import vision_events as store

CLASSES = ("helmet", "person", "forklift")
DEVICES = ("dock-1", "dock-2")
WORKFLOWS = ("ppe", "traffic")
VERDICTS = ("correct", "incorrect", "inconclusive")
Event = dict[str, Any]


def detections(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "x": 50,
            "y": 40,
            "width": 20,
            "height": 30,
            "class": rng.choice(CLASSES),
            "confidence": round(rng.uniform(0.2, 0.99), 3),
        }
        for _ in range(rng.randint(0, 3))
    ]


def made_events(rng: random.Random, now: datetime, count: int) -> list[Event]:
    events = []
    for n in range(count):
        kind = ("quality_check", "inventory_count", "safety_alert")[n % 3]
        data = {
            "quality_check": {"result": rng.choice(["pass", "fail"])},
            "inventory_count": {"itemCount": rng.randint(0, 30), "itemType": "pallet"},
            "safety_alert": {"severity": rng.choice(["low", "medium", "high"])},
        }[kind]
        events.append(
            {
                "eventId": str(uuid.UUID(int=rng.getrandbits(128))),
                "eventType": kind,
                "useCaseId": "dock-safety",
                "timestamp": (now - timedelta(minutes=5 + n * 7)).isoformat(),
                "deviceId": DEVICES[n % 2],
                "workflowId": WORKFLOWS[(n // 2) % 2],
                "eventData": data,
                "images": [
                    {"sourceId": f"s-{n}", "objectDetections": detections(rng)},
                    {"classifications": [{"class": rng.choice(CLASSES), "confidence": 0.5}]}
                    if n % 5 == 0
                    else {},
                ],
            }
        )
    return events


def feedback(judged: Event, verdict: str, at: datetime) -> Event:
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "operator_feedback",
        "useCaseId": judged["useCaseId"],
        "timestamp": at.isoformat(),
        "eventData": {"relatedEventId": judged["eventId"], "feedback": verdict},
    }


def predictions_of(event: Event) -> list[dict[str, Any]]:
    found = []
    for image in event.get("images", []):
        for kind in ("objectDetections", "classifications"):
            found.extend(image.get(kind, []))
    return found


def top_class(event: Event) -> str | None:
    counts: Counter[str] = Counter(p["class"] for p in predictions_of(event))
    if not counts:
        return None
    most = max(counts.values())
    return sorted(name for name, n in counts.items() if n == most)[0]


def every_id(client: TestClient, key: dict[str, str], query: dict[str, Any]) -> list[str]:
    """All the ids a query matches, page after page, each page newest first."""
    ids: list[str] = []
    cursor = None
    while True:
        asked = {"useCaseId": "dock-safety", "limit": 7, **query}
        if cursor:
            asked["cursor"] = cursor
        answer = client.post("/vision-events/query", json=asked, headers=key)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        ids += [event["eventId"] for event in page["events"]]
        cursor = page["nextCursor"]
        if not page["hasMore"]:
            return ids


def newest_first(events: list[Event], keep: Callable[[Event], bool]) -> list[str]:
    kept = [event for event in events if keep(event)]
    return [e["eventId"] for e in sorted(kept, key=lambda e: e["timestamp"], reverse=True)]


@pytest.fixture
def sent(client: TestClient, new_key: NewKey) -> tuple[dict[str, str], list[Event], dict[str, str]]:
    """Events with detections, and verdicts on some of them: some judged twice (the newer
    verdict stands, whatever order they arrive in), some judged before they arrive."""
    key = auth(new_key(scopes=("ingest", "read")))
    rng = random.Random(7)
    now = datetime.now(UTC)
    events = made_events(rng, now, 60)
    verdicts: dict[str, str] = {}
    judgements: list[Event] = []
    for n, event in enumerate(events[:40]):
        first = rng.choice(VERDICTS)
        at = now - timedelta(minutes=1)
        judgements.append(feedback(event, first, at - timedelta(seconds=30)))
        verdicts[event["eventId"]] = first
        if n % 4 == 0:  # judged again later; sent before the first verdict
            second = rng.choice(VERDICTS)
            judgements.insert(len(judgements) - 1, feedback(event, second, at))
            verdicts[event["eventId"]] = second
    early = judgements[:10]  # these arrive before the events they judge
    batches = [early, events[:30], events[30:], judgements[10:50], judgements[50:]]
    for batch in batches:
        if batch:
            written = client.post("/vision-events/batch", json={"events": batch}, headers=key)
            assert written.status_code == 201, written.text
    return key, events, verdicts


def test_events_filter_by_detected_class_data_and_feedback(
    client: TestClient, sent: tuple[dict[str, str], list[Event], dict[str, str]]
) -> None:
    key, events, verdicts = sent

    def detects(name: str, least: float | None) -> Callable[[Event], bool]:
        return lambda event: any(
            p["class"] == name and (least is None or p["confidence"] >= least)
            for p in predictions_of(event)
        )

    cases: list[tuple[dict[str, Any], Callable[[Event], bool]]] = [
        ({"detectionClass": "forklift"}, detects("forklift", None)),
        ({"detectionClass": "helmet", "minConfidence": 0.7}, detects("helmet", 0.7)),
        ({"detectionClass": "person", "minConfidence": 0.5}, detects("person", 0.5)),
        (
            {"eventFieldFilters": [{"field": "result", "operator": "eq", "value": "fail"}]},
            lambda e: e["eventData"].get("result") == "fail",
        ),
        (
            {"eventFieldFilters": [{"field": "itemCount", "operator": "gte", "value": 12}]},
            lambda e: e["eventData"].get("itemCount", -1) >= 12,
        ),
        (
            {
                "eventFieldFilters": [{"field": "severity", "operator": "neq", "value": "low"}],
                "deviceId": {"operator": "eq", "value": "dock-1"},
            },
            lambda e: (
                "severity" in e["eventData"]
                and e["eventData"]["severity"] != "low"
                and e["deviceId"] == "dock-1"
            ),
        ),
    ]
    types = ["quality_check", "inventory_count", "safety_alert"]  # not the feedback itself

    def judged_as(status: str) -> Callable[[Event], bool]:
        return lambda event: verdicts.get(event["eventId"]) == status

    for status in VERDICTS:
        cases.append(({"feedbackStatus": status, "eventTypes": types}, judged_as(status)))
    # Awaiting a verdict: the feedback events themselves are not listed.
    cases.append(({"feedbackStatus": "none"}, lambda e: e["eventId"] not in verdicts))
    for query, keep in cases:
        expected = newest_first(events, keep)  # no feedback event matches any of these
        assert expected, f"the case {query} should match something"
        assert every_id(client, key, query) == expected, query
        total = client.post(
            "/vision-events/query", json={"useCaseId": "dock-safety", **query}, headers=key
        ).json()["total"]
        assert total == len(expected), query


def test_realised_precision_of_events_matches_the_verdicts(
    client: TestClient, sent: tuple[dict[str, str], list[Event], dict[str, str]]
) -> None:
    key, events, verdicts = sent
    by_id = {event["eventId"]: event for event in events}
    expected: dict[tuple[str, Any], list[int]] = defaultdict(lambda: [0, 0, 0])
    for event_id, verdict in verdicts.items():
        event = by_id[event_id]
        for group, value in (
            ("all", None),
            ("device", event["deviceId"]),
            ("workflow", event["workflowId"]),
            ("class", top_class(event)),
        ):
            expected[(group, value)][VERDICTS.index(verdict)] += 1
    period: dict[str, str] = {}  # the default: the last 7 days
    whole = client.get("/api/v1/precision", params={**period, "events": "true"}, headers=key)
    assert whole.status_code == 200, whole.text
    correct, incorrect, inconclusive = expected[("all", None)]
    assert whole.json()["correct"] == correct
    assert whole.json()["incorrect"] == incorrect
    assert whole.json()["inconclusive"] == inconclusive
    assert whole.json()["precision"] == pytest.approx(correct / (correct + incorrect))
    for group in ("device", "workflow", "class"):
        answer = client.get(
            "/api/v1/precision",
            params={**period, "use_case": "dock-safety", "group": group},
            headers=key,
        ).json()
        shown = {
            g["key"]: [g["correct"], g["incorrect"], g["inconclusive"]] for g in answer["groups"]
        }
        wanted = {value: counts for (g, value), counts in expected.items() if g == group}
        assert shown == wanted, group
    one = client.get(
        "/api/v1/precision",
        params={**period, "events": "true", "device_id": "dock-2", "class": "forklift"},
        headers=key,
    ).json()
    wanted_counts = [0, 0, 0]
    for event_id, verdict in verdicts.items():
        event = by_id[event_id]
        if event["deviceId"] == "dock-2" and top_class(event) == "forklift":
            wanted_counts[VERDICTS.index(verdict)] += 1
    assert [one["correct"], one["incorrect"], one["inconclusive"]] == wanted_counts


def test_bad_filters_and_bad_event_data_are_named_and_store_nothing(
    client: TestClient, new_key: NewKey
) -> None:
    key = auth(new_key(scopes=("ingest", "read")))
    now = datetime.now(UTC)
    good = made_events(random.Random(3), now, 3)
    assert (
        client.post("/vision-events/batch", json={"events": good}, headers=key).status_code == 201
    )
    for query, named in (
        ({"feedbackStatus": "maybe"}, "feedbackStatus"),
        ({"detectionClass": "person", "minConfidence": 1.5}, "minConfidence"),
        (
            {"eventFieldFilters": [{"field": "result", "operator": "like", "value": "x"}]},
            "eventFieldFilters[0].operator",
        ),
    ):
        answer = client.post(
            "/vision-events/query", json={"useCaseId": "dock-safety", **query}, headers=key
        )
        assert answer.status_code == 400, query
        assert named in answer.json()["error"], answer.json()
    for kind, data, named in (
        ("safety_alert", {"severity": "extreme"}, "eventData.severity"),
        ("quality_check", {"result": "ok"}, "eventData.result"),
        ("inventory_count", {"itemCount": "12"}, "eventData.itemCount"),
        ("operator_feedback", {"relatedEventId": "x", "feedback": "yes"}, "eventData.feedback"),
    ):
        bad = {**good[0], "eventId": str(uuid.uuid4()), "eventType": kind, "eventData": data}
        fresh = {**good[1], "eventId": str(uuid.uuid4())}
        answer = client.post("/vision-events/batch", json={"events": [fresh, bad]}, headers=key)
        assert answer.status_code == 400
        assert answer.json()["error"].startswith(f"events[1].{named}"), answer.json()
    stored = every_id(client, key, {})
    assert sorted(stored) == sorted(e["eventId"] for e in good), "no refused batch stored"
    wrong_group = client.get(
        "/api/v1/precision", params={"events": "true", "group": "model"}, headers=key
    )
    assert wrong_group.status_code == 422
    assert wrong_group.json()["errors"][0]["path"] == "group"
    nowhere = client.get("/api/v1/precision", params={"use_case": "nope"}, headers=key)
    assert nowhere.status_code == 404
    assert "use_case" in nowhere.json()["detail"]


def test_a_workspace_keeps_events_for_its_own_lookback(
    client: TestClient, new_key: NewKey, settings: Settings, database: Database
) -> None:
    long_key = auth(new_key("long", scopes=("ingest", "read")))
    short_key = auth(new_key("short", scopes=("ingest", "read")))
    accounts.set_retention(database, "long", None, None, event_days=30)
    now = datetime.now(UTC)
    for key in (long_key, short_key):
        events = made_events(random.Random(5), now, 2)
        events[1]["timestamp"] = (now - timedelta(days=20)).isoformat()
        for event in events:
            event["eventId"] = str(uuid.uuid4())
        assert (
            client.post("/vision-events/batch", json={"events": events}, headers=key).status_code
            == 201
        )
    for key, days in ((long_key, 30), (short_key, settings.event_lookback_days)):
        for answer in (
            client.post("/vision-events/query", json={"useCaseId": "dock-safety"}, headers=key),
            client.get("/vision-events/use-cases", headers=key),
        ):
            assert answer.json()["lookbackDays"] == days
    report = prune(database, FilesystemStore(settings.images_dir()), settings, now)
    assert report.events == {"long": 0, "short": 1}
    assert len(every_id(client, long_key, {})) == 2
    assert len(every_id(client, short_key, {})) == 1


def test_writes_side_by_side_keep_every_verdict_whole(database: Database) -> None:
    """Two writers at once (replicas, or a client's two connections): a verdict and the
    event it judges, and two first writes naming one new use case. On PostgreSQL each used
    to read before the other committed: a verdict lost its class, a write answered 500."""
    workspace = accounts.create_workspace(database, "busy").id
    now = datetime.now(UTC)
    rng = random.Random(9)
    pairs = []
    for n in range(40):
        event = made_events(rng, now, 1)[0]
        event["useCaseId"] = f"new-{n % 4}"  # four use cases, each first named twice at once
        event["images"] = [{"objectDetections": [{"class": "forklift", "confidence": 0.9}]}]
        pairs.append((event, feedback(event, "correct", now)))

    def stored(sent: Event) -> store.NewEvent:
        return store.NewEvent(
            event_id=sent["eventId"],
            event_type=sent["eventType"],
            use_case=sent["useCaseId"],
            timestamp=datetime.fromisoformat(sent["timestamp"]),
            device=sent.get("deviceId"),
            stream=None,
            workflow=sent.get("workflowId"),
            metadata={},
            sent=sent,
        )

    errors: list[BaseException] = []

    def write(sent: Event) -> None:
        try:
            store.write_events(database, workspace, [stored(sent)], datetime.now(UTC))
        except BaseException as error:  # reported below, with its cause
            errors.append(error)

    for event, verdict in pairs:
        threads = [threading.Thread(target=write, args=(sent,)) for sent in (event, verdict)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    for n in range(4):
        counted = feedback_store.event_precision(
            database,
            workspace,
            now - timedelta(days=1),
            now + timedelta(minutes=1),
            use_case=f"new-{n}",
            group="class",
        )
        assert counted is not None
        assert list(counted) == ["forklift"], "every verdict knows the class it judged"
        assert counted["forklift"].correct == 10
