"""Limits: what one inference may carry, how fast one key may call, and keys kept secret."""

import http.client
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.support.server import serving_process
from tests.support.settled import SettledClient
from tests.support.workspaces import NewKey, auth, new_workspace
from tests.test_roboflow import condensed
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db.engine import Database

GOOD: dict[str, Any] = {"model_id": "limits/1", "predictions": [{"class": "a", "confidence": 0.5}]}


def stored(client: TestClient, key: dict[str, str]) -> int:
    total: int = client.get("/api/v1/stats", headers=key).json()["total_requests"]["current"]
    return total


def batch(*items: dict[str, Any]) -> dict[str, Any]:
    return {"inferences": [{**item, "inference_id": f"i{n}"} for n, item in enumerate(items)]}


@pytest.mark.parametrize(
    ("item", "path", "message"),
    [
        ({"metadata": {f"f{n}": n for n in range(101)}}, "metadata", "at most 100 fields"),
        ({"metadata": {"note": "x" * 1001}}, "metadata.note", "at most 1000 characters"),
        (
            {"predictions": [{"class": "a", "confidence": 0.5}] * 10_001},
            "predictions",
            "at most 10000 predictions",
        ),
    ],
)
def test_default_limits_name_the_field_and_store_nothing(
    client: TestClient, new_key: NewKey, item: dict[str, Any], path: str, message: str
) -> None:
    key = auth(new_key())
    response = client.post("/api/v1/inferences", json=batch(GOOD, {**GOOD, **item}), headers=key)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["index"], error["path"]) == (1, path)
    assert message in error["message"]
    assert stored(client, key) == 0, "the good item of the batch is not stored either"


