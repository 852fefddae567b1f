"""Alerting in process: real rollups, a real SMTP server and HTTP receiver, and a set clock."""

import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.clock import Clock
from tests.support.postgres import free_port
from tests.support.receivers import Hooks, Mailbox, http_receiver, smtp_server, text_of
from tests.support.settled import SettledClient
from tests.support.workspaces import NewKey, auth
from visionwatch.alerts.evaluator import Evaluator
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.store import alerts as alert_store

# Data lives a few hours in the past, so that every timestamp is accepted.
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=6)


@pytest.fixture
def mail() -> Iterator[tuple[int, Mailbox]]:
    with smtp_server() as found:
        yield found


@pytest.fixture
def hooks() -> Iterator[tuple[str, Hooks]]:
    with http_receiver() as found:
        yield found


@pytest.fixture
def setup(
    tmp_path: Any, database: Database, mail: tuple[int, Mailbox], new_key: NewKey
) -> Iterator[dict[str, Any]]:
    port, mailbox = mail
    settings = Settings(
        data_dir=tmp_path / "data",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        public_url="http://dash.example",
        alert_interval_seconds=0,  # the tests run the evaluator themselves
        prune_interval_seconds=0,
    )
    clock = Clock(T0)
    with SettledClient(create_app(settings, database, clock)) as client:
        yield {
            "client": client,
            "key": auth(new_key("acme", scopes=("admin",))),
            "evaluator": Evaluator(database, settings, clock),
            "clock": clock,
            "mailbox": mailbox,
            "database": database,
            "settings": settings,
        }


def send(s: dict[str, Any], items: list[dict[str, Any]]) -> None:
    response = s["client"].post("/api/v1/inferences", json={"inferences": items}, headers=s["key"])
    assert response.status_code == 200, response.text


def traffic(
    start: datetime, minutes: int, confidence: float, model: str = "cam/1", **extra: Any
) -> list[dict[str, Any]]:
    rng = random.Random(start.timestamp())
    return [
        {
            "model_id": model,
            "timestamp": (start + timedelta(minutes=m, seconds=rng.uniform(0, 59))).isoformat(),
            "predictions": [{"class": "car", "confidence": confidence}],
            **extra,
        }
        for m in range(minutes)
        for _ in range(2)
    ]


def rule(s: dict[str, Any], **definition: Any) -> int:
    response = s["client"].post("/api/v1/alerts", json=definition, headers=s["key"])
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def run_at(s: dict[str, Any], moment: datetime) -> None:
    s["clock"].now = moment
    s["evaluator"].run_once()


def test_a_confidence_drop_fires_one_email_and_one_more_when_it_recovers(
    setup: dict[str, Any],
) -> None:
    s = setup
    rule_id = rule(
        s,
        name="cam/1 confidence",
        metric="avg_confidence",
        condition="below",
        threshold=0.5,
        model_id="cam/1",
        window_seconds=1800,
        recipients=["ops@example.com"],
    )
    send(s, traffic(T0 - timedelta(minutes=60), 60, 0.9))
    run_at(s, T0)
    assert s["mailbox"].messages == []
    send(s, traffic(T0, 30, 0.2))
    for minute in (31, 32, 40):  # still low: one email, not three
        run_at(s, T0 + timedelta(minutes=minute))
    assert len(s["mailbox"].messages) == 1
    fired = s["mailbox"].messages[0]
    assert fired["Subject"] == "[visionwatch] FIRING: cam/1 confidence"
    assert fired["To"] == "ops@example.com"
    body = text_of(fired)
    # Over the window [T0+1min, T0+31min) the mean of what was sent is 0.2.
    assert "avg_confidence of cam/1 is 0.2;" in body
    assert "below 0.5" in body
    assert "http://dash.example/models/cam/1?start=" in body
    send(s, traffic(T0 + timedelta(minutes=41), 40, 0.95))
    run_at(s, T0 + timedelta(minutes=82))
    assert len(s["mailbox"].messages) == 2
    assert s["mailbox"].messages[1]["Subject"] == "[visionwatch] RESOLVED: cam/1 confidence"
    history = s["client"].get(f"/api/v1/alerts/{rule_id}/history", headers=s["key"]).json()
    assert [(e["from"], e["to"]) for e in reversed(history["events"])] == [
        ("ok", "firing"),
        ("firing", "resolved"),
    ]


