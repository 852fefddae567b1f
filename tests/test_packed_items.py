"""The item as sent is stored deflated against a dictionary, and comes back as it was sent,
whatever it holds; items stored as plain JSON before packing still read."""

from typing import Any

import orjson
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from tests.support.workspaces import NewKey, auth
from visionwatch.db.engine import Database
from visionwatch.db.schema import inferences
from visionwatch.store.packed_items import pack, unpack

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)  # what JSON decodes to here (orjson)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)

ITEM = {
    "inference_id": "7d0c7a5e-4b0e-4c1e-9a51-3f1d2a9c8b10",
    "model_id": "parts/3",
    "device_id": "line-2-cam",
    "timestamp": "2026-12-02T10:15:03.250Z",
    "inference_time": 0.0312,
    "predictions": [
        {"class": "bolt", "confidence": 0.9132, "x": 120.5, "y": 80, "width": 22, "height": 31}
        for _ in range(5)
    ],
    "metadata": {"line": "line-2", "shift": 2, "daylight": True},
}


@given(st.dictionaries(st.text(), JSON))
@settings(max_examples=200)
def test_whatever_an_item_holds_it_comes_back(item: dict[str, Any]) -> None:
    sent = orjson.dumps(item)
    assert unpack(pack(sent)) == orjson.loads(sent)


def test_a_typical_item_takes_under_half_its_json() -> None:
    sent = orjson.dumps(ITEM)
    assert len(pack(sent)) < len(sent) / 2


def test_stored_packed_and_read_back_through_the_api(
    client: TestClient, new_key: NewKey, database: Database
) -> None:
    key = auth(new_key())
    response = client.post("/api/v1/inferences", json={"inferences": [ITEM]}, headers=key)
    assert response.status_code == 200
    with database.read() as conn:
        stored = conn.execute(select(inferences.c.item)).scalar_one()
    assert stored.startswith("1:")
    assert len(stored) < len(orjson.dumps(ITEM)) / 2
    detail = client.get(f"/api/v1/inferences/{ITEM['inference_id']}", headers=key).json()
    assert detail["item"] == ITEM

    # As an item stored before packing was: plain JSON.
    with database.write() as conn:
        conn.execute(update(inferences).values(item=orjson.dumps(ITEM).decode()))
    detail = client.get(f"/api/v1/inferences/{ITEM['inference_id']}", headers=key).json()
    assert detail["item"] == ITEM