def test_the_largest_allowed_item_is_stored(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    largest = {
        **GOOD,
        "metadata": {f"f{n}": "y" * 1000 for n in range(100)},
    }
    response = client.post("/api/v1/inferences", json=batch(largest), headers=key)
    assert response.status_code == 200
    row = client.get("/api/v1/inferences/i0", headers=key).json()
    assert len(row["metadata"]) == 100
    assert row["metadata"]["f99"] == "y" * 1000


def test_limits_are_configurable(settings: Settings, database: Database, new_key: NewKey) -> None:
    tight = settings.model_copy(
        update={
            "max_metadata_fields": 2,
            "max_metadata_value_chars": 5,
            "max_predictions": 1,
            "max_batch_items": 2,
        }
    )
    key = auth(new_key())
    with SettledClient(create_app(tight, database)) as client:
        cases = [
            (batch({**GOOD, "metadata": {"a": 1, "b": 2, "c": 3}}), (0, "metadata")),
            (batch({**GOOD, "metadata": {"a": "123456"}}), (0, "metadata.a")),
            (batch({**GOOD, "predictions": GOOD["predictions"] * 2}), (0, "predictions")),
            (batch(GOOD, GOOD, GOOD), (None, "inferences")),
        ]
        for body, where in cases:
            response = client.post("/api/v1/inferences", json=body, headers=key)
            assert response.status_code == 422, body
            error = response.json()["errors"][0]
            assert (error.get("index"), error["path"]) == where
        attach = {"data": [{"inference_ids": ["i0"], "field_name": "f", "field_value": "123456"}]}
        refused = client.post("/api/v1/metadata", json=attach, headers=key)
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["path"] == "data[0].field_value"
        # An Inference Server's report holds to the same limits.
        report = {
            "api_key": key["Authorization"].removeprefix("Bearer "),  # where Roboflow puts it
            "inference_results": [condensed("m/1", [("a", 0.5), ("b", 0.6)])],
        }
        refused = client.post("/inference-stats", json=report)
        assert refused.status_code == 422
        assert (
            refused.json()["errors"][0]["path"]
            == "inference_results[0].inference.response[0].predictions"
        )
        fine = batch({**GOOD, "metadata": {"a": "12345", "b": 2}})
        assert client.post("/api/v1/inferences", json=fine, headers=key).status_code == 200
        assert stored(client, key) == 1


def test_a_key_past_its_rate_gets_429_with_retry_after(
    settings: Settings, database: Database, new_key: NewKey
) -> None:
    limited = settings.model_copy(update={"rate_limit_per_second": 0.5, "rate_limit_burst": 3})
    first, second = auth(new_key()), auth(new_key())
    with SettledClient(create_app(limited, database)) as client:
        answers = [client.get("/api/v1/models", headers=first) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[3].headers["retry-after"] == "2"  # half a request a second
        assert "retry in 2 s" in answers[3].json()["detail"]
        # Another key has its own allowance; so do the Roboflow-compatible endpoints' keys.
        assert client.get("/api/v1/models", headers=second).status_code == 200
        report: dict[str, list[Any]] = {"inference_results": []}
        compat = client.post("/inference-stats", json=report, headers=first)
        assert compat.status_code == 429
        assert compat.headers["retry-after"] == "2"
        # Nothing was spent by the refused calls: after two seconds, one more goes through.
        time.sleep(2.1)
        assert client.get("/api/v1/models", headers=first).status_code == 200
        assert client.get("/api/v1/models", headers=first).status_code == 429


def test_keys_are_stored_only_as_digests(database: Database, new_key: NewKey) -> None:
    secret = new_key()
    with database.read() as conn:
        rows = conn.execute(text("SELECT * FROM api_keys")).all()
    for row in rows:
        assert all(secret not in str(value) for value in row)


@pytest.mark.slow
def test_keys_never_reach_the_server_log(tmp_path: Path) -> None:
    env = {"VISIONWATCH_DATA_DIR": str(tmp_path)}
    secret = new_workspace(env, "logged")
    with tempfile.TemporaryFile(mode="w+") as log:
        with serving_process(env, log_to=log) as (base, _):
            assert httpx.get(f"{base}/api/v1/models", params={"api_key": secret}).status_code == 200
            wrong = secret[:-4] + "zzzz"
            assert httpx.get(f"{base}/api/v1/stats?api_key={wrong}&x=1").status_code == 401
            assert httpx.get(f"{base}/api/v1/models", headers=auth(secret)).status_code == 200
        log.seek(0)
        written = log.read()
    assert "GET /api/v1/models?api_key=[redacted] HTTP/1.1" in written
    assert "/api/v1/stats?api_key=[redacted]&x=1" in written
    assert secret not in written
    assert secret[3:20] not in written


OVERSIZE = 11 * 1024 * 1024  # over the default 10 MiB


def _post_with_urllib(url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _post_chunked_with_http_client(url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """Streamed, with no declared length: the limit is found only while reading."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=60)
    try:
        pieces = (body[n : n + 65536] for n in range(0, len(body), 65536))
        connection.request(
            "POST",
            parts.path,
            body=pieces,
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _post_with_httpx(url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    response = httpx.post(
        url, content=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    return response.status_code, dict(response.headers), response.content


@pytest.mark.slow
@pytest.mark.parametrize(
    "post", [_post_with_urllib, _post_chunked_with_http_client, _post_with_httpx]
)
def test_an_oversize_body_is_a_413_for_every_client(
    server: tuple[str, dict[str, str]],
    post: Callable[[str, bytes], tuple[int, dict[str, str], bytes]],
) -> None:
    """The server answers before the body is read; it reads the rest (up to a bound) before
    closing, else the kernel resets a connection with unread data and a client still sending
    sees a reset instead of the answer (urllib did)."""
    base, _ = server
    status, headers, body = post(f"{base}/api/v1/inferences", b" " * OVERSIZE)
    assert status == 413
    assert orjson.loads(body) == {"detail": "the request body exceeds 10 MiB"}
    assert {name.lower(): value for name, value in headers.items()}["connection"] == "close"
    assert httpx.get(f"{base}/healthz").status_code == 200, "the server serves on"