def test_pending_waits_before_firing(setup: dict[str, Any]) -> None:
    s = setup
    rule(
        s,
        name="slow",
        metric="avg_confidence",
        condition="below",
        threshold=0.5,
        window_seconds=600,
        pending_seconds=300,
        recipients=["ops@example.com"],
    )
    send(s, traffic(T0, 30, 0.1))
    run_at(s, T0 + timedelta(minutes=12))
    run_at(s, T0 + timedelta(minutes=15))
    assert s["mailbox"].messages == []
    run_at(s, T0 + timedelta(minutes=17))
    assert len(s["mailbox"].messages) == 1


def test_a_device_that_stops_sending_fires_silent_after_t(
    setup: dict[str, Any], hooks: tuple[str, Hooks]
) -> None:
    s = setup
    base, received = hooks
    rule(
        s,
        name="gate silent",
        metric="device_silence",
        condition="above",
        threshold=300,
        device_id="gate-1",
        webhooks=[
            {"url": f"{base}/hook", "kind": "json"},
            {"url": f"{base}/slack", "kind": "slack"},
        ],
    )
    send(s, [{"model_id": "m/1", "device_id": "gate-1", "timestamp": T0.isoformat()}])
    # A device's last_seen is when the server heard from it: the real clock.
    with s["database"].read() as conn:
        from sqlalchemy import select

        from visionwatch.db.schema import devices

        heard = conn.execute(select(devices.c.last_seen)).scalar_one()
    run_at(s, heard + timedelta(seconds=200))
    assert received.received == {}
    run_at(s, heard + timedelta(seconds=400))
    assert received.wait_for("/hook")
    assert received.wait_for("/slack")
    body = received.received["/hook"][0]
    assert body["kind"] == "firing"
    assert body["rule"]["metric"] == "device_silence"
    assert 399 <= body["value"] <= 401
    assert "gate silent" in received.received["/slack"][0]["text"]


def test_limits_cap_the_emails(setup: dict[str, Any]) -> None:
    s = setup
    rule_id = rule(
        s,
        name="noisy",
        metric="avg_confidence",
        condition="below",
        threshold=0.5,
        window_seconds=600,
        repeat_seconds=60,
        max_per_hour=3,
        recipients=["ops@example.com"],
    )
    send(s, traffic(T0, 40, 0.1))
    for minute in range(11, 31):
        run_at(s, T0 + timedelta(minutes=minute))
    assert len(s["mailbox"].messages) == 3
    kept = alert_store.outbox(s["database"], 1, rule_id)
    assert sorted({row.status for row in kept}) == ["sent", "suppressed"]


def test_a_muted_rule_keeps_its_states_but_sends_nothing(setup: dict[str, Any]) -> None:
    s = setup
    rule_id = rule(
        s,
        name="muted",
        metric="avg_confidence",
        condition="below",
        threshold=0.5,
        window_seconds=600,
        recipients=["ops@example.com"],
    )
    until = (T0 + timedelta(hours=2)).isoformat()
    muted = s["client"].post(
        f"/api/v1/alerts/{rule_id}/silence", json={"until": until}, headers=s["key"]
    )
    assert muted.status_code == 200
    send(s, traffic(T0, 20, 0.1))
    run_at(s, T0 + timedelta(minutes=15))
    assert s["mailbox"].messages == []
    shown = s["client"].get(f"/api/v1/alerts/{rule_id}", headers=s["key"]).json()
    assert shown["state"] == "firing"


@pytest.mark.parametrize(("shifted", "fires"), [(False, False), (True, True)])
def test_drift_fires_on_a_shifted_class_mix_and_not_on_the_same_mix(
    setup: dict[str, Any], shifted: bool, fires: bool
) -> None:
    s = setup
    rule(
        s,
        name="mix",
        metric="class_drift_psi",
        condition="above",
        threshold=0.2,
        window_seconds=3600,
        baseline_seconds=3600,
        recipients=["ops@example.com"],
    )
    rng = random.Random(3)

    def hour(start: datetime, weights: list[float]) -> list[dict[str, Any]]:
        return [
            {
                "model_id": "m/1",
                "timestamp": (start + timedelta(seconds=rng.uniform(0, 3599))).isoformat(),
                "predictions": [
                    {"class": rng.choices(["car", "bus", "van"], weights)[0], "confidence": 0.8}
                ],
            }
            for _ in range(600)
        ]

    send(s, hour(T0, [0.6, 0.3, 0.1]))
    send(s, hour(T0 + timedelta(hours=1), [0.1, 0.3, 0.6] if shifted else [0.6, 0.3, 0.1]))
    run_at(s, T0 + timedelta(hours=2))
    assert len(s["mailbox"].messages) == (1 if fires else 0)


