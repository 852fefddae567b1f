"""Images: upload with or after an inference, real decoding, storage once, serving, isolation."""

import io
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.dashboard import HTML, sign_in
from tests.support.settled import SettledClient
from tests.support.workspaces import NewKey, auth, new_user
from visionwatch.config import Settings
from visionwatch.db.engine import Database


def picture(kind: str = "JPEG", size: tuple[int, int] = (64, 48), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, color)
    image.putpixel((1, 1), (0, 0, 255))
    image.save(buffer, format=kind)
    return buffer.getvalue()


def stored_files(settings: Settings) -> list[Path]:
    root = settings.images_dir()
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def send(client: TestClient, key: str, *items: dict[str, Any]) -> None:
    response = client.post(
        "/api/v1/inferences", json={"inferences": list(items)}, headers=auth(key)
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("kind", "content_type"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_an_image_put_after_its_inference_round_trips(
    client: TestClient, new_key: NewKey, kind: str, content_type: str
) -> None:
    key = new_key()
    send(client, key, {"inference_id": "a", "model_id": "m/1"})
    data = picture(kind, (120, 80))
    response = client.put("/api/v1/inferences/a/image", content=data, headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "inference_id": "a",
        "width": 120,
        "height": 80,
        "content_type": content_type,
        "bytes": len(data),
    }
    served = client.get("/api/v1/inferences/a/image", headers=auth(key))
    assert served.content == data
    assert served.headers["content-type"] == content_type
    detail = client.get("/api/v1/inferences/a", headers=auth(key)).json()
    assert detail["has_image"] is True
    assert detail["image_url"] == "/api/v1/inferences/a/image"
    # The image's size fills in the inference's, which had none.
    assert detail["image"] == {"width": 120, "height": 80}
    thumb = client.get("/api/v1/inferences/a/thumbnail", headers=auth(key))
    assert thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as small:
        assert small.format == "JPEG"
        assert max(small.size) <= 320


def test_the_sizes_sent_with_an_inference_are_kept(client: TestClient, new_key: NewKey) -> None:
    key = new_key()
    send(
        client,
        key,
        {"inference_id": "a", "model_id": "m/1", "image": {"width": 1920, "height": 1080}},
    )
    client.put("/api/v1/inferences/a/image", content=picture(size=(96, 54)), headers=auth(key))
    detail = client.get("/api/v1/inferences/a", headers=auth(key)).json()
    assert detail["image"] == {"width": 1920, "height": 1080}


def test_the_same_image_is_stored_once(
    client: TestClient, new_key: NewKey, settings: Settings
) -> None:
    key = new_key()
    send(
        client,
        key,
        {"inference_id": "a", "model_id": "m/1"},
        {"inference_id": "b", "model_id": "m/1"},
    )
    data = picture()
    for inference_id in ("a", "b"):
        response = client.put(
            f"/api/v1/inferences/{inference_id}/image", content=data, headers=auth(key)
        )
        assert response.status_code == 200
    assert len(stored_files(settings)) == 1
    thumbs = [client.get(f"/api/v1/inferences/{i}/thumbnail", headers=auth(key)) for i in "ab"]
    assert thumbs[0].content == thumbs[1].content
    assert len(stored_files(settings)) == 2  # the thumbnail, made once


def test_images_come_with_their_inferences_in_a_multipart_body(
    client: TestClient, new_key: NewKey
) -> None:
    key = new_key()
    batch = {
        "inferences": [
            {"inference_id": "with", "model_id": "m/1"},
            {"inference_id": "without", "model_id": "m/1"},
        ]
    }
    import orjson

    response = client.post(
        "/api/v1/inferences",
        files={
            "inferences": (None, orjson.dumps(batch), "application/json"),
            "with": ("frame.png", picture("PNG", (30, 20)), "image/png"),
        },
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "images_kept": 1,
        "images_over_cap": 0,
    }
    listed = client.get(
        "/api/v1/inferences", params={"has_image": "true"}, headers=auth(key)
    ).json()
    assert [i["inference_id"] for i in listed["inferences"]] == ["with"]
    assert listed["inferences"][0]["image"] == {"width": 30, "height": 20}
    assert client.get("/api/v1/inferences/without/image", headers=auth(key)).status_code == 404


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, format="PNG")  # 144 M pixels in a few KB
    return buffer.getvalue()


HOSTILE = {
    "truncated JPEG": (picture("JPEG", (200, 200))[:400], "cannot be decoded"),
    "text behind an image type": (b"hello, this is not an image" * 10, "not an image"),
    "GIF": (picture("GIF"), "GIF images are not accepted"),
    "decompression bomb": (_bomb(), "pixels"),
    "empty": (b"", "empty"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_broken_and_hostile_images_are_refused_and_nothing_is_stored(
    client: TestClient, new_key: NewKey, settings: Settings, case: str
) -> None:
    data, reason = HOSTILE[case]
    key = new_key()
    send(client, key, {"inference_id": "a", "model_id": "m/1"})
    response = client.put(
        "/api/v1/inferences/a/image",
        content=data,
        headers={**auth(key), "content-type": "image/jpeg"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["path"] == "image"
    assert reason in error["message"]
    import orjson

    multipart = client.post(
        "/api/v1/inferences",
        files={
            "inferences": (
                None,
                orjson.dumps({"inferences": [{"inference_id": "b", "model_id": "m/1"}]}),
                "application/json",
            ),
            "b": ("b.jpg", data, "image/jpeg"),
        },
        headers=auth(key),
    )
    assert multipart.status_code == 422, multipart.text
    assert multipart.json()["errors"][0]["path"] == "images.b"
    assert stored_files(settings) == []
    assert client.get("/api/v1/inferences/a", headers=auth(key)).json()["has_image"] is False
    assert client.get("/api/v1/inferences/b", headers=auth(key)).status_code == 404


def test_size_limits_are_configurable(tmp_path: Path, database: Database, new_key: NewKey) -> None:
    settings = Settings(
        data_dir=tmp_path / "limits", max_image_pixels=100 * 100, max_image_bytes=4096
    )
    from visionwatch.app import create_app

    with SettledClient(create_app(settings, database)) as client:
        key = new_key()
        send(client, key, {"inference_id": "a", "model_id": "m/1"})
        wide = client.put(
            "/api/v1/inferences/a/image", content=picture("PNG", (101, 100)), headers=auth(key)
        )
        assert wide.status_code == 422
        assert "at most 10000 pixels" in wide.json()["errors"][0]["message"]
        noisy = Image.effect_noise((200, 200), 100).convert("RGB")
        buffer = io.BytesIO()
        noisy.save(buffer, format="PNG")
        heavy = client.put(
            "/api/v1/inferences/a/image", content=buffer.getvalue(), headers=auth(key)
        )
        assert heavy.status_code == 422
        assert "at most 4096 bytes" in heavy.json()["errors"][0]["message"]
        fine = client.put(
            "/api/v1/inferences/a/image", content=picture("PNG", (100, 100)), headers=auth(key)
        )
        assert fine.status_code == 200


def test_an_image_for_a_missing_inference_is_404_and_not_kept(
    client: TestClient, new_key: NewKey, settings: Settings
) -> None:
    key = new_key()
    response = client.put("/api/v1/inferences/nope/image", content=picture(), headers=auth(key))
    assert response.status_code == 404
    assert stored_files(settings) == []


def test_another_workspace_s_image_is_404_for_keys_and_users(
    client: TestClient, new_key: NewKey, database: Database
) -> None:
    theirs, ours = new_key("globex"), new_key("acme")
    send(client, theirs, {"inference_id": "secret", "model_id": "m/1"})
    assert (
        client.put(
            "/api/v1/inferences/secret/image", content=picture(), headers=auth(theirs)
        ).status_code
        == 200
    )
    for path in ("/api/v1/inferences/secret/image", "/api/v1/inferences/secret/thumbnail"):
        assert client.get(path, headers=auth(ours)).status_code == 404
        assert client.get(path, headers=auth(theirs)).status_code == 200
    # Nor can they attach an image to it.
    assert (
        client.put(
            "/api/v1/inferences/secret/image", content=picture(color="blue"), headers=auth(ours)
        ).status_code
        == 404
    )
    new_user(database, "acme", "ops@example.com")
    sign_in(client, "ops@example.com")
    for path in ("/images/secret", "/thumbnails/secret"):
        assert client.get(path, headers=HTML).status_code == 404


def test_the_detail_page_shows_the_image_under_its_boxes(
    client: TestClient, new_key: NewKey, database: Database
) -> None:
    key = new_key("acme")
    send(
        client,
        key,
        {
            "inference_id": "a/b c",
            "model_id": "m/1",
            "predictions": [
                {"class": "car", "confidence": 0.9, "x": 30, "y": 20, "width": 10, "height": 8}
            ],
        },
    )
    data = picture(size=(64, 48))
    assert (
        client.put("/api/v1/inferences/a/b c/image", content=data, headers=auth(key)).status_code
        == 200
    )
    new_user(database, "acme", "ops@example.com")
    sign_in(client, "ops@example.com")
    page = client.get("/inferences/a/b c", headers=HTML).text
    assert '<image href="/images/a%2Fb%20c"' in page
    assert 'viewBox="0 0 64 48"' in page
    assert 'id="download-image" href="/images/a%2Fb%20c" download' in page
    served = client.get("/images/a%2Fb%20c", headers=HTML)
    assert served.content == data
    assert client.get("/thumbnails/a%2Fb%20c", headers=HTML).headers["content-type"] == "image/jpeg"


def test_capture_rules_are_edited_on_their_page(
    client: TestClient, new_key: NewKey, database: Database
) -> None:
    from tests.support.dashboard import csrf_token

    key = new_key("acme")
    new_user(database, "acme", "ops@example.com")
    sign_in(client, "ops@example.com")
    page = client.get("/capture-rules", headers=HTML)
    assert "No rule yet" in page.text
    form = {
        "csrf_token": csrf_token(page.text),
        "model_id": "vehicles/3",
        "confidence_min": "0.3",
        "confidence_max": "0.6",
        "classes": "forklift, ladder",
        "metadata": "camera=north",
        "daily_cap": "50",
        "enabled": "on",
    }
    saved = client.post("/capture-rules", data=form, follow_redirects=False)
    assert saved.status_code == 303
    rules = client.get("/api/v1/capture-rules", headers=auth(key)).json()["rules"]
    assert rules == [
        {
            "model_id": "vehicles/3",
            "sample_rate": None,
            "confidence_min": 0.3,
            "confidence_max": 0.6,
            "classes": ["forklift", "ladder"],
            "metadata": {"camera": "north"},
            "daily_cap": 50,
            "enabled": True,
        }
    ]
    bad = client.post("/capture-rules", data={**form, "confidence_min": "0.9"}, headers=HTML)
    assert bad.status_code == 400
    assert "confidence_min must not exceed confidence_max" in bad.text
    worse = client.post("/capture-rules", data={**form, "sample_rate": "lots"}, headers=HTML)
    assert worse.status_code == 400
    assert "sample_rate" in worse.text
    assert len(client.get("/api/v1/capture-rules", headers=auth(key)).json()["rules"]) == 1
    forged = client.post("/capture-rules", data={**form, "csrf_token": "x"}, headers=HTML)
    assert forged.status_code == 403
    token = csrf_token(client.get("/capture-rules", headers=HTML).text)
    deleted = client.post(
        "/capture-rules/delete",
        data={"csrf_token": token, "model_id": "vehicles/3"},
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    assert client.get("/api/v1/capture-rules", headers=auth(key)).json() == {"rules": []}


def test_the_table_shows_thumbnails_of_rows_with_images(
    client: TestClient, new_key: NewKey, database: Database
) -> None:
    key = new_key("acme")
    send(
        client,
        key,
        {"inference_id": "a/1", "model_id": "m/1"},
        {"inference_id": "b", "model_id": "m/1"},
    )
    client.put("/api/v1/inferences/a/1/image", content=picture(), headers=auth(key))
    new_user(database, "acme", "ops@example.com")
    sign_in(client, "ops@example.com")
    page = client.get("/inferences", headers=HTML).text
    assert page.count('<img src="/thumbnails/') == 1
    assert '<img src="/thumbnails/a%2F1"' in page
    assert client.get("/thumbnails/a%2F1", headers=HTML).headers["content-type"] == "image/jpeg"
