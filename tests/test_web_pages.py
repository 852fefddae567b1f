"""Dashboard pages over HTTP: sign-in, scoping, filters, exports and error pages."""

import csv
import io
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.support.dashboard import HTML, PASSWORD, csrf_token, sign_in
from tests.support.workspaces import NewKey, auth, new_user
from visionwatch.db.engine import Database
from visionwatch.web.sessions import CSRF_COOKIE, SESSION_COOKIE

NOW = datetime.now(UTC)


def items(count: int, seed: int = 5, model: str = "vehicles/3") -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "inference_id": f"{model}-{seed}-{n}",
            "model_id": model,
            "device_id": rng.choice(["gate-1", "gate-2"]),
            "timestamp": (NOW - timedelta(hours=rng.uniform(0, 48))).isoformat(),
            "inference_time": rng.uniform(0.01, 0.1),
            "predictions": [
                {"class": rng.choice(["car", "bus"]), "confidence": round(rng.random(), 3)}
                for _ in range(rng.randrange(4))
            ],
            "metadata": {"camera": rng.choice(["north", "south"]), "night": rng.random() < 0.5},
        }
        for n in range(count)
    ]


def send(client: TestClient, key: str, batch: list[dict[str, Any]]) -> None:
    response = client.post("/api/v1/inferences", json={"inferences": batch}, headers=auth(key))
    assert response.status_code == 200, response.text


