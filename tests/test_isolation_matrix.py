"""Every endpoint and every page, tried by workspace "alpha" on workspace "beta"'s things.

Each case names its route; a test checks that the cases cover every route of the API
(from /openapi.json) and of the dashboard, so a new route without a case fails here.
A key or user of alpha never reads nor changes beta's data: a 404 for beta's ids, lists
without beta's names, writes that land in alpha. A key without the scope gets a 403.
"""

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.dashboard import HTML, csrf_token, sign_in
from tests.support.settled import SettledClient
from tests.support.workspaces import NewKey, auth, new_user
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.web.app import PAGE_MODULES

BETA_NAMES = ("beta-model", "beta-cam", "beta-class", "beta-secret", "beta-rule")
PUBLIC = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, "JPEG")
    return buffer.getvalue()


@dataclass
class World:
    client: TestClient
    alpha: dict[str, dict[str, str]]  # keys by scope
    beta: dict[str, str]
    beta_rule: int
    beta_use_case: str
    beta_source: str

    def beta_state(self) -> dict[str, Any]:
        """All of beta's data that alpha could try to change."""
        c, key = self.client, self.beta
        return {
            "inference": c.get("/api/v1/inferences/b-1", headers=key).json(),
            "image": c.get("/api/v1/inferences/b-1/image", headers=key).content,
            "stats": c.get("/api/v1/stats", headers=key).json()["total_requests"],
            "rules": c.get("/api/v1/alerts", headers=key).json(),
            "capture": c.get("/api/v1/capture-rules", headers=key).json(),
            "devices": c.get("/api/v1/devices", headers=key).json()["devices"],
            "events": c.post(
                "/vision-events/query", json={"useCaseId": self.beta_use_case}, headers=key
            ).json()["events"],
            "use cases": c.get("/vision-events/use-cases", headers=key).json(),
            # Verdicts: on inferences, and on events (precision by use case).
            "verdicts": c.get("/api/v1/precision", headers=key).json(),
            "event verdicts": c.get(
                "/api/v1/precision", params={"events": "true", "group": "use_case"}, headers=key
            ).json(),
        }


@pytest.fixture
def world(settings: Settings, database: Database, new_key: NewKey) -> Iterator[World]:
    beta = auth(new_key("beta", scopes=("ingest", "read", "admin")))
    alpha = {
        scope: auth(new_key("alpha", scopes=(scope,))) for scope in ("ingest", "read", "admin")
    }
    new_user(database, "alpha", "a@example.com")
    with SettledClient(create_app(settings, database)) as client:
        item = {
            "inference_id": "b-1",
            "model_id": "beta-model/1",
            "device_id": "beta-cam",
            "predictions": [{"class": "beta-class", "confidence": 0.9}],
            "metadata": {"owner": "beta-secret"},
        }
        client.post(
            "/api/v1/inferences", json={"inferences": [item]}, headers=beta
        ).raise_for_status()
        client.put(
            "/api/v1/inferences/b-1/image",
            content=jpeg(),
            headers={**beta, "content-type": "image/jpeg"},
        ).raise_for_status()
        client.put(
            "/api/v1/capture-rules", json={"sample_rate": 0.25}, headers=beta
        ).raise_for_status()
        rule = {
            "name": "beta-rule",
            "metric": "avg_confidence",
            "condition": "below",
            "threshold": 0.1,
        }
        created = client.post("/api/v1/alerts", json=rule, headers=beta)
        created.raise_for_status()
        use_case = client.post(
            "/vision-events/use-cases", json={"name": "beta-secret"}, headers=beta
        )
        use_case.raise_for_status()
        event = vision_event(use_case.json()["id"], "beta-event")
        event["customMetadata"] = {"owner": "beta-secret"}
        client.post("/vision-events", json=event, headers=beta).raise_for_status()
        source = client.post(
            "/vision-events/upload",
            files={"file": ("beta.jpg", jpeg(), "image/jpeg")},
            headers=beta,
        )
        source.raise_for_status()
        yield World(
            client,
            alpha,
            beta,
            created.json()["id"],
            use_case.json()["id"],
            source.json()["sourceId"],
        )


def vision_event(use_case: str, event_id: str) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventType": "custom",
        "useCaseId": use_case,
        "timestamp": "2026-12-01T10:00:00Z",
        "eventData": {"value": "1"},
    }


@dataclass(frozen=True)
class Call:
    method: str
    route: str  # as in /openapi.json or the dashboard's router
    path: str  # with beta's ids filled in ({rule} for beta's rule)
    scope: str  # the scope it needs ("sender": ingest or read)
    expect: int  # alpha's answer: 404 for beta's things, else what alpha's own call gets
    json: Any = None
    content: bytes | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None


