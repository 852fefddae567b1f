"""The item as sent: its known fields rendered from the stored facts, plus a remainder.

An inference's item (its JSON as sent) is not stored as such: its facts are (the body,
its row's columns), and the item is rendered from them in the layout the sender used, a
native item or an Inference Server's result (`render`). What the rendering does not
reproduce (a detection id, an unknown key, a timestamp written another way) is kept as a
patch (`diff`, `apply`): dictionaries' keys added, removed or changed, lists changed at a
position, values replaced. A plain native item needs no patch at all; every bit of what
its sender wrote comes back, numbers as numbers (JSON does not tell 320 from 320.0).

The patch is JSON, deflated against a fixed dictionary of what patches hold: the fields of
an Inference Server's request and response that visionwatch does not read. A version's
dictionary never changes.
"""

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from visionwatch.packed.body import Body, Score
from visionwatch.timeutil import isoformat

# Layouts (the form's top bits).
NATIVE, SERVER, VERBATIM = 0, 1, 2
LAYOUT_SHIFT = 20

# What a layout's item holds (the form's low bits).
ID = 1 << 0
TIMESTAMP_NUMBER = 1 << 1
TIMESTAMP_TEXT = 1 << 2
TIME = 1 << 3
TIME_ALIAS = 1 << 4  # as `time`
DEVICE = 1 << 5
TASK = 1 << 6
IMAGE = 1 << 7
IMAGE_WIDTH = 1 << 8
IMAGE_HEIGHT = 1 << 9
PREDICTIONS = 1 << 10
TOP = 1 << 11
PREDICTED = 1 << 12
METADATA = 1 << 13
ERROR = 1 << 14
MODEL = 1 << 15
RESPONSE_LIST = 1 << 16  # an Inference Server's response as a list of one
RESPONSE_OBJECT = 1 << 17

_NATIVE_KEYS = {
    "inference_id": ID,
    "model_id": MODEL,
    "device_id": DEVICE,
    "task": TASK,
    "image": IMAGE,
    "predictions": PREDICTIONS,
    "predicted_classes": PREDICTED,
    "metadata": METADATA,
    "error": ERROR,
}

VERSION_1 = 1
DICTIONARY_1 = (
    b'{"~":{"inference":{"+":{"inference_server_version":"1.8.3"},"~":{"request":{"+":'
    b'{"id":"","model_type":"object-detection","confidence":0.4,"source":null,'
    b'"source_info":null,"image":{"type":"base64","value":null},'
    b'"disable_active_learning":false,"visualize_predictions":false}},"response":{"#":'
    b'{"0":{"+":{"image":{"width":,"height":},"inference_id":"","visualization":null}}}}}}},'
    b'"+":{"detection_id":"","parent_id":"","tracker_id":,"frame_id":,"source":"workflow",'
    b'"results":[{"model_id":"","class_name":"","confidence":'
)
_LEVEL = 6
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Named:
    """An inference's facts with their names: what renders its item."""

    inference_id: str
    model: str
    device: str | None
    timestamp: datetime
    body: Body
    labels: list[tuple[str, int | None]]  # (class, class id) by position
    fields: list[str]  # metadata field names by position


def layout_of(form: int) -> int:
    return form >> LAYOUT_SHIFT


def native_form(raw: dict[str, Any]) -> int:
    """The form of a native item (POST /api/v1/inferences) as sent."""
    form = NATIVE << LAYOUT_SHIFT
    for key, flag in _NATIVE_KEYS.items():
        if key in raw:
            form |= flag
    if "inference_time" in raw:
        form |= TIME
    elif "time" in raw:
        form |= TIME | TIME_ALIAS
    form |= _timestamp_form(raw.get("timestamp", _ABSENT))
    image = raw.get("image")
    if isinstance(image, dict):
        form |= (IMAGE_WIDTH if "width" in image else 0) | (
            IMAGE_HEIGHT if "height" in image else 0
        )
    if "top" in raw:
        form |= TOP
    return form


