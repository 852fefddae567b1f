"""Operations endpoints and the OpenAPI document."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.postgres import free_port
from tests.support.workspaces import NewKey, auth
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db.engine import create_database


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def test_readiness_fails_when_the_database_is_gone(tmp_path: Path) -> None:
    # Nothing listens on this port: the database cannot be reached.
    settings = Settings(
        database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none", data_dir=tmp_path
    )
    # A plain client: a settled one would wait for the aggregator on the missing database.
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"


def test_unknown_database_url_is_refused() -> None:
    with pytest.raises(ValueError, match=r"sqlite:///path\.db or postgresql://"):
        create_database("mysql://localhost/db")


def test_metrics_count_requests_and_inferences(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    items = [{"inference_id": str(i), "model_id": "m/1"} for i in range(4)]
    client.post("/api/v1/inferences", json={"inferences": items}, headers=key)
    client.post("/api/v1/inferences", json={"inferences": items}, headers=key)
    client.get("/api/v1/inferences/3", headers=key)
    client.get("/api/v1/inferences/404-me", headers=key)
    text = client.get("/metrics").text
    assert "visionwatch_inferences_ingested_total 4.0" in text
    assert "visionwatch_inferences_duplicate_total 4.0" in text
    assert (
        'visionwatch_http_requests_total{method="POST",route="/api/v1/inferences",status="200"} 2.0'
        in text
    )
    # Labelled by route template, never by the inference id in the path.
    assert 'route="/api/v1/inferences/{inference_id:text}",status="404"} 1.0' in text
    assert "404-me" not in text


def test_openapi_describes_every_endpoint_and_its_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("post", "/api/v1/inferences"),
        ("post", "/api/v1/heartbeats"),
        ("post", "/api/v1/metadata"),
        ("get", "/api/v1/stats"),
        ("get", "/api/v1/models"),
        ("get", "/api/v1/classes"),
        ("get", "/api/v1/timeseries"),
        ("get", "/api/v1/inferences"),
        ("get", "/api/v1/inferences/{inference_id}"),
        ("get", "/api/v1/devices"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    }
    documented = {(method, path) for path, ops in paths.items() for method in ops}
    assert expected <= documented
    for method, path in expected:
        responses = paths[path][method]["responses"]
        if path.startswith("/api/v1/"):
            assert {"401", "403"} <= responses.keys(), (method, path)
        if method == "post":
            assert {"413", "422"} <= responses.keys(), (method, path)
    assert "404" in paths["/api/v1/inferences/{inference_id}"]["get"]["responses"]
    body = paths["/api/v1/inferences"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/BatchIn"
    item = spec["components"]["schemas"]["ItemIn"]
    assert {"model_id", "predictions", "metadata", "timestamp"} <= item["properties"].keys()
    assert client.get("/docs").status_code == 200


def test_metrics_per_model_and_device(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    items = [
        {
            "model_id": "vehicles/3",
            "device_id": "edge-1",
            "predictions": [{"class": "car", "confidence": 0.5}] * (i % 3),
        }
        for i in range(7)
    ]
    items.append({"model_id": "vehicles/3", "error": "boom"})
    client.post("/api/v1/inferences", json={"inferences": items}, headers=key)
    text = client.get("/metrics").text
    # Sent without timestamps, so now: inside the gauges' window.
    assert 'visionwatch_model_inferences_last_24h{model="vehicles/3",workspace="acme"} 8.0' in text
    assert 'visionwatch_model_errors_last_24h{model="vehicles/3",workspace="acme"} 1.0' in text
    predictions = sum(i % 3 for i in range(7))
    series = 'visionwatch_model_predictions_last_24h{model="vehicles/3",workspace="acme"}'
    assert f"{series} {predictions}.0" in text
    assert 'visionwatch_device_online{device="edge-1",workspace="acme"} 1.0' in text
    assert "visionwatch_database_up 1.0" in text
