"""Two versions side by side, and one model against its period before: every figure of
`/api/v1/compare` against an independent computation from the items and verdicts sent, its
errors naming their parameter, and the page showing what the API answers."""

import math
import random
import re
from collections import Counter
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

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# Two windows of six hours: the old version runs in both, the new one in the second only.
FIRST = NOW - timedelta(hours=13)
SECOND = FIRST + timedelta(hours=6)
HOURS = 6
# A time bin is a twentieth of a decade: its middle is within half a bin of any value in it.
HALF_BIN = 0.5 / 20
# What a class absent from one side weighs in PSI (a share can't be 0 under a logarithm).
EPSILON = 1e-4

OLD = {"car": 0.6, "truck": 0.3, "bus": 0.1}
NEW = {"car": 0.4, "truck": 0.3, "bus": 0.2, "van": 0.1}


def window(start: datetime) -> dict[str, str]:
    end = start + timedelta(hours=HOURS)
    return {"start": start.strftime("%Y-%m-%dT%H:%M"), "end": end.strftime("%Y-%m-%dT%H:%M")}


def confidence(rng: random.Random, low: float, high: float) -> float:
    """A confidence away from the edges of the bars (0.05) that floats could round across."""
    value = round(rng.uniform(low, high), 3)
    while abs(value * 20 - round(value * 20)) < 0.01:
        value = round(rng.uniform(low, high), 3)
    return value


def traffic(
    rng: random.Random, model: str, start: datetime, mix: dict[str, float], slow: float
) -> list[dict[str, Any]]:
    sent = []
    for n in range(rng.randrange(200, 260)):
        failed = rng.random() < (0.05 if slow > 0.05 else 0.02)
        count = rng.randrange(1, 4)
        sent.append(
            {
                "inference_id": f"{model}-{start:%H}-{n}",
                "model_id": model,
                "device_id": rng.choice(["gate-1", "gate-2"]),
                "timestamp": (
                    start + timedelta(seconds=rng.uniform(0, HOURS * 3600 - 1))
                ).isoformat(),
                "inference_time": rng.lognormvariate(math.log(slow), 0.3),
                "predictions": []
                if failed
                else [
                    {
                        "class": rng.choices(list(mix), weights=list(mix.values()))[0],
                        "confidence": confidence(rng, 0.3, 0.98 if slow > 0.05 else 0.9),
                    }
                    for _ in range(count)
                ],
                "error": "timed out" if failed else None,
            }
        )
    return sent


@pytest.fixture
def site(tmp_path: Any, database: Database, new_key: NewKey) -> Iterator[dict[str, Any]]:
    settings = Settings(
        data_dir=tmp_path / "data", alert_interval_seconds=0, prune_interval_seconds=0
    )
    with SettledClient(create_app(settings, database, Clock(NOW))) as client:
        key = auth(new_key("acme", ("ingest", "read")))
        new_user(database, "acme", "ops@example.com")
        sign_in(client, "ops@example.com")
        rng = random.Random(7)
        sent = (
            traffic(rng, "vehicles/2", FIRST, OLD, 0.03)
            + traffic(rng, "vehicles/2", SECOND, OLD, 0.03)
            + traffic(rng, "vehicles/3", SECOND, NEW, 0.06)
        )
        for start in range(0, len(sent), 500):
            response = client.post(
                "/api/v1/inferences", json={"inferences": sent[start : start + 500]}, headers=key
            )
            assert response.status_code == 200, response.text
        verdicts: dict[str, str] = {}
        for item in rng.sample([i for i in sent if i["predictions"]], 80):
            verdict = rng.choice(["correct", "correct", "incorrect", "inconclusive"])
            answer = client.post(
                f"/api/v1/inferences/{item['inference_id']}/feedback",
                json={"verdict": verdict},
                headers=key,
            )
            assert answer.status_code == 200, answer.text
            verdicts[item["inference_id"]] = verdict
        yield {"client": client, "key": key, "sent": sent, "verdicts": verdicts}


def chosen(sent: list[dict[str, Any]], model: str, start: datetime) -> list[dict[str, Any]]:
    end = start + timedelta(hours=HOURS)
    return [
        item
        for item in sent
        if item["model_id"] == model and start <= datetime.fromisoformat(item["timestamp"]) < end
    ]


def nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


def psi(current: Counter[Any], baseline: Counter[Any]) -> float:
    keys = set(current) | set(baseline)
    p_total, q_total = sum(current.values()), sum(baseline.values())
    total = 0.0
    for key in keys:
        p = max(current[key] / p_total, EPSILON)
        q = max(baseline[key] / q_total, EPSILON)
        total += (p - q) * math.log(p / q)
    return total


def js_distance(current: Counter[Any], baseline: Counter[Any]) -> float:
    keys = set(current) | set(baseline)
    p_total, q_total = sum(current.values()), sum(baseline.values())
    divergence = 0.0
    for key in keys:
        p, q = current[key] / p_total, baseline[key] / q_total
        m = (p + q) / 2
        divergence += sum(x / 2 * math.log2(x / m) for x in (p, q) if x)
    return math.sqrt(divergence)