def api_calls() -> list[Call]:
    meta = {"data": [{"inference_ids": ["b-1"], "field_name": "owner", "field_value": "alpha"}]}
    rule = {
        "name": "alpha-rule",
        "metric": "avg_confidence",
        "condition": "below",
        "threshold": 0.5,
    }
    item = {"inferences": [{"inference_id": "a-1", "model_id": "alpha-model/1"}]}
    report: dict[str, list[Any]] = {"inference_results": []}
    return [
        Call("post", "/api/v1/inferences", "/api/v1/inferences", "ingest", 200, json=item),
        Call("get", "/api/v1/inferences", "/api/v1/inferences", "read", 200),
        Call(
            "post",
            "/api/v1/heartbeats",
            "/api/v1/heartbeats",
            "ingest",
            200,
            json={"device_id": "alpha-cam"},
        ),
        Call("post", "/api/v1/metadata", "/api/v1/metadata", "ingest", 200, json=meta),
        Call("get", "/api/v1/stats", "/api/v1/stats", "read", 200),
        Call("get", "/api/v1/models", "/api/v1/models", "read", 200),
        Call("get", "/api/v1/classes", "/api/v1/classes", "read", 200),
        Call("get", "/api/v1/timeseries", "/api/v1/timeseries", "read", 200),
        # Beta's model is not one alpha can compare: it names no model of alpha's.
        Call("get", "/api/v1/compare", "/api/v1/compare?a_model_id=beta-model/1", "read", 422),
        Call("get", "/api/v1/capture-rules", "/api/v1/capture-rules", "sender", 200),
        Call(
            "put",
            "/api/v1/capture-rules",
            "/api/v1/capture-rules",
            "admin",
            200,
            json={"sample_rate": 1.0},
        ),
        Call(  # alpha's own rule, made just above
            "delete", "/api/v1/capture-rules", "/api/v1/capture-rules", "admin", 204
        ),
        Call(
            "get",
            "/api/v1/inferences/{inference_id}/image",
            "/api/v1/inferences/b-1/image",
            "read",
            404,
        ),
        Call(
            "put",
            "/api/v1/inferences/{inference_id}/image",
            "/api/v1/inferences/b-1/image",
            "ingest",
            404,
            content=jpeg(),
        ),
        Call(
            "get",
            "/api/v1/inferences/{inference_id}/thumbnail",
            "/api/v1/inferences/b-1/thumbnail",
            "read",
            404,
        ),
        Call("get", "/api/v1/exports", "/api/v1/exports", "read", 200),
        Call("get", "/api/v1/inferences/{inference_id}", "/api/v1/inferences/b-1", "read", 404),
        Call("get", "/api/v1/devices", "/api/v1/devices", "read", 200),
        Call("get", "/api/v1/alerts", "/api/v1/alerts", "admin", 200),
        Call("post", "/api/v1/alerts", "/api/v1/alerts", "admin", 201, json=rule),
        Call("get", "/api/v1/alerts/{rule_id}", "/api/v1/alerts/{rule}", "admin", 404),
        Call("put", "/api/v1/alerts/{rule_id}", "/api/v1/alerts/{rule}", "admin", 404, json=rule),
        Call("delete", "/api/v1/alerts/{rule_id}", "/api/v1/alerts/{rule}", "admin", 404),
        Call(
            "post",
            "/api/v1/alerts/{rule_id}/silence",
            "/api/v1/alerts/{rule}/silence",
            "admin",
            404,
            json={"until": "2099-01-01T00:00:00Z"},
        ),
        Call(
            "delete",
            "/api/v1/alerts/{rule_id}/silence",
            "/api/v1/alerts/{rule}/silence",
            "admin",
            404,
        ),
        Call(
            "get", "/api/v1/alerts/{rule_id}/history", "/api/v1/alerts/{rule}/history", "admin", 404
        ),
        Call(
            "get", "/api/v1/alerts/{rule_id}/preview", "/api/v1/alerts/{rule}/preview", "admin", 404
        ),
        Call("post", "/api/v1/alerts/{rule_id}/test", "/api/v1/alerts/{rule}/test", "admin", 404),
        Call("post", "/inference-stats", "/inference-stats", "ingest", 200, json=report),
        Call("get", "/{workspace}/inference-stats", "/beta/inference-stats", "read", 404),
        Call(
            "post",
            "/{workspace}/inference-stats",
            "/beta/inference-stats",
            "ingest",
            404,
            json=report,
        ),
        Call(
            "post",
            "/{workspace}/inference-stats/metadata",
            "/beta/inference-stats/metadata",
            "ingest",
            404,
            json=meta,
        ),
        # Vision events: {use_case} is beta's use case; whatever alpha asks of it is a 404.
        Call(
            "post",
            "/vision-events",
            "/vision-events",
            "ingest",
            201,
            json=vision_event("alpha-uc", "alpha-1"),
        ),
        Call(
            "post",
            "/vision-events/batch",
            "/vision-events/batch",
            "ingest",
            201,
            json={"events": [vision_event("alpha-uc", "alpha-2")]},
        ),
        Call(
            "post",
            "/vision-events/query",
            "/vision-events/query",
            "read",
            404,
            json={"useCaseId": "{use_case}"},
        ),
        Call("get", "/vision-events/use-cases", "/vision-events/use-cases", "read", 200),
        Call(
            "post",
            "/vision-events/use-cases",
            "/vision-events/use-cases",
            "ingest",
            201,
            json={"name": "alpha-uc"},
        ),
        Call(
            "put",
            "/vision-events/use-cases/{use_case_id}",
            "/vision-events/use-cases/{use_case}",
            "ingest",
            404,
            json={"name": "alpha-name"},
        ),
        Call(
            "post",
            "/vision-events/use-cases/{use_case_id}/archive",
            "/vision-events/use-cases/{use_case}/archive",
            "ingest",
            404,
        ),
        Call(
            "post",
            "/vision-events/use-cases/{use_case_id}/unarchive",
            "/vision-events/use-cases/{use_case}/unarchive",
            "ingest",
            404,
        ),
        Call(
            "get",
            "/vision-events/custom-metadata-schema/{use_case_id}",
            "/vision-events/custom-metadata-schema/{use_case}",
            "read",
            404,
        ),
        Call(
            "post",
            "/vision-events/upload",
            "/vision-events/upload",
            "ingest",
            201,
            files={"file": ("frame.jpg", jpeg(), "image/jpeg")},
        ),
        Call(
            "post",
            "/api/v1/inferences/{inference_id}/feedback",
            "/api/v1/inferences/b-1/feedback",
            "ingest",
            404,
            json={"verdict": "incorrect"},
        ),
        Call("get", "/api/v1/precision", "/api/v1/precision", "read", 200),
        Call(
            "get",
            "/vision-events/images/{source_id}",
            "/vision-events/images/{source}",
            "read",
            404,
        ),
        Call(
            "post",
            "/v2/events",
            "/v2/events",
            "ingest",
            201,
            json={
                "inference_timestamp": "2026-12-01T10:00:00+00:00",
                "solution": "alpha-uc",
                "event_schema": "custom",
                "event_data": {"value": "1"},
            },
        ),
    ]