def test_smtp_down_keeps_the_notification_and_retries(
    tmp_path: Any, database: Database, new_key: NewKey
) -> None:
    port = free_port()  # nothing listens here yet
    settings = Settings(
        data_dir=tmp_path / "data",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_timeout_seconds=2,
        alert_interval_seconds=0,
        prune_interval_seconds=0,
    )
    clock = Clock(T0)
    with SettledClient(create_app(settings, database, clock)) as client:
        s = {
            "client": client,
            "key": auth(new_key("acme", scopes=("admin",))),
            "evaluator": Evaluator(database, settings, clock),
            "clock": clock,
        }
        rule_id = rule(
            s,
            name="down",
            metric="avg_confidence",
            condition="below",
            threshold=0.5,
            window_seconds=600,
            recipients=["ops@example.com"],
        )
        send(s, traffic(T0, 20, 0.1))
        run_at(s, T0 + timedelta(minutes=15))  # must not raise
        [row] = alert_store.outbox(database, 1, rule_id)
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.last_error
        with smtp_server(port) as (_, mailbox):
            run_at(s, T0 + timedelta(minutes=15, seconds=10))  # not due yet: backoff
            assert mailbox.messages == []
            run_at(s, T0 + timedelta(minutes=16))
            assert mailbox.wait_for(1)
        [row] = alert_store.outbox(database, 1, rule_id)
        assert row.status == "sent"


def test_a_slow_webhook_does_not_delay_the_others(
    setup: dict[str, Any], hooks: tuple[str, Hooks]
) -> None:
    s = setup
    base, received = hooks
    received.hold["/slow"] = threading.Event()
    rule(
        s,
        name="two hooks",
        metric="avg_confidence",
        condition="below",
        threshold=0.5,
        window_seconds=600,
        webhooks=[{"url": f"{base}/slow"}, {"url": f"{base}/fast"}],
    )
    send(s, traffic(T0, 20, 0.1))
    runner = threading.Thread(target=run_at, args=(s, T0 + timedelta(minutes=15)))
    runner.start()
    # The fast hook is served while the slow one is still held.
    assert received.wait_for("/fast")
    assert "/slow" not in received.received
    received.hold["/slow"].set()
    runner.join(timeout=30)
    assert received.wait_for("/slow")


def test_a_test_notification_reaches_every_target(
    setup: dict[str, Any], hooks: tuple[str, Hooks]
) -> None:
    s = setup
    base, received = hooks
    rule_id = rule(
        s,
        name="try me",
        metric="request_count",
        condition="below",
        threshold=1,
        recipients=["a@example.com"],
        webhooks=[{"url": f"{base}/t"}, {"url": "http://127.0.0.1:9/closed"}],
    )
    response = s["client"].post(f"/api/v1/alerts/{rule_id}/test", headers=s["key"])
    results = response.json()["results"]
    assert [(r["target"], r["ok"]) for r in results] == [
        ("a@example.com", True),
        (f"{base}/t", True),
        ("http://127.0.0.1:9/closed", False),
    ]
    assert s["mailbox"].messages[0]["Subject"] == "[visionwatch] TEST: try me"
    assert received.received["/t"][0]["kind"] == "test"