def expected_side(items: list[dict[str, Any]], verdicts: dict[str, str]) -> dict[str, Any]:
    scores = [p["confidence"] for item in items for p in item["predictions"]]
    times = [item["inference_time"] for item in items]
    errors = sum(1 for item in items if item["error"])
    judged = Counter(verdicts[i["inference_id"]] for i in items if i["inference_id"] in verdicts)
    bars = Counter(int(score * 20) for score in scores)
    return {
        "requests": len(items),
        "errors": errors,
        "error_rate": errors / len(items),
        "predictions": len(scores),
        "avg_confidence": sum(scores) / len(scores),
        "median": nearest_rank(scores, 50),
        "times": times,
        "classes": Counter(p["class"] for item in items for p in item["predictions"]),
        "coarse": Counter(int(score * 10) for score in scores),
        "histogram": [bars[bar] for bar in range(20)],
        "correct": judged["correct"],
        "incorrect": judged["incorrect"],
        "inconclusive": judged["inconclusive"],
    }


def assert_side(found: dict[str, Any], want: dict[str, Any]) -> None:
    for name in ("requests", "errors", "predictions"):
        assert found[name] == want[name], name
    assert found["error_rate"] == pytest.approx(want["error_rate"])
    assert found["avg_confidence"] == pytest.approx(want["avg_confidence"])
    # The median's bin is 0.01 wide and reported by its middle.
    assert abs(found["median_confidence"] - want["median"]) <= 0.005 + 1e-9
    for percent in (50, 95, 99):
        exact = nearest_rank(want["times"], percent)
        shown = found[f"inference_time_p{percent}"]
        assert abs(math.log10(shown / exact)) <= HALF_BIN + 1e-9, (percent, shown, exact)
    assert found["confidence_histogram"] == want["histogram"]
    verdicts = found["precision"]
    assert (verdicts["correct"], verdicts["incorrect"], verdicts["inconclusive"]) == (
        want["correct"],
        want["incorrect"],
        want["inconclusive"],
    )
    judged = want["correct"] + want["incorrect"]
    assert verdicts["judged"] == judged
    assert verdicts["precision"] == (pytest.approx(want["correct"] / judged) if judged else None)


def compare(site: dict[str, Any], **params: str) -> dict[str, Any]:
    response = site["client"].get("/api/v1/compare", params=params, headers=site["key"])
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_two_versions_and_two_periods_match_the_items_and_verdicts_sent(
    site: dict[str, Any],
) -> None:
    """One seeded workspace (on each database) answers every side of the question."""
    check_two_versions(site)
    check_one_model_against_its_period_before(site)
    check_the_page_shows_what_the_api_answers(site)


def check_two_versions(site: dict[str, Any]) -> None:
    found = compare(site, a_model_id="vehicles/2", b_model_id="vehicles/3", **window(SECOND))
    old = expected_side(chosen(site["sent"], "vehicles/2", SECOND), site["verdicts"])
    new = expected_side(chosen(site["sent"], "vehicles/3", SECOND), site["verdicts"])
    assert (found["a"]["model_id"], found["b"]["model_id"]) == ("vehicles/2", "vehicles/3")
    assert found["a"]["start"] == found["b"]["start"] == SECOND.isoformat().replace("+00:00", "Z")
    assert_side(found["a"], old)
    assert_side(found["b"], new)
    # The new version is slower, and it is seen so.
    assert found["b"]["inference_time_p95"] > found["a"]["inference_time_p95"]

    rows = {row["class"]: row for row in found["classes"]}
    assert set(rows) == set(old["classes"]) | set(new["classes"])
    for name, row in rows.items():
        assert (row["a_count"], row["b_count"]) == (old["classes"][name], new["classes"][name])
        assert row["b_share"] == pytest.approx(new["classes"][name] / new["predictions"])
    shares = [max(row["a_share"], row["b_share"]) for row in found["classes"]]
    assert shares == sorted(shares, reverse=True), "the largest classes first"
    assert rows["van"]["a_count"] == 0

    drift = found["drift"]
    assert drift["class_psi"] == pytest.approx(psi(new["classes"], old["classes"]))
    assert drift["class_js"] == pytest.approx(js_distance(new["classes"], old["classes"]))
    assert drift["confidence_psi"] == pytest.approx(psi(new["coarse"], old["coarse"]))
    assert drift["confidence_js"] == pytest.approx(js_distance(new["coarse"], old["coarse"]))
    # A new class at a tenth of the detections is a real shift.
    assert drift["class_psi"] > 0.2