def server_form(raw: dict[str, Any]) -> int:
    """The form of an Inference Server's result (POST /inference-stats) as sent."""
    form = (SERVER << LAYOUT_SHIFT) | _timestamp_form(raw.get("request_time", _ABSENT))
    inference = raw.get("inference")
    if not isinstance(inference, dict):
        return form
    form |= ID if "inference_id" in inference else 0
    form |= DEVICE if "inference_server_id" in inference else 0
    response = inference.get("response")
    if isinstance(response, list) and len(response) == 1 and isinstance(response[0], dict):
        form |= RESPONSE_LIST
        response = response[0]
    elif isinstance(response, dict):
        form |= RESPONSE_OBJECT
    if isinstance(response, dict):
        form |= PREDICTIONS if "predictions" in response else 0
        form |= TIME if "time" in response else 0
    return form


_ABSENT = object()


def _timestamp_form(value: Any) -> int:
    if isinstance(value, bool) or value is _ABSENT:
        return 0
    if isinstance(value, int | float):
        return TIMESTAMP_NUMBER
    if isinstance(value, str):
        return TIMESTAMP_TEXT
    return 0


def render(named: Named) -> Any:
    """What the facts say of the item as sent, in its layout."""
    form = named.body.form
    layout = layout_of(form)
    if layout == NATIVE:
        return _native(named, form)
    if layout == SERVER:
        return _server(named, form)
    return {}


def _timestamp(named: Named, form: int) -> Any:
    if form & TIMESTAMP_NUMBER:
        return (named.timestamp - EPOCH) // MICROSECOND / 1_000_000
    return isoformat(named.timestamp)


def _native(named: Named, form: int) -> dict[str, Any]:
    body = named.body
    item: dict[str, Any] = {}
    if form & ID:
        item["inference_id"] = named.inference_id
    if form & MODEL:
        item["model_id"] = named.model
    if form & (TIMESTAMP_NUMBER | TIMESTAMP_TEXT):
        item["timestamp"] = _timestamp(named, form)
    if form & TIME:
        item["time" if form & TIME_ALIAS else "inference_time"] = body.inference_time
    if form & DEVICE:
        item["device_id"] = named.device
    if form & TASK:
        item["task"] = body.task
    if form & IMAGE:
        image: dict[str, Any] = {}
        if form & IMAGE_WIDTH:
            image["width"] = body.image_width
        if form & IMAGE_HEIGHT:
            image["height"] = body.image_height
        item["image"] = image
    if form & PREDICTIONS:
        item["predictions"] = _scores(named, body.scores, body.as_dict)
    if form & TOP and body.predictions:
        top = body.predictions[0]
        item["top"] = named.labels[top.label][0]
        item["confidence"] = top.confidence
    if form & PREDICTED:
        item["predicted_classes"] = [named.labels[s.label][0] for s in body.predictions]
    if form & METADATA:
        item["metadata"] = {named.fields[position]: value for position, value in body.metadata}
    if form & ERROR:
        item["error"] = body.error
    return item


def _server(named: Named, form: int) -> dict[str, Any]:
    body = named.body
    item: dict[str, Any] = {}
    if form & (TIMESTAMP_NUMBER | TIMESTAMP_TEXT):
        item["request_time"] = _timestamp(named, form)
    inference: dict[str, Any] = {}
    if form & ID:
        inference["inference_id"] = named.inference_id
    if form & DEVICE:
        inference["inference_server_id"] = named.device
    inference["request"] = {"model_id": named.model}
    if form & (RESPONSE_LIST | RESPONSE_OBJECT):
        response: dict[str, Any] = {}
        if form & PREDICTIONS:
            response["predictions"] = _scores(named, body.scores, False)
        if form & TIME:
            response["time"] = body.inference_time
        inference["response"] = [response] if form & RESPONSE_LIST else response
    item["inference"] = inference
    return item


def _scores(named: Named, scores: list[Score], as_dict: bool) -> Any:
    if as_dict:
        found: dict[str, Any] = {}
        for score in scores:
            name, class_id = named.labels[score.label]
            entry: dict[str, Any] = {"confidence": score.confidence}
            if class_id is not None:
                entry["class_id"] = class_id
            found[name] = entry
        return found
    return [_score(named, score) for score in scores]


def _score(named: Named, score: Score) -> dict[str, Any]:
    name, class_id = named.labels[score.label]
    found: dict[str, Any] = {"class": name}
    if class_id is not None:
        found["class_id"] = class_id
    found["confidence"] = score.confidence
    for key, value in (("x", score.x), ("y", score.y), ("width", score.width)):
        if value is not None:
            found[key] = _number(value)
    if score.height is not None:
        found["height"] = _number(score.height)
    if score.points is not None:
        found["points"] = [{"x": _number(x), "y": _number(y)} for x, y in score.points]
    if score.keypoints is not None:
        found["keypoints"] = list(score.keypoints)
    return found