@pytest.mark.parametrize(
    ("definition", "path"),
    [
        ({"metric": "avg_confidence", "condition": "below"}, "threshold"),
        ({"metric": "mood", "condition": "below", "threshold": 1}, "metric"),
        ({"metric": "avg_confidence", "condition": "sideways", "threshold": 1}, "condition"),
        ({"metric": "avg_confidence", "condition": "below", "threshold": "0.5"}, "threshold"),
        ({"metric": "class_share", "condition": "above", "threshold": 0.5}, "body"),
        ({"metric": "device_silence", "condition": "above", "threshold": 60}, "body"),
        ({"metric": "class_drift_psi", "condition": "below", "threshold": 0.2}, "body"),
        ({"metric": "avg_confidence", "condition": "drops_by", "threshold": -5}, "body"),
        (
            {"metric": "avg_confidence", "condition": "below", "threshold": 1, "window_seconds": 5},
            "window_seconds",
        ),
        (
            {"metric": "avg_confidence", "condition": "below", "threshold": 1, "recipients": ["x"]},
            "recipients[0]",
        ),
        (
            {
                "metric": "avg_confidence",
                "condition": "below",
                "threshold": 1,
                "webhooks": [{"url": "ftp://x"}],
            },
            "webhooks[0].url",
        ),
        (
            {
                "metric": "avg_confidence",
                "condition": "below",
                "threshold": 1,
                "model_id": "a/1",
                "project": "a",
            },
            "body",
        ),
    ],
)
def test_bad_rules_are_named(setup: dict[str, Any], definition: dict[str, Any], path: str) -> None:
    s = setup
    response = s["client"].post(
        "/api/v1/alerts", json={"name": "x", **definition}, headers=s["key"]
    )
    assert response.status_code == 422, response.text
    assert [e["path"] for e in response.json()["errors"]] == [path]
    assert s["client"].get("/api/v1/alerts", headers=s["key"]).json() == {"alerts": []}


def test_rules_need_an_admin_key_and_stay_in_their_workspace(
    setup: dict[str, Any], new_key: NewKey
) -> None:
    s = setup
    rule_id = rule(s, name="mine", metric="request_count", condition="below", threshold=1)
    reader = auth(new_key("acme", scopes=("read", "ingest")))
    assert s["client"].get("/api/v1/alerts", headers=reader).status_code == 403
    other = auth(new_key("globex", scopes=("admin",)))
    for method, path in (
        ("get", f"/api/v1/alerts/{rule_id}"),
        ("delete", f"/api/v1/alerts/{rule_id}"),
        ("get", f"/api/v1/alerts/{rule_id}/history"),
        ("post", f"/api/v1/alerts/{rule_id}/test"),
    ):
        assert getattr(s["client"], method)(path, headers=other).status_code == 404
    assert s["client"].get("/api/v1/alerts", headers=other).json() == {"alerts": []}


def test_the_preview_shows_the_metric_over_the_last_day(setup: dict[str, Any]) -> None:
    s = setup
    rule_id = rule(
        s,
        name="preview",
        metric="request_count",
        condition="below",
        threshold=1,
        window_seconds=3600,
    )
    hour = T0.replace(minute=0) - timedelta(hours=3)
    send(s, traffic(hour, 60, 0.5))  # 120 inferences in that hour
    s["clock"].now = T0
    points = s["client"].get(f"/api/v1/alerts/{rule_id}/preview", headers=s["key"]).json()["points"]
    assert len(points) == 24
    values = {p["t"]: p["value"] for p in points}
    hour_end = (hour + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert values[hour_end] == 120
    assert sum(v for v in values.values()) == 120


@pytest.mark.parametrize("rule_id", ["0", "-1", "2147483648", "99999999999999999999999", "x"])
def test_impossible_rule_ids_are_named_not_a_server_error(
    setup: dict[str, Any], rule_id: str
) -> None:
    s = setup
    for method, path in (("get", ""), ("delete", ""), ("get", "/history"), ("post", "/test")):
        response = getattr(s["client"], method)(f"/api/v1/alerts/{rule_id}{path}", headers=s["key"])
        assert response.status_code == 422, (method, path, response.text)
        assert response.json()["errors"][0]["path"] == "rule_id"


def test_a_project_rule_reads_every_version_and_a_model_rule_one(setup: dict[str, Any]) -> None:
    s = setup
    common = {"metric": "avg_confidence", "condition": "below", "threshold": 0.45}
    common |= {"window_seconds": 600, "recipients": ["ops@example.com"]}
    rule(s, name="project cam", project="cam", **common)
    rule(s, name="only cam/2", model_id="cam/2", **common)
    # cam/1 at 0.2 and cam/2 at 0.6, as many of each: the project's mean is 0.4.
    send(s, traffic(T0, 10, 0.2, model="cam/1") + traffic(T0, 10, 0.6, model="cam/2"))
    run_at(s, T0 + timedelta(minutes=10))
    assert [m["Subject"] for m in s["mailbox"].messages] == ["[visionwatch] FIRING: project cam"]
    assert "avg_confidence of project cam is 0.4;" in text_of(s["mailbox"].messages[0])