def check_one_model_against_its_period_before(site: dict[str, Any]) -> None:
    found = compare(site, a_model_id="vehicles/2", **window(SECOND))
    assert found["b"]["model_id"] == "vehicles/2"
    assert found["a"]["start"] == FIRST.isoformat().replace("+00:00", "Z")
    assert found["a"]["end"] == found["b"]["start"]
    assert_side(
        found["a"], expected_side(chosen(site["sent"], "vehicles/2", FIRST), site["verdicts"])
    )
    assert_side(
        found["b"], expected_side(chosen(site["sent"], "vehicles/2", SECOND), site["verdicts"])
    )
    # A period set apart for A: the new version now against the old one six hours earlier.
    moved = compare(
        site,
        a_model_id="vehicles/2",
        b_model_id="vehicles/3",
        a_start=window(FIRST)["start"],
        **window(SECOND),
    )
    assert moved["a"]["start"] == FIRST.isoformat().replace("+00:00", "Z")
    assert moved["a"]["end"] == SECOND.isoformat().replace("+00:00", "Z")
    assert moved["a"]["requests"] == len(chosen(site["sent"], "vehicles/2", FIRST))


def check_the_page_shows_what_the_api_answers(site: dict[str, Any]) -> None:
    client = site["client"]
    params = {"a_model_id": "vehicles/2", "b_model_id": "vehicles/3", **window(SECOND)}
    found = compare(site, **params)
    page = client.get("/compare", params=params, headers=HTML)
    assert page.status_code == 200, page.text
    for side in ("a", "b"):
        for figure in ("requests", "error_rate", "avg_confidence", "inference_time_p95"):
            shown = re.search(
                rf'data-figure="{figure}" data-a="([^"]*)" data-b="([^"]*)"', page.text
            )
            assert shown, figure
            value = float(shown.group(1 if side == "a" else 2))
            assert value == pytest.approx(found[side][figure]), (side, figure)
    for row in found["classes"]:
        assert (
            f'data-class="{row["class"]}" data-a="{row["a_count"]}" data-b="{row["b_count"]}"'
            in page.text
        )
    psi_shown = re.search(r'data-score="class_psi" data-value="([^"]*)"', page.text)
    assert psi_shown
    assert float(psi_shown.group(1)) == pytest.approx(found["drift"]["class_psi"])
    assert "a real shift" in page.text

    # The model page leads here, against the version the model replaced.
    model = client.get("/models/vehicles/3", params=window(SECOND), headers=HTML)
    link = re.search(r'class="compare-link" href="([^"]+)"', model.text)
    assert link
    assert "a_model_id=vehicles%2F2" in link.group(1)
    assert "Compare with vehicles/2" in model.text
    first = client.get("/models/vehicles/2", headers=HTML)
    assert "Compare with the period before" in first.text


def test_a_page_without_sides_asks_for_them_and_bad_ones_say_why(bare: dict[str, Any]) -> None:
    client = bare["client"]
    empty = client.get("/compare", headers=HTML)
    assert empty.status_code == 200
    assert 'name="a_model_id"' in empty.text
    assert 'data-figure="requests"' not in empty.text
    assert '<option value="vehicles/3">' in empty.text
    unknown = client.get("/compare", params={"a_model_id": "trucks/1"}, headers=HTML)
    assert unknown.status_code == 404
    assert "no model &#39;trucks/1&#39;" in unknown.text
    unreadable = client.get(
        "/compare", params={"a_model_id": "vehicles/2", "a_end": "when?"}, headers=HTML
    )
    assert unreadable.status_code == 400


UNREADABLE: list[tuple[dict[str, str], str, str]] = [
    ({}, "a_model_id", "names the model of side A"),
    ({"a_model_id": "vehicles/9"}, "a_model_id", "no such model"),
    (
        {"a_model_id": "vehicles/2", "b_model_id": "nope/1"},
        "b_model_id",
        "no such model",
    ),
    ({"a_model_id": "vehicles/2", "a_start": "yesterday"}, "a_start", ""),
    (
        {"a_model_id": "vehicles/2", "a_start": "2026-01-02", "a_end": "2026-01-01"},
        "a_start",
        "before end",
    ),
    ({"a_model_id": "vehicles/2", "end": "soon"}, "end", ""),
]


@pytest.fixture
def bare(database: Database, new_key: NewKey, tmp_path: Any) -> Iterator[dict[str, Any]]:
    """Two versions with one inference each: enough to be named, nothing to count."""
    settings = Settings(data_dir=tmp_path / "data", alert_interval_seconds=0)
    with SettledClient(create_app(settings, database, Clock(NOW))) as client:
        key = auth(new_key("acme", ("ingest", "read")))
        new_user(database, "acme", "ops@example.com")
        sign_in(client, "ops@example.com")
        items: list[dict[str, Any]] = [
            {"model_id": model, "timestamp": SECOND.isoformat(), "predictions": []}
            for model in ("vehicles/2", "vehicles/3")
        ]
        sent = client.post("/api/v1/inferences", json={"inferences": items}, headers=key)
        assert sent.status_code == 200, sent.text
        yield {"client": client, "key": key}


def test_a_comparison_that_cannot_be_read_names_its_parameter(bare: dict[str, Any]) -> None:
    for params, field, message in UNREADABLE:
        response = bare["client"].get("/api/v1/compare", params=params, headers=bare["key"])
        assert response.status_code == 422, (params, response.text)
        errors = response.json()["errors"]
        assert [error["path"] for error in errors] == [field], params
        assert message in errors[0]["message"], params
