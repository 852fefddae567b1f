"""Operators' verdicts on inferences and the realised precision they give: figures against
an independent count of the verdicts sent, the interval against a direct search for the
score test's bounds, and an alert on precision."""

import html
import json
import math
import random
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.clock import Clock
from tests.support.dashboard import HTML, csrf_token, sign_in
from tests.support.settled import SettledClient
from tests.support.workspaces import NewKey, auth, new_user
from visionwatch.alerts.evaluator import Evaluator
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.verdicts import Z95

MODELS = ("dock/1", "gate/2")
DEVICES = ("cam-1", "cam-2")
CLASSES = ("person", "forklift", "pallet")


def score_bounds(correct: int, judged: int) -> tuple[float, float]:
    """The proportions p the score test does not reject: |p̂ - p| <= z sqrt(p(1-p)/n), found
    by bisection on each side of p̂ (not by Wilson's closed form)."""
    observed = correct / judged

    def rejected(p: float) -> bool:
        return abs(observed - p) > Z95 * math.sqrt(p * (1 - p) / judged)

    def edge(inside: float, outside: float) -> float:
        for _ in range(200):
            middle = (inside + outside) / 2
            if rejected(middle):
                outside = middle
            else:
                inside = middle
        return (inside + outside) / 2

    low = 0.0 if not rejected(0.0) else edge(observed, 0.0)
    high = 1.0 if not rejected(1.0) else edge(observed, 1.0)
    return low, high


