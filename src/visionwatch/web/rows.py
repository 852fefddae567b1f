"""Inferences as the dashboard's pages show them."""

from typing import Any
from urllib.parse import quote

from visionwatch.http.inferences import inference_json
from visionwatch.store.inferences import InferenceRecord


def shown_inference(record: InferenceRecord, with_item: bool = False) -> dict[str, Any]:
    """An inference as the API writes it, its image at the dashboard's own route (the
    signed-in user's cookie, not an API key)."""
    image_url = f"/images/{quote(record.inference_id, safe='')}"
    return inference_json(record, image_url, with_item=with_item)
