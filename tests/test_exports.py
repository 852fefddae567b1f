"""Exports for retraining, opened and checked with an independent reader (zipfile, json)."""

import io
import json
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.dashboard import HTML, sign_in
from tests.support.workspaces import NewKey, auth, new_user
from visionwatch.db.engine import Database

SENT: list[dict[str, Any]] = [
    {
        "inference_id": "cam/1 frame:7",
        "model_id": "vehicles/3",
        "image": {"width": 200, "height": 100},
        "predictions": [
            {"class": "car", "confidence": 0.9, "x": 50, "y": 40, "width": 20, "height": 10},
            {
                "class": "bus",
                "confidence": 0.6,
                "x": 150,
                "y": 60,
                "width": 40,
                "height": 30,
                "points": [{"x": 130, "y": 45}, {"x": 170, "y": 45}, {"x": 150, "y": 75}],
            },
        ],
        "metadata": {"camera": "north"},
    },
    {
        "inference_id": "second",
        "model_id": "vehicles/3",
        "predictions": [
            {"class": "car", "confidence": 0.4, "x": 10, "y": 10, "width": 4, "height": 6}
        ],
        "metadata": {"camera": "south"},
    },
    {"inference_id": "no-image", "model_id": "vehicles/3", "predictions": []},
]


def picture(size: tuple[int, int], shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGES = {"cam/1 frame:7": picture((200, 100), 10), "second": picture((50, 40), 20)}


@pytest.fixture
def key(client: TestClient, new_key: NewKey) -> dict[str, str]:
    key = auth(new_key("acme"))
    response = client.post("/api/v1/inferences", json={"inferences": SENT}, headers=key)
    assert response.status_code == 200
    for inference_id, data in IMAGES.items():
        path = f"/api/v1/inferences/{inference_id}/image"
        assert client.put(path, content=data, headers=key).status_code == 200
    return key


def download(client: TestClient, key: dict[str, str], fmt: str, **params: Any) -> zipfile.ZipFile:
    response = client.get("/api/v1/exports", params={"format": fmt, **params}, headers=key)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(response.content))


def by_inference(archive: zipfile.ZipFile, files: dict[str, str]) -> dict[str, bytes]:
    return {inference_id: archive.read(name) for inference_id, name in files.items()}


def test_coco(client: TestClient, key: dict[str, str]) -> None:
    archive = download(client, key, "coco")
    document = json.loads(archive.read("annotations.json"))
    images = {image["inference_id"]: image for image in document["images"]}
    assert set(images) == set(IMAGES)  # only inferences with images
    assert by_inference(archive, {i: images[i]["file_name"] for i in images}) == IMAGES
    assert (images["second"]["width"], images["second"]["height"]) == (50, 40)
    names = {c["id"]: c["name"] for c in document["categories"]}
    first = images["cam/1 frame:7"]["id"]
    annotations = sorted(
        (names[a["category_id"]], a["bbox"], a["score"], a.get("segmentation"))
        for a in document["annotations"]
        if a["image_id"] == first
    )
    assert annotations == [
        ("bus", [130.0, 45.0, 40.0, 30.0], 0.6, [[130.0, 45.0, 170.0, 45.0, 150.0, 75.0]]),
        ("car", [40.0, 35.0, 20.0, 10.0], 0.9, None),
    ]


def test_yolo(client: TestClient, key: dict[str, str]) -> None:
    archive = download(client, key, "yolo")
    classes = archive.read("classes.txt").decode().split()
    assert sorted(classes) == ["bus", "car"]
    assert "names:" in archive.read("data.yaml").decode()
    images = [n for n in archive.namelist() if n.startswith("images/")]
    assert len(images) == 2
    for name in images:
        stem = name.removeprefix("images/").rsplit(".", 1)[0]
        inference_id = "cam/1 frame:7" if "frame" in stem else "second"
        assert archive.read(name) == IMAGES[inference_id]
        labels = archive.read(f"labels/{stem}.txt").decode().splitlines()
        sent = next(i for i in SENT if i["inference_id"] == inference_id)
        width, height = (200, 100) if inference_id != "second" else (50, 40)
        expected = sorted(
            (
                classes.index(p["class"]),
                p["x"] / width,
                p["y"] / height,
                p["width"] / width,
                p["height"] / height,
            )
            for p in sent["predictions"]
        )
        found = sorted(
            (int(parts[0]), *map(float, parts[1:])) for parts in (line.split() for line in labels)
        )
        assert [f[0] for f in found] == [e[0] for e in expected]
        for got, want in zip(found, expected, strict=True):
            assert got[1:] == pytest.approx(want[1:], abs=1e-6)


def test_jsonl_follows_the_filters(client: TestClient, key: dict[str, str]) -> None:
    archive = download(client, key, "jsonl", **{"metadata.camera": "south"})
    lines = [json.loads(line) for line in archive.read("annotations.jsonl").splitlines()]
    assert [line["inference_id"] for line in lines] == ["second"]
    assert archive.read(lines[0]["image"]) == IMAGES["second"]
    assert lines[0]["predictions"][0]["class"] == "car"
    empty = download(client, key, "jsonl", **{"class": "truck"})
    assert empty.read("annotations.jsonl") == b""
    assert [n for n in empty.namelist() if n.startswith("images/")] == []


def test_bad_format_is_named(client: TestClient, key: dict[str, str]) -> None:
    response = client.get("/api/v1/exports", params={"format": "voc"}, headers=key)
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "format"


def test_the_table_exports_the_same_dataset(
    client: TestClient, key: dict[str, str], database: Database
) -> None:
    new_user(database, "acme", "ops@example.com")
    sign_in(client, "ops@example.com")
    page = client.get("/inferences?class=bus", headers=HTML).text
    assert 'href="/dataset.zip?class=bus&amp;period=7d&amp;format=coco"' in page
    response = client.get("/dataset.zip?class=bus&period=7d&format=coco")
    document = json.loads(zipfile.ZipFile(io.BytesIO(response.content)).read("annotations.json"))
    assert [i["inference_id"] for i in document["images"]] == ["cam/1 frame:7"]


def test_another_workspace_exports_nothing_of_ours(
    client: TestClient, key: dict[str, str], new_key: NewKey
) -> None:
    theirs = auth(new_key("globex"))
    archive = download(client, theirs, "coco")
    assert json.loads(archive.read("annotations.json"))["images"] == []
    assert [n for n in archive.namelist() if n.startswith("images/")] == []