def test_pages_need_a_signed_in_user(client: TestClient) -> None:
    for path in ("/", "/inferences", "/models/x", "/inferences/x", "/inferences.csv"):
        response = client.get(path, headers=HTML, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")


def test_sign_in_sets_a_protected_cookie_and_returns_to_the_page(
    client: TestClient, database: Database
) -> None:
    new_user(database, "acme", "ops@example.com")
    token = csrf_token(client.get("/login", headers=HTML).text)
    response = client.post(
        "/login",
        data={
            "email": "ops@example.com",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/inferences?class=car",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/inferences?class=car"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert client.get("/", headers=HTML).status_code == 200
    # Signing out ends it.
    page = client.get("/", headers=HTML).text
    client.post("/logout", data={"csrf_token": csrf_token(page)}, follow_redirects=False)
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/", "/\\evil"])
def test_sign_in_never_sends_people_to_another_site(
    client: TestClient, database: Database, next_url: str
) -> None:
    new_user(database, "acme", "ops@example.com")
    token = csrf_token(client.get("/login", headers=HTML).text)
    response = client.post(
        "/login",
        data={
            "email": "ops@example.com",
            "password": PASSWORD,
            "csrf_token": token,
            "next": next_url,
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_wrong_password_and_unknown_email_say_the_same(
    client: TestClient, database: Database
) -> None:
    new_user(database, "acme", "ops@example.com")
    wrong = sign_in(client, "ops@example.com", "not the password")
    unknown = sign_in(client, "nobody@example.com")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Wrong email or password." in response.text
        assert SESSION_COOKIE not in response.cookies


def test_forms_without_their_csrf_token_are_refused(client: TestClient, database: Database) -> None:
    new_user(database, "acme", "ops@example.com")
    client.get("/login", headers=HTML)
    assert client.cookies.get(CSRF_COOKIE)
    for token in (None, "forged"):
        data = {"email": "ops@example.com", "password": PASSWORD}
        if token:
            data["csrf_token"] = token
        response = client.post("/login", data=data, headers=HTML, follow_redirects=False)
        assert response.status_code == 403
        assert "This form has expired" in response.text


def test_a_forged_session_cookie_is_not_a_session(client: TestClient, database: Database) -> None:
    new_user(database, "acme", "ops@example.com")
    assert sign_in(client, "ops@example.com").status_code == 303
    value = client.cookies[SESSION_COOKIE]
    payload, _, mac = value.partition(".")
    client.cookies.set(SESSION_COOKIE, payload + "." + mac[::-1])
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


def test_an_email_in_two_workspaces_names_the_one_to_open(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    new_user(database, "acme", "ops@example.com")
    new_user(database, "globex", "ops@example.com")
    response = sign_in(client, "ops@example.com")
    assert response.status_code == 401
    assert "several workspaces" in response.text
    token = csrf_token(client.get("/login", headers=HTML).text)
    data = {"email": "ops@example.com", "password": PASSWORD, "csrf_token": token}
    response = client.post("/login", data={**data, "workspace": "globex"}, follow_redirects=False)
    assert response.status_code == 303
    assert ">globex<" in client.get("/", headers=HTML).text


def test_a_user_sees_only_their_workspace(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    theirs = items(5, model="secret/1")
    send(client, new_key("globex"), theirs)
    send(client, new_key("acme"), items(5))
    new_user(database, "acme", "ops@example.com")
    sign_in(client, "ops@example.com")
    overview = client.get("/", headers=HTML).text
    assert "vehicles/3" in overview
    assert "secret/1" not in overview
    inference = client.get(f"/inferences/{theirs[0]['inference_id']}", headers=HTML)
    assert inference.status_code == 404
    assert "No such inference" in inference.text
    assert client.get("/models/secret/1", headers=HTML).status_code == 404
    listed = client.get("/inferences", headers=HTML).text
    assert "secret/1" not in listed
    exported = client.get("/inferences.jsonl", params={"model_id": "secret/1"}).text
    assert exported == ""


def test_exports_hold_exactly_the_filtered_rows(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    key = new_key("acme")
    sent = items(1200)  # more than one export page
    for start in range(0, len(sent), 500):
        send(client, key, sent[start : start + 500])
    new_user(database, "acme", "ops@example.com")
    sign_in(client, "ops@example.com")
    params = {"period": "7d", "class": "car", "metadata.camera": "north"}
    expected = [
        i["inference_id"]
        for i in sorted(sent, key=lambda i: i["timestamp"], reverse=True)
        if i["metadata"]["camera"] == "north" and any(p["class"] == "car" for p in i["predictions"])
    ]
    lines = client.get("/inferences.jsonl", params=params)
    assert lines.headers["content-disposition"] == 'attachment; filename="inferences.jsonl"'
    rows = [orjson.loads(line) for line in lines.text.splitlines()]
    assert [r["inference_id"] for r in rows] == expected
    by_id = {i["inference_id"]: i for i in sent}
    for row in rows[:50]:
        item = by_id[row["inference_id"]]
        assert row["metadata"] == item["metadata"]
        confidences = [p["confidence"] for p in item["predictions"]]
        assert row["mean_confidence"] == pytest.approx(sum(confidences) / len(confidences))
    table = list(csv.DictReader(io.StringIO(client.get("/inferences.csv", params=params).text)))
    assert [r["inference_id"] for r in table] == expected
    first = by_id[table[0]["inference_id"]]
    assert orjson.loads(table[0]["metadata"]) == first["metadata"]
    assert table[0]["device_id"] == first["device_id"]
    assert int(table[0]["prediction_count"]) == len(first["predictions"])


def test_the_table_pages_through_every_filtered_row(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    key = new_key("acme")
    sent = items(120)
    send(client, key, sent)
    new_user(database, "acme", "ops@example.com")
    sign_in(client, "ops@example.com")
    seen: list[str] = []
    url: str | None = "/inferences?metadata.camera=south"
    while url:
        page = client.get(url.replace("&amp;", "&"), headers=HTML).text
        seen += re.findall(r'<tr data-inference-id="([^"]+)"', page)
        found = re.search(r'<a class="button next" href="([^"]+)"', page)
        url = found.group(1) if found else None
    expected = [
        i["inference_id"]
        for i in sorted(sent, key=lambda i: i["timestamp"], reverse=True)
        if i["metadata"]["camera"] == "south"
    ]
    assert seen == expected


def test_first_use_shows_how_to_send_an_inference(client: TestClient, database: Database) -> None:
    new_user(database, "acme", "ops@example.com")
    sign_in(client, "ops@example.com")
    page = client.get("/", headers=HTML).text
    assert "Send your first inference" in page
    assert "http://testserver/api/v1/inferences" in page
    assert 'Client("http://testserver"' in page
    assert "visionwatch keys create acme" in page


def test_bad_page_parameters_get_a_page_that_says_why(
    client: TestClient, database: Database
) -> None:
    new_user(database, "acme", "ops@example.com")
    sign_in(client, "ops@example.com")
    cases = {
        "/?period=1y": "Unknown period",
        "/?start=yesterday": "This period cannot be read",
        "/?start=2026-01-02&end=2026-01-01": "This period is empty",
        "/inferences?min_confidence=high": "Bad confidence filter",
        "/inferences?max_confidence=2": "Bad confidence filter",
        "/inferences?cursor=zzz": "Bad page link",
        "/inferences?has_image=maybe": "Bad filter",
    }
    for path, title in cases.items():
        response = client.get(path, headers=HTML)
        assert response.status_code == 400, path
        assert title in response.text, path
        assert response.headers["content-type"].startswith("text/html")


def test_unknown_paths_are_a_page_for_browsers_and_json_for_programs(client: TestClient) -> None:
    page = client.get("/no/such/page", headers=HTML)
    assert page.status_code == 404
    assert "Page not found" in page.text
    api = client.get("/api/v1/nothing", headers=HTML)
    assert api.status_code == 404
    assert api.json() == {"detail": "Not Found"}
    assert client.get("/no/such/page").json() == {"detail": "Not Found"}


def test_pages_forbid_inline_scripts_and_framing(client: TestClient) -> None:
    response = client.get("/login", headers=HTML)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_details_draw_boxes_masks_and_keypoints_where_they_were_predicted(
    client: TestClient, database: Database, new_key: NewKey
) -> None:
    key = new_key("acme")
    segmentation = {
        "inference_id": "seg-1",
        "model_id": "parts/2",
        "image": {"width": 800, "height": 600},
        "predictions": [
            {
                "class": "bolt",
                "confidence": 0.8,
                "x": 100,
                "y": 50,
                "width": 40,
                "height": 20,
                "points": [{"x": 80, "y": 40}, {"x": 120, "y": 40}, {"x": 100, "y": 60}],
            }
        ],
    }
    keypoints = {
        "inference_id": "pose-1",
        "model_id": "pose/1",
        "predictions": [
            {
                "class": "person",
                "confidence": 0.7,
                "x": 300,
                "y": 200,
                "width": 100,
                "height": 300,
                "keypoints": [{"x": 290, "y": 90, "confidence": 0.9, "class": "nose"}],
            }
        ],
    }
    send(client, key, [segmentation, keypoints])
    new_user(database, "acme", "ops@example.com")
    sign_in(client, "ops@example.com")
    page = client.get("/inferences/seg-1", headers=HTML).text
    assert 'viewBox="0 0 800 600"' in page
    assert '<rect x="80.0" y="40.0" width="40.0" height="20.0"/>' in page
    assert '<polygon points="80,40 120,40 100,60"/>' in page
    page = client.get("/inferences/pose-1", headers=HTML).text
    # No image size sent: the drawing spans the boxes.
    assert 'viewBox="0 0 350.0 350.0"' in page
    assert '<circle cx="290" cy="90" r="3"/>' in page