def send(world: World, call: Call, headers: dict[str, str]) -> Any:
    path = call.path.replace("{rule}", str(world.beta_rule))
    path = path.replace("{use_case}", world.beta_use_case).replace("{source}", world.beta_source)
    body = call.json
    if body is not None:  # beta's use case, wherever the body names it
        body = orjson.loads(orjson.dumps(body).replace(b"{use_case}", world.beta_use_case.encode()))
    extra = {"content-type": "image/jpeg"} if call.content else {}
    return world.client.request(
        call.method.upper(),
        path,
        json=body,
        content=call.content,
        files=call.files,
        headers={**headers, **extra},
    )


def test_the_cases_cover_every_route(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert {(c.method, c.route) for c in api_calls()} == documented - PUBLIC
    dashboard = {
        (m.lower(), r.path)
        for module in PAGE_MODULES
        for r in module.router.routes
        for m in r.methods
    }
    assert {(c[0], c[1]) for c in page_calls()} == dashboard - {
        ("get", "/login"),
        ("post", "/login"),
        ("post", "/logout"),
    }


def test_every_endpoint_keeps_alpha_out_of_beta(world: World) -> None:
    before = world.beta_state()
    for call in api_calls():
        response = send(world, call, world.alpha["read" if call.scope == "sender" else call.scope])
        assert response.status_code == call.expect, (call.method, call.path, response.text)
        for name in BETA_NAMES:
            assert name not in response.text, (call.method, call.path, name)
    assert world.beta_state() == before
    # What alpha wrote is alpha's.
    mine = world.client.get("/api/v1/inferences/a-1", headers=world.alpha["read"]).json()
    assert mine["model_id"] == "alpha-model/1"


def test_every_endpoint_checks_its_scope(world: World) -> None:
    others = {"ingest": "read", "read": "ingest", "admin": "read"}
    for call in api_calls():
        if call.scope == "sender":
            continue  # every key may read its capture rules: no key lacks the scope
        response = send(world, call, world.alpha[others[call.scope]])
        assert response.status_code == 403, (call.method, call.path, response.status_code)


def page_calls() -> list[tuple[str, str, str, int, dict[str, str] | None]]:
    """(method, route, path, alpha's answer, form)."""
    rule_form = {
        "name": "alpha-rule",
        "metric": "avg_confidence",
        "condition": "below",
        "threshold": "0.5",
    }
    return [
        ("get", "/", "/", 200, None),
        ("get", "/models/{model_id:text}", "/models/beta-model/1", 404, None),
        ("get", "/inferences", "/inferences", 200, None),
        ("get", "/inferences/{inference_id:text}", "/inferences/b-1", 404, None),
        ("get", "/images/{inference_id:text}", "/images/b-1", 404, None),
        ("get", "/thumbnails/{inference_id:text}", "/thumbnails/b-1", 404, None),
        ("get", "/inferences.csv", "/inferences.csv", 200, None),
        ("get", "/inferences.series", "/inferences.series", 200, None),
        ("get", "/devices", "/devices", 200, None),
        ("get", "/devices/{name:text}", "/devices/beta-cam", 404, None),
        ("get", "/models", "/models", 200, None),
        ("get", "/compare", "/compare?a_model_id=beta-model/1", 404, None),
        ("get", "/inferences.jsonl", "/inferences.jsonl", 200, None),
        ("get", "/dataset.zip", "/dataset.zip", 200, None),
        ("get", "/capture-rules", "/capture-rules", 200, None),
        ("post", "/capture-rules", "/capture-rules", 303, {"model_id": "", "sample_rate": "1"}),
        ("post", "/capture-rules/delete", "/capture-rules/delete", 303, {"model_id": ""}),
        ("get", "/alerts", "/alerts", 200, None),
        ("get", "/alerts/new", "/alerts/new", 200, None),
        ("post", "/alerts/new", "/alerts/new", 303, rule_form),
        ("get", "/alerts/{rule_id}", "/alerts/{rule}", 404, None),
        ("post", "/alerts/{rule_id}", "/alerts/{rule}", 404, rule_form),
        ("post", "/alerts/{rule_id}/action", "/alerts/{rule}/action", 404, {"action": "delete"}),
        # Vision events: {use_case} is beta's use case (by its id; also by its name),
        # {source} beta's uploaded image.
        ("get", "/events", "/events", 200, None),
        ("get", "/events/{use_case}", "/events/{use_case}", 404, None),
        ("get", "/events/{use_case}", "/events/beta-secret", 404, None),
        ("get", "/events/{use_case}/{event_id:text}", "/events/{use_case}/beta-event", 404, None),
        (
            "post",
            "/events/{use_case}/{event_id:text}/feedback",
            "/events/{use_case}/beta-event/feedback",
            404,
            {"verdict": "incorrect"},
        ),
        (
            "post",
            "/inferences/{inference_id:text}/feedback",
            "/inferences/b-1/feedback",
            404,
            {"verdict": "incorrect", "corrected_class": "beta-class"},
        ),
        ("get", "/event-images/{source_id}", "/event-images/{source}", 404, None),
        ("get", "/event-thumbnails/{source_id}", "/event-thumbnails/{source}", 404, None),
    ]


def test_every_page_keeps_alpha_out_of_beta(world: World) -> None:
    client = world.client
    assert sign_in(client, "a@example.com").status_code == 303
    token = csrf_token(client.get("/alerts/new", headers=HTML).text)
    before = world.beta_state()
    nowhere_rule = world.beta_rule + 1000
    # Beta's random ids, and ids of nothing for the same pages.
    ids = {"{use_case}": world.beta_use_case, "{source}": world.beta_source}
    nowhere = {"{use_case}": "no-such-use-case", "{source}": "ve-img-nowhere"}

    def ask(method: str, path: str, form: dict[str, str] | None) -> tuple[int, str]:
        data = None if form is None else {**form, "csrf_token": token}
        response = client.request(
            method.upper(), path, data=data, headers=HTML, follow_redirects=False
        )
        return response.status_code, response.content.decode("utf-8", "replace")

    def fill(template: str, values: dict[str, str]) -> str:
        for name, value in values.items():
            template = template.replace(name, value)
        return template

    for method, _, template, expect, form in page_calls():
        path = fill(template.replace("{rule}", str(world.beta_rule)), ids)
        status, body = ask(method, path, form)
        assert status == expect, (method, path, status)
        if expect == 404:
            # The page names what was asked for, and says no more of beta's than of nothing.
            elsewhere = fill(template.replace("{rule}", str(nowhere_rule)), nowhere)
            _, missing = ask(method, elsewhere.replace("beta", "gamma"), form)
            if "{rule}" in template:
                for shown in ("/{}", "rule {}"):
                    body = body.replace(shown.format(world.beta_rule), shown.format(nowhere_rule))
            for name, value in ids.items():
                if name in template:
                    body = body.replace(value, nowhere[name])
            assert body.replace("beta", "gamma") == missing, (method, path)
            continue
        for name in BETA_NAMES:
            assert name not in body, (method, path, name)
    assert world.beta_state() == before