def _number(value: float) -> float | int:
    """A coordinate as a detector writes it: 320, not 320.0."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


# The patch: a dict of changes to a dict (`+` keys added with their values, `-` keys
# removed, `~` keys changed, each a patch), to a list of the same length (`#`: position to
# patch), or a replacement (`=`).


_TIMESTAMP_KEYS = ("timestamp", "request_time")  # a native item's, an Inference Server's


def to_stated_precision(sent: Any, rendered: Any) -> Any:
    """`sent`, its timestamp in seconds taken as rendered when they agree to the
    microsecond: the stated precision of a stored time. A client's float seconds carry
    digits below it (time.time() has about seven), which no page shows and which were
    most of a plain item's patch."""
    if not isinstance(sent, dict) or not isinstance(rendered, dict):
        return sent
    found = sent
    for key in _TIMESTAMP_KEYS:
        value, shown = sent.get(key), rendered.get(key)
        if (
            isinstance(value, float)
            and isinstance(shown, float)
            and value != shown
            and abs(value - shown) < 1e-6
        ):
            found = {**found, key: shown}  # the key keeps its place
    return found


def diff(sent: Any, rendered: Any) -> Any:
    """The patch that makes `rendered` into `sent`, or None when they are the same."""
    if _same(sent, rendered):
        return None
    if isinstance(sent, dict) and isinstance(rendered, dict):
        patch: dict[str, Any] = {}
        added = {key: value for key, value in sent.items() if key not in rendered}
        removed = [key for key in rendered if key not in sent]
        changed = {}
        for key, value in sent.items():
            if key in rendered:
                sub = diff(value, rendered[key])
                if sub is not None:
                    changed[key] = sub
        if added:
            patch["+"] = added
        if removed:
            patch["-"] = removed
        if changed:
            patch["~"] = changed
        return patch
    if isinstance(sent, list) and isinstance(rendered, list) and len(sent) == len(rendered):
        positions = {}
        for position, (a, b) in enumerate(zip(sent, rendered, strict=True)):
            sub = diff(a, b)
            if sub is not None:
                positions[str(position)] = sub
        return {"#": positions}
    return {"=": sent}


def apply(rendered: Any, patch: Any) -> Any:
    """`rendered` with `patch` applied (diff's inverse)."""
    if patch is None:
        return rendered
    if "=" in patch:
        return patch["="]
    if "#" in patch:
        listed = list(rendered)
        for position, sub in patch["#"].items():
            listed[int(position)] = apply(listed[int(position)], sub)
        return listed
    found = {key: value for key, value in rendered.items() if key not in patch.get("-", ())}
    for key, sub in patch.get("~", {}).items():
        found[key] = apply(found[key], sub)
    found.update(patch.get("+", {}))
    return found


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: numbers by value (1 and 1.0 alike), never a boolean for a number."""
    if a is b:
        return True
    kind_a, kind_b = type(a), type(b)
    if kind_a is bool or kind_b is bool:
        return kind_a is kind_b and a == b
    if kind_a in (int, float) and kind_b in (int, float):
        return bool(a == b)
    if kind_a is not kind_b:
        return False
    if kind_a is dict:
        return a.keys() == b.keys() and all(_same(value, b[key]) for key, value in a.items())
    if kind_a is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def pack_patch(patch: Any) -> bytes | None:
    if patch is None:
        return None
    compressor = zlib.compressobj(
        _LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY_1
    )
    return bytes([VERSION_1]) + compressor.compress(orjson.dumps(patch)) + compressor.flush()


def unpack_patch(data: bytes | None) -> Any:
    if not data:
        return None
    if data[0] != VERSION_1:
        raise ValueError(f"a remainder of unknown version {data[0]}")
    inflater = zlib.decompressobj(-15, zdict=DICTIONARY_1)
    return orjson.loads(inflater.decompress(data[1:]) + inflater.flush())


def item_of(named: Named) -> Any:
    """The item as sent."""
    return apply(render(named), unpack_patch(named.body.remainder))