def test_precision_by_model_class_device_and_hour_matches_the_verdicts(
    client: TestClient, new_key: NewKey
) -> None:
    key = auth(new_key(scopes=("ingest", "read")))
    rng = random.Random(11)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    items: list[dict[str, Any]] = []
    for n in range(240):
        cls = rng.choice(CLASSES)
        items.append(
            {
                "inference_id": f"i-{n}",
                "model_id": MODELS[n % 2],
                "device_id": DEVICES[(n // 2) % 2],
                "timestamp": (now - timedelta(hours=1 + n % 3, minutes=n % 50)).isoformat(),
                "predictions": [
                    {"class": cls, "confidence": 0.9},
                    {"class": cls, "confidence": 0.8},
                    {"class": "other", "confidence": 0.3},
                ],
            }
        )
    for start in range(0, len(items), 100):
        batch = {"inferences": items[start : start + 100]}
        assert client.post("/api/v1/inferences", json=batch, headers=key).status_code == 200
    expected: dict[tuple[str, Any], list[int]] = defaultdict(lambda: [0, 0, 0])
    order = ("correct", "incorrect", "inconclusive")
    for item in items[:200]:
        verdict = rng.choices(order, weights=(6, 3, 1))[0]
        answer = client.post(
            f"/api/v1/inferences/{item['inference_id']}/feedback",
            json={"verdict": "incorrect"},  # replaced just below: the last verdict counts
            headers=key,
        )
        assert answer.status_code == 200
        given = {"verdict": verdict}
        answer = client.post(
            f"/api/v1/inferences/{item['inference_id']}/feedback", json=given, headers=key
        )
        assert answer.json()["class"] == item["predictions"][0]["class"], "its top class"
        stamp = datetime.fromisoformat(item["timestamp"])
        for group, value in (
            ("all", None),
            ("model", item["model_id"]),
            ("device", item["device_id"]),
            ("class", item["predictions"][0]["class"]),
            ("hour", stamp.replace(minute=0, second=0, microsecond=0)),
        ):
            expected[(group, value)][order.index(verdict)] += 1

    week = {"start": (now - timedelta(days=7)).isoformat(), "end": now.isoformat()}
    whole = client.get("/api/v1/precision", params=week, headers=key).json()
    correct, incorrect, inconclusive = expected[("all", None)]
    assert (whole["correct"], whole["incorrect"], whole["inconclusive"]) == (
        correct,
        incorrect,
        inconclusive,
    )
    assert whole["precision"] == correct / (correct + incorrect)
    low, high = score_bounds(correct, correct + incorrect)
    assert whole["interval"][0] == pytest.approx(low, abs=1e-9)
    assert whole["interval"][1] == pytest.approx(high, abs=1e-9)
    for group in ("model", "device", "class", "hour"):
        found = client.get(
            "/api/v1/precision", params={**week, "group": group}, headers=key
        ).json()["groups"]
        got = {
            (
                datetime.fromisoformat(g["key"].replace("Z", "+00:00"))
                if group == "hour"
                else g["key"]
            ): (g["correct"], g["incorrect"], g["inconclusive"])
            for g in found
        }
        wanted = {value: tuple(counts) for (g, value), counts in expected.items() if g == group}
        assert got == wanted, group
    one = client.get(
        "/api/v1/precision", params={**week, "model_id": "dock/1", "class": "person"}, headers=key
    ).json()
    dock = [
        order.index(v)
        for v, item in zip(_replay_verdicts(), items[:200], strict=False)
        if item["model_id"] == "dock/1" and item["predictions"][0]["class"] == "person"
    ]
    assert one["judged"] == sum(1 for v in dock if v < 2)


def _replay_verdicts() -> list[str]:
    """The verdicts the test above drew, drawn again from the same seed in the same order."""
    rng = random.Random(11)
    for _ in range(240):
        rng.choice(CLASSES)
    return [
        rng.choices(("correct", "incorrect", "inconclusive"), weights=(6, 3, 1))[0]
        for _ in range(200)
    ]


def test_a_verdict_names_its_inference_and_a_good_value(
    client: TestClient, new_key: NewKey
) -> None:
    key = auth(new_key(scopes=("ingest", "read")))
    item = {"inference_id": "x", "model_id": "m/1", "predictions": []}
    client.post("/api/v1/inferences", json={"inferences": [item]}, headers=key)
    missing = client.post(
        "/api/v1/inferences/nope/feedback", json={"verdict": "correct"}, headers=key
    )
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]
    bad = client.post("/api/v1/inferences/x/feedback", json={"verdict": "maybe"}, headers=key)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "verdict"
    reader = auth(new_key(scopes=("read",)))
    refused = client.post(
        "/api/v1/inferences/x/feedback", json={"verdict": "correct"}, headers=reader
    )
    assert refused.status_code == 403
    given = client.post(
        "/api/v1/inferences/x/feedback",
        json={"verdict": "incorrect", "class": "car", "corrected_class": "van"},
        headers=key,
    ).json()
    assert (given["class"], given["corrected_class"]) == ("car", "van")
    # An inference that predicted nothing is judged too (a miss is a verdict), on no class.
    empty = client.post("/api/v1/inferences/x/feedback", json={"verdict": "correct"}, headers=key)
    assert empty.status_code == 200, empty.text
    assert empty.json()["class"] is None


def test_precision_below_its_threshold_fires_an_alert(
    database: Database, new_key: NewKey, tmp_path: Any
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", alert_interval_seconds=0, prune_interval_seconds=0
    )
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    clock = Clock(now)
    key = auth(new_key("acme", scopes=("ingest", "read", "admin")))
    with SettledClient(create_app(settings, database, clock)) as client:
        items = [
            {
                "inference_id": f"p-{n}",
                "model_id": "vehicles/3",
                "timestamp": (now - timedelta(minutes=30 - n)).isoformat(),
                "predictions": [{"class": "car", "confidence": 0.95}],
            }
            for n in range(25)
        ]
        client.post("/api/v1/inferences", json={"inferences": items}, headers=key)
        rule = {
            "name": "precision of vehicles/3",
            "metric": "precision",
            "condition": "below",
            "threshold": 0.8,
            "model_id": "vehicles/3",
            "window_seconds": 86400,
            "min_samples": 20,
        }
        made = client.post("/api/v1/alerts", json=rule, headers=key)
        assert made.status_code == 201, made.text
        rule_id = made.json()["id"]
        evaluator = Evaluator(database, settings, clock)

        def state() -> str:
            found = client.get(f"/api/v1/alerts/{rule_id}", headers=key).json()
            return str(found["state"])

        for n in range(19):  # 19 verdicts, all incorrect: below the 20 it needs
            client.post(
                f"/api/v1/inferences/p-{n}/feedback", json={"verdict": "incorrect"}, headers=key
            )
        evaluator.run_once()
        assert state() == "no_data"
        for n in range(19, 25):  # 25 judged, 19 incorrect: precision 0.24
            client.post(
                f"/api/v1/inferences/p-{n}/feedback", json={"verdict": "correct"}, headers=key
            )
        clock.now = now + timedelta(minutes=1)
        evaluator.run_once()
        assert state() == "firing"


def test_the_model_page_shows_realised_precision_beside_confidence(
    client: TestClient, new_key: NewKey, database: Database
) -> None:
    key = auth(new_key("acme", scopes=("ingest", "read")))
    new_user(database, "acme", "ops@example.com")
    now = datetime.now(UTC)
    items = [
        {
            "inference_id": f"v-{n}",
            "model_id": "dock/1",
            "timestamp": (now - timedelta(hours=1, minutes=n)).isoformat(),
            "predictions": [{"class": "person" if n % 2 else "pallet", "confidence": 0.9}],
        }
        for n in range(10)
    ]
    client.post("/api/v1/inferences", json={"inferences": items}, headers=key)
    for n, verdict in enumerate(["correct"] * 6 + ["incorrect"] * 3 + ["inconclusive"]):
        client.post(f"/api/v1/inferences/v-{n}/feedback", json={"verdict": verdict}, headers=key)
    sign_in(client, "ops@example.com")
    page = client.get("/models/dock/1", headers=HTML).text
    section = page.split('id="realised-precision"', 1)[1].split("</section>", 1)[0]
    text = " ".join(re.sub(r"<[^>]+>", "", section).replace("&nbsp;", " ").split())
    low, high = score_bounds(6, 9)
    assert f"{6 / 9:.1%} of 9 judged inferences were correct" in text
    assert f"interval {low:.1%} \u2013 {high:.1%}; 1 inconclusive" in text
    assert "average confidence of 90.0%" in text
    # The confidence chart's series carry the precision of each hour operators judged.
    raw = re.search(r'<script type="application/json" id="series-data">(.*?)</script>', page)
    assert raw
    series = json.loads(html.unescape(raw.group(1)))
    expected: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for n, verdict in enumerate(["correct"] * 6 + ["incorrect"] * 3):
        moment = datetime.fromisoformat(str(items[n]["timestamp"]))
        hour = int(moment.replace(minute=0, second=0, microsecond=0).timestamp())
        expected[hour][0 if verdict == "correct" else 1] += 1
    shown = {t: p for t, p in zip(series["t"], series["precision"], strict=True) if p is not None}
    assert shown == {t: pytest.approx(c / (c + i)) for t, (c, i) in expected.items()}
    # Per class: person is v-1, v-3, v-5 (correct), v-7 (incorrect), v-9 (inconclusive).
    row = page.split('<tr data-class="person">', 1)[1].split("</tr>", 1)[0]
    assert "75.0% (4)" in " ".join(row.split())


def test_the_inference_page_buttons_judge_it_with_a_corrected_class(
    client: TestClient, new_key: NewKey, database: Database
) -> None:
    key = auth(new_key("acme", scopes=("ingest", "read")))
    new_user(database, "acme", "ops@example.com")
    now = datetime.now(UTC)
    items = [
        {
            "inference_id": f"gate/{n}",  # ids with a slash keep their page
            "model_id": MODELS[n % 2],
            "timestamp": (now - timedelta(minutes=10 + n)).isoformat(),
            "predictions": [{"class": "car", "confidence": 0.6 + n / 100}],
        }
        for n in range(8)
    ]
    client.post("/api/v1/inferences", json={"inferences": items}, headers=key)
    sign_in(client, "ops@example.com")
    given: dict[str, str] = {}
    for n, verdict in enumerate(["correct", "incorrect", "incorrect", "inconclusive", "correct"]):
        url = f"/inferences/gate%2F{n}"
        page = client.get(url, headers=HTML).text
        assert "No verdict yet." in page
        assert '<option value="car">' in page, "the corrected class offers what was predicted"
        form = {"verdict": verdict, "csrf_token": csrf_token(page)}
        if verdict == "incorrect":
            form["corrected_class"] = "van"
        answer = client.post(f"{url}/feedback", data=form, headers=HTML, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == url
        given[f"gate/{n}"] = verdict
        shown = client.get(url, headers=HTML).text
        assert f'data-verdict="{verdict}">Verdict: <strong class="verdict-{verdict}">' in shown
        assert ('it was <span class="corrected-class">van</span>' in shown) == (
            verdict == "incorrect"
        )
    # The overview puts each model's realised precision beside its confidence.
    overview = client.get("/", headers=HTML).text
    for model in MODELS:
        judged = [
            given[i["inference_id"]]
            for i in items
            if i["model_id"] == model and i["inference_id"] in given
        ]
        correct, incorrect = judged.count("correct"), judged.count("incorrect")
        row = overview.split(f'<tr data-model="{model}">', 1)[1].split("</tr>", 1)[0]
        cell = re.search(r'<td class="num precision">([^<]*)</td>', row)
        assert cell, model
        expected = f"{correct / (correct + incorrect):.1%} ({correct + incorrect})"
        assert " ".join(cell.group(1).split()) == expected, model
    figures = client.get("/api/v1/precision", params={"group": "model"}, headers=key).json()
    counted = (figures["correct"], figures["incorrect"], figures["inconclusive"])
    assert counted == (2, 2, 1)
    refused = client.post(
        "/inferences/gate%2F0/feedback",
        data={"verdict": "maybe", "csrf_token": csrf_token(overview)},
        headers=HTML,
    )
    assert refused.status_code == 400
    assert "Unknown verdict" in refused.text
    missing = client.post(
        "/inferences/nope/feedback",
        data={"verdict": "correct", "csrf_token": csrf_token(overview)},
        headers=HTML,
    )
    assert missing.status_code == 404
    forged = client.post(
        "/inferences/gate%2F0/feedback", data={"verdict": "incorrect"}, headers=HTML
    )
    assert forged.status_code == 403
    after = client.get("/api/v1/precision", headers=key).json()
    assert (after["correct"], after["incorrect"]) == (2, 2), "refused forms changed nothing"
