"""Two workspaces on one server: nothing of one is visible, or changeable, from the other."""

from fastapi.testclient import TestClient

from tests.support.workspaces import NewKey, auth

READS = (
    "/api/v1/stats",
    "/api/v1/models",
    "/api/v1/classes",
    "/api/v1/timeseries",
    "/api/v1/inferences",
    "/api/v1/devices",
)


def fill(client: TestClient, key: dict[str, str], tag: str) -> None:
    items = [
        {
            "inference_id": f"shared-{i}",
            "model_id": f"{tag}-model/1",
            "device_id": f"{tag}-cam",
            "time": 0.01 * (i + 1),
            "predictions": [{"class": f"{tag}-class", "confidence": 0.5}],
            "metadata": {"owner": tag},
        }
        for i in range(5)
    ]
    response = client.post("/api/v1/inferences", json={"inferences": items}, headers=key)
    assert response.json() == {"accepted": 5, "duplicates": 0}  # same ids, other workspace
    client.post("/api/v1/heartbeats", json={"device_id": f"{tag}-gateway"}, headers=key)


def test_no_leak_either_way(client: TestClient, new_key: NewKey) -> None:
    alpha = auth(new_key("alpha"))
    beta = auth(new_key("beta"))
    fill(client, alpha, "alpha")
    fill(client, beta, "beta")
    for mine, theirs, other in ((alpha, "beta", beta), (beta, "alpha", alpha)):
        for path in READS:
            response = client.get(path, headers=mine)
            assert response.status_code == 200
            assert theirs not in response.text, path
        stats = client.get("/api/v1/stats", headers=mine).json()
        assert stats["total_requests"]["current"] == 5
        # Their names, used as filters, find nothing here.
        for params in (
            {"model_id": f"{theirs}-model/1"},
            {"device_id": f"{theirs}-cam"},
            {"metadata.owner": theirs},
            {"class": f"{theirs}-class"},
        ):
            listed = client.get("/api/v1/inferences", params=params, headers=mine).json()
            assert listed["inferences"] == []
        detail = client.get("/api/v1/inferences/shared-0", headers=mine).json()
        assert theirs not in str(detail)
        assert client.get("/api/v1/inferences/shared-0", headers=other).status_code == 200
    # Metadata sent by one workspace never lands on the other's inference.
    client.post(
        "/api/v1/metadata",
        json={"data": [{"inference_ids": ["shared-1"], "field_name": "owner", "field_value": "x"}]},
        headers=alpha,
    )
    beta_meta = client.get("/api/v1/inferences/shared-1", headers=beta).json()["metadata"]
    assert beta_meta == {"owner": "beta"}


def test_other_workspace_inference_is_404(client: TestClient, new_key: NewKey) -> None:
    alpha = auth(new_key("alpha"))
    beta = auth(new_key("beta"))
    client.post(
        "/api/v1/inferences",
        json={"inferences": [{"inference_id": "only-alpha", "model_id": "m/1"}]},
        headers=alpha,
    )
    response = client.get("/api/v1/inferences/only-alpha", headers=beta)
    assert response.status_code == 404
    # Same answer as an id that exists nowhere: no existence leak.
    nowhere = client.get("/api/v1/inferences/never-sent", headers=beta)
    assert response.json()["detail"].replace("only-alpha", "X") == nowhere.json()["detail"].replace(
        "never-sent", "X"
    )
