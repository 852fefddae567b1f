"""The item as sent, stored small: deflated against a dictionary of what items look like.

An inference's item (its JSON as sent) is kept beside its parsed rows, for the detail
page and the API (docs/architecture.md, "The write path"). As plain JSON it was most of an inference
row (about 670 bytes of the ingest benchmark's 820). Deflate alone gains little on one
small document; with a preset dictionary of the keys and fragments items share (both the
native API's and an Inference Server's results) it takes about 200 bytes.

Stored as text, "1:" and the deflated bytes in base64 (about 270 characters), so that it
goes to the database inside the JSON rows of an insert (store/ingest.py) and into the same
TEXT column as before; an item stored before packing starts with "{" and is read as it is.
The dictionary of a version never changes: stored items depend on it. A better one is a new
version, with its own prefix.
"""

import base64
import zlib
from typing import Any

import orjson

VERSION_1 = "1:"
# Common fragments, the most frequent last (deflate reaches near matches in fewer bits).
DICTIONARY_1 = (
    b'{"request_time":,"inference":{"inference_server_id":"","inference_server_version":"'
    b'"request":{"id":"","model_id":"","model_type":"object-detection","confidence":0.4,'
    b'"source":null,"source_info":null,"image":{"type":"base64","value":null},"disable_'
    b'active_learning":false,"visualize_predictions":false},"response":[{"time":,"image":'
    b'{"width":,"height":},"predictions":[{"class":"","class_id":,"detection_id":"",'
    b'"parent_id":"","points":[{"x":,"y":}],"source":"workflow","results":['
    b'"image":{"width":,"height":},"error":null,"tags":[],"metadata":{},'
    b'"inference_id":"","model_id":"","device_id":"","timestamp":"2026-","inference_time":0.0'
    b',"predictions":[{"class":"","confidence":0.,"x":,"y":,"width":,"height":}]'
    b',"metadata":{"'
)
_LEVEL = 6


def pack(item: bytes) -> str:
    """An item's JSON as stored."""
    compressor = zlib.compressobj(
        _LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY_1
    )
    deflated = compressor.compress(item) + compressor.flush()
    return VERSION_1 + base64.b64encode(deflated).decode()


def unpack(stored: str) -> Any:
    """The item as sent (decoded JSON) from what `pack` stored, or from plain JSON."""
    if stored.startswith(VERSION_1):
        inflater = zlib.decompressobj(-15, zdict=DICTIONARY_1)
        deflated = base64.b64decode(stored[len(VERSION_1) :])
        return orjson.loads(inflater.decompress(deflated) + inflater.flush())
    return orjson.loads(stored)
