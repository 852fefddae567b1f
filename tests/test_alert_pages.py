"""Alert pages: make a rule with the form, see its state, history links, preview; mute, test."""

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.clock import Clock
from tests.support.dashboard import HTML, csrf_token, sign_in
from tests.support.receivers import smtp_server
from tests.support.settled import SettledClient
from tests.support.workspaces import NewKey, auth, new_user
from visionwatch.alerts.evaluator import Evaluator
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db.engine import Database

T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)


@pytest.fixture
def site(tmp_path: Any, database: Database, new_key: NewKey) -> Iterator[dict[str, Any]]:
    with smtp_server() as (port, mailbox):
        settings = Settings(
            data_dir=tmp_path / "data",
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
            alert_interval_seconds=0,
            prune_interval_seconds=0,
        )
        clock = Clock(T0)
        with SettledClient(create_app(settings, database, clock)) as client:
            key = auth(new_key("acme"))
            new_user(database, "acme", "ops@example.com")
            sign_in(client, "ops@example.com")
            yield {
                "client": client,
                "key": key,
                "clock": clock,
                "mailbox": mailbox,
                "evaluator": Evaluator(database, settings, clock),
            }


def form_of(page: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": csrf_token(page), **fields}


def test_a_rule_made_with_the_form_fires_and_shows_its_history(site: dict[str, Any]) -> None:
    client, mailbox = site["client"], site["mailbox"]
    page = client.get("/alerts/new", headers=HTML).text
    made = client.post(
        "/alerts/new",
        data=form_of(
            page,
            name="cam confidence",
            metric="avg_confidence",
            condition="below",
            threshold="0.5",
            model_id="cam/1",
            window_seconds="600",
            min_samples="5",
            recipients="ops@example.com",
        ),
        follow_redirects=False,
    )
    assert made.status_code == 303
    rule_url = made.headers["location"]
    items = [
        {
            "model_id": "cam/1",
            "timestamp": (T0 + timedelta(minutes=m)).isoformat(),
            "predictions": [{"class": "car", "confidence": 0.3}],
        }
        for m in range(10)
    ]
    client.post("/api/v1/inferences", json={"inferences": items}, headers=site["key"])
    site["clock"].now = T0 + timedelta(minutes=11)
    site["evaluator"].run_once()
    assert mailbox.wait_for(1)
    listed = client.get("/alerts", headers=HTML).text
    assert re.search(r'data-state="firing"', listed)
    overview = client.get("/", headers=HTML).text
    assert "1 firing" in overview
    detail = client.get(rule_url, headers=HTML).text
    assert 'id="rule-state">firing<' in detail
    link = re.search(r'<a href="(/models/cam/1\?start=[^"]+)">', detail)
    assert link, "the history links to the dashboard view of the window"
    assert "start=" + (T0 + timedelta(minutes=1)).strftime("%Y-%m-%dT%H%%3A%M") in link.group(1)
    assert client.get(link.group(1).replace("&amp;", "&"), headers=HTML).status_code == 200
    series = re.search(r'<script type="application/json" id="alert-series">(.*?)</script>', detail)
    assert series
    preview = json.loads(html.unescape(series.group(1)))
    assert preview["threshold"] == 0.5
    assert len(preview["t"]) == len(preview["value"]) == 24


def test_the_form_names_what_is_wrong(site: dict[str, Any]) -> None:
    client = site["client"]
    page = client.get("/alerts/new", headers=HTML).text
    response = client.post(
        "/alerts/new",
        data=form_of(page, name="x", metric="class_share", condition="above", threshold="lots"),
    )
    assert response.status_code == 400
    assert "threshold: &#39;lots&#39; is not a number" in response.text
    response = client.post(
        "/alerts/new",
        data=form_of(page, name="x", metric="class_share", condition="above", threshold="0.5"),
    )
    assert response.status_code == 400
    assert "class_share needs a class" in response.text
    assert "No alert rule yet" in client.get("/alerts", headers=HTML).text


def test_mute_test_and_delete_from_the_page(site: dict[str, Any]) -> None:
    client, mailbox = site["client"], site["mailbox"]
    page = client.get("/alerts/new", headers=HTML).text
    made = client.post(
        "/alerts/new",
        data=form_of(
            page,
            name="quiet",
            metric="request_count",
            condition="below",
            threshold="1",
            recipients="ops@example.com",
        ),
        follow_redirects=False,
    )
    rule_url = made.headers["location"]
    detail = client.get(rule_url, headers=HTML).text
    until = re.search(r'name="until" value="([0-9.]+)"', detail)
    assert until
    muted = client.post(
        f"{rule_url}/action",
        data=form_of(detail, action="mute", until=until.group(1)),
        follow_redirects=True,
        headers=HTML,
    )
    assert "Muted until" in muted.text
    tested = client.post(
        f"{rule_url}/action",
        data=form_of(detail, action="test"),
        follow_redirects=True,
        headers=HTML,
    )
    assert "test sent to 1 of 1" in tested.text
    assert mailbox.wait_for(1)
    assert mailbox.messages[0]["Subject"] == "[visionwatch] TEST: quiet"
    gone = client.post(
        f"{rule_url}/action", data=form_of(detail, action="delete"), follow_redirects=False
    )
    assert gone.headers["location"] == "/alerts"
    assert client.get(rule_url, headers=HTML).status_code == 404


def test_a_new_rule_can_be_previewed_before_it_is_saved(site: dict[str, Any]) -> None:
    client = site["client"]
    hour = T0.replace(minute=0) - timedelta(hours=2)
    items = [
        {
            "model_id": "cam/1",
            "timestamp": (hour + timedelta(minutes=m)).isoformat(),
            "predictions": [{"class": "car", "confidence": 0.25 if m % 2 else 0.75}],
        }
        for m in range(60)
    ]
    client.post("/api/v1/inferences", json={"inferences": items}, headers=site["key"])
    page = client.get("/alerts/new", headers=HTML).text
    fields = {
        "name": "draft",
        "metric": "avg_confidence",
        "condition": "below",
        "threshold": "0.4",
        "model_id": "cam/1",
        "window_seconds": "3600",
        "min_samples": "1",
    }
    shown = client.post("/alerts/new", data=form_of(page, action="preview", **fields))
    assert shown.status_code == 200
    series = re.search(r'id="alert-series">(.*?)</script>', shown.text)
    assert series
    preview = json.loads(html.unescape(series.group(1)))
    by_time = dict(zip(preview["t"], preview["value"], strict=True))
    assert by_time[int((hour + timedelta(hours=1)).timestamp())] == pytest.approx(0.5)
    assert preview["threshold"] == 0.4
    assert 'value="draft"' in shown.text  # the form keeps what was typed
    assert "No alert rule yet" in client.get("/alerts", headers=HTML).text
