"""Ingest items: validate a batch as sent and normalise each item into an Inference. Pure.

An item is a Roboflow inference response plus where it came from (docs/architecture.md,
"The write path"). Validation is strict: a boolean or a string is not a number,
confidences lie in [0, 1], NaN and infinities are refused, sizes are bounded.
Every error names the item's index and the JSON path of the bad value.
"""

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from visionwatch.timeutil import parse_time

Task = Literal[
    "object-detection",
    "instance-segmentation",
    "keypoint-detection",
    "classification",
    "multi-label-classification",
]
MetadataValue = str | int | float | bool

# Hard ceilings, whatever the configuration: they bound the work of validating one item.
# The limits a server applies (ItemLimits, from its settings) are at most these.
MAX_PREDICTIONS = 100_000
MAX_METADATA_FIELDS = 10_000
MAX_FIELD_NAME = 128
MAX_FIELD_VALUE = 65_536
# Multi-label responses without `predicted_classes` predict what scores at least this.
MULTI_LABEL_THRESHOLD = 0.5

_MODEL_VERSION = re.compile(r"^(?P<project>.+)/(?P<version>\d+)$")


NUL_MESSAGE = "must not contain NUL characters"
# PostgreSQL text cannot hold NUL; refuse it everywhere rather than differ by database.
# A pattern is checked inside pydantic-core, several times cheaper than a Python validator.
NO_NUL_PATTERN = "^[^\\x00]*$"
NoNul = StringConstraints(pattern=NO_NUL_PATTERN)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(NUL_MESSAGE)
    return value


ModelName = Annotated[str, Field(min_length=1, max_length=256), NoNul]
InferenceId = Annotated[str, Field(min_length=1, max_length=128), NoNul]
DeviceName = Annotated[str, Field(min_length=1, max_length=256), NoNul]
ClassName = Annotated[str, Field(min_length=1, max_length=256), NoNul]
FieldName = Annotated[str, Field(min_length=1, max_length=MAX_FIELD_NAME), NoNul]
# Class ids are stored as 32-bit integers.
ClassId = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]


class _Strict(BaseModel):
    # Fields we do not know are ignored, not kept: the item is stored as sent anyway,
    # and keeping them doubles the cost of validation.
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class ImageIn(_Strict):
    width: int | None = Field(default=None, ge=0, le=1_000_000)
    height: int | None = Field(default=None, ge=0, le=1_000_000)


class PointIn(_Strict):
    x: float
    y: float


class PredictionIn(_Strict):
    class_: ClassName = Field(alias="class")
    class_id: ClassId | None = None
    confidence: float = Field(ge=0, le=1)
    x: float | None = None
    y: float | None = None
    width: float | None = Field(default=None, ge=0)
    height: float | None = Field(default=None, ge=0)
    points: list[PointIn] | None = Field(default=None, max_length=100_000)
    keypoints: list[dict[str, Any]] | None = Field(default=None, max_length=10_000)


class ClassScoreIn(_Strict):
    confidence: float = Field(ge=0, le=1)
    class_id: ClassId | None = None


def _shape(value: Any) -> str | None:
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return None


def _check_time(value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected an ISO 8601 time or Unix seconds")
    return parse_time(value)


def _check_metadata_value(value: Any) -> MetadataValue:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if not isinstance(value, str | int | float | bool):
        raise ValueError("values must be a string, a number or a boolean")
    if isinstance(value, str):
        if len(value) > MAX_FIELD_VALUE:
            raise ValueError(f"values have at most {MAX_FIELD_VALUE} characters")
        _no_nul(value)
    return value


def _check_error(value: Any) -> str:
    if isinstance(value, str):
        return _no_nul(value)[:10_000]
    if isinstance(value, dict):
        return orjson.dumps(value).decode()[:10_000]
    raise ValueError("expected a message or an object describing the error")


# Unions are checked by hand so that an error names one path and one reason,
# not one per member of the union.
TimeIn = Annotated[
    Any,
    AfterValidator(_check_time),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}),
]
MetadataValueIn = Annotated[
    Any,
    AfterValidator(_check_metadata_value),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]
ErrorIn = Annotated[
    Any, AfterValidator(_check_error), WithJsonSchema({"type": ["string", "object"]})
]
PredictionsIn = Annotated[
    Annotated[list[PredictionIn], Tag("list")]
    | Annotated[dict[ClassName, ClassScoreIn], Tag("dict")],
    Discriminator(
        _shape,
        custom_error_type="predictions_shape",
        custom_error_message="expected a list of predictions, or a dict of class to score",
    ),
]


class ItemIn(_Strict):
    """One inference as sent to POST /api/v1/inferences (documented in the OpenAPI schema)."""

    model_id: ModelName
    inference_id: InferenceId | None = None
    timestamp: TimeIn | None = Field(
        default=None, description="ISO 8601 (UTC when no offset) or Unix seconds"
    )
    inference_time: float | None = Field(
        default=None,
        ge=0,
        le=86_400,
        validation_alias=AliasChoices("inference_time", "time"),
        description="seconds; `time` is accepted as an alias",
    )
    device_id: DeviceName | None = None
    task: Task | None = None
    image: ImageIn | None = None
    predictions: PredictionsIn | None = Field(
        default=None,
        description="a list for detection, segmentation, keypoints and classification; "
        "a dict of class to score for multi-label classification",
    )
    top: ClassName | None = None
    confidence: float | None = Field(default=None, ge=0, le=1)
    predicted_classes: list[ClassName] | None = Field(default=None, max_length=MAX_PREDICTIONS)
    metadata: dict[FieldName, MetadataValueIn] | None = Field(
        default=None, max_length=MAX_METADATA_FIELDS
    )
    error: ErrorIn | None = Field(default=None, description="set when the inference failed")


class BatchIn(_Strict):
    inferences: list[ItemIn]


_ITEMS: TypeAdapter[list[ItemIn]] = TypeAdapter(list[ItemIn])


@dataclass(frozen=True, slots=True)
class Prediction:
    class_name: str
    confidence: float
    class_id: int | None = None
    x: float | None = None
    y: float | None = None
    width: float | None = None
    height: float | None = None
    # A segmentation's polygon, and a keypoint detection's keypoints as sent.
    points: tuple[tuple[float, float], ...] | None = None
    keypoints: tuple[dict[str, Any], ...] | None = None

    @property
    def box(self) -> tuple[float | None, float | None, float | None, float | None]:
        return (self.x, self.y, self.width, self.height)


@dataclass(slots=True)
class Inference:
    """One normalised inference, ready for the store and the rollups."""

    inference_id: str
    model: str
    timestamp: datetime
    task: str | None
    predictions: list[Prediction]
    # The item as sent; or (packed/stored.Split) already split from its facts: a large
    # report does it for each result as it goes, so that the parsed report is freed early.
    item: Any
    device: str | None = None
    inference_time: float | None = None
    image_width: int | None = None
    image_height: int | None = None
    error: str | None = None
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    # Every score the response listed, when they are more than its predictions (a
    # classifier lists every class, a multi-label one scores each): the predictions are
    # `chosen` among them, by position. None: the predictions are all it listed.
    scores: "Scores | None" = None


@dataclass(frozen=True, slots=True)
class Scores:
    """What a response scored, as a list (`predictions: [...]`) or a dict (class to score),
    and which of them are its predictions; `top` is a classifier's top class when its list
    does not hold it with that confidence."""

    listed: list[Prediction]
    as_dict: bool
    chosen: tuple[int, ...]
    top: Prediction | None = None


@dataclass(frozen=True, slots=True)
class ItemError:
    index: int | None
    path: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "path": self.path, "message": self.message}


class InvalidBatch(Exception):
    def __init__(self, errors: list[ItemError]) -> None:
        super().__init__(f"{len(errors)} invalid value(s)")
        self.errors = errors

    def __reduce__(self) -> tuple[type["InvalidBatch"], tuple[list[ItemError]]]:
        # Raised in a parser process, it comes back to the server pickled (parsers.py).
        return (InvalidBatch, (self.errors,))


def split_model_id(model_id: str) -> tuple[str | None, str | None]:
    """`vehicles/3` -> (`vehicles`, `3`); names of another form have no project or version."""
    match = _MODEL_VERSION.match(model_id)
    if match is None:
        return None, None
    return match["project"], match["version"]


def json_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def parse_batch(
    body: Any,
    *,
    now: datetime,
    max_items: int,
    max_clock_skew: timedelta,
    limits: "ItemLimits | None" = None,
) -> list[Inference]:
    """Validate a decoded request body and return its inferences, or raise InvalidBatch."""
    if not isinstance(body, dict) or "inferences" not in body:
        raise InvalidBatch([ItemError(None, "inferences", 'expected {"inferences": [...]}')])
    raw_items = body["inferences"]
    if not isinstance(raw_items, list):
        raise InvalidBatch([ItemError(None, "inferences", "expected a list of inferences")])
    if len(raw_items) > max_items:
        message = f"at most {max_items} inferences per request, got {len(raw_items)}"
        raise InvalidBatch([ItemError(None, "inferences", message)])
    inferences: list[Inference] = []
    errors: list[ItemError] = []
    try:
        # One call validates the whole list: far less overhead than one call per item.
        validated = _ITEMS.validate_python(raw_items)
    except ValidationError as error:
        for e in error.errors():
            index, *location = e["loc"]
            errors.append(ItemError(int(index), _path(tuple(location)), message_of(e)))
        raise InvalidBatch(errors) from None
    for index, (raw, item) in enumerate(zip(raw_items, validated, strict=True)):
        try:
            inferences.append(
                normalize(item, raw, now=now, max_clock_skew=max_clock_skew, limits=limits)
            )
        except InvalidBatch as invalid:
            errors.extend(ItemError(index, e.path, e.message) for e in invalid.errors)
    if errors:
        raise InvalidBatch(errors)
    return inferences


def parse_item(
    raw: Any, *, now: datetime, max_clock_skew: timedelta, limits: "ItemLimits | None" = None
) -> Inference:
    try:
        item = ItemIn.model_validate(raw)
    except ValidationError as error:
        raise InvalidBatch(field_errors(error)) from None
    return normalize(item, raw, now=now, max_clock_skew=max_clock_skew, limits=limits)


@dataclass(frozen=True, slots=True)
class ItemLimits:
    """What one inference may carry; the server's come from its settings."""

    metadata_fields: int = 100
    metadata_value_chars: int = 1000
    predictions: int = 10_000


DEFAULT_LIMITS = ItemLimits()


def normalize(
    item: ItemIn,
    raw: Any,
    *,
    now: datetime,
    max_clock_skew: timedelta,
    limits: ItemLimits | None = None,
) -> Inference:
    """The Inference of a validated item (`raw` is the item as sent)."""
    limits = limits or DEFAULT_LIMITS
    errors: list[ItemError] = []
    timestamp: datetime = now if item.timestamp is None else item.timestamp
    if timestamp > now + max_clock_skew:
        message = f"is more than {max_clock_skew} ahead of the server's clock"
        errors.append(ItemError(None, "timestamp", message))
    metadata = item.metadata or {}
    _check_metadata_limits(metadata, limits, errors)
    task = item.task or infer_task(item)
    predictions, scores = _predictions(item, task, errors, limits.predictions)
    if errors:
        raise InvalidBatch(errors)
    error_text: str | None = item.error
    return Inference(
        inference_id=item.inference_id or str(uuid.uuid4()),
        model=item.model_id,
        timestamp=timestamp,
        task=task,
        # A failed inference predicted nothing, whatever came with it.
        predictions=[] if error_text is not None else predictions,
        item=raw,
        device=item.device_id,
        inference_time=item.inference_time,
        image_width=item.image.width if item.image else None,
        image_height=item.image.height if item.image else None,
        error=error_text,
        metadata=metadata,
        scores=scores,
    )


def infer_task(item: ItemIn) -> str | None:
    """The task a response's shape implies, or None when nothing tells."""
    if item.predicted_classes is not None or isinstance(item.predictions, dict):
        return "multi-label-classification"
    if item.top is not None:
        return "classification"
    if not item.predictions:
        return None
    if any(p.points for p in item.predictions):
        return "instance-segmentation"
    if any(p.keypoints for p in item.predictions):
        return "keypoint-detection"
    return "object-detection"


def _check_metadata_limits(
    metadata: Mapping[str, MetadataValue], limits: ItemLimits, errors: list[ItemError]
) -> None:
    if len(metadata) > limits.metadata_fields:
        message = f"at most {limits.metadata_fields} fields, got {len(metadata)}"
        errors.append(ItemError(None, "metadata", message))
        return
    for name, value in metadata.items():
        if isinstance(value, str) and len(value) > limits.metadata_value_chars:
            message = f"values have at most {limits.metadata_value_chars} characters"
            errors.append(ItemError(None, f"metadata.{name}", message))


def _predictions(
    item: ItemIn, task: str | None, errors: list[ItemError], most: int
) -> tuple[list[Prediction], Scores | None]:
    """The predictions, and the scores they were chosen among when those are more."""
    if item.predictions is not None and len(item.predictions) > most:
        errors.append(ItemError(None, "predictions", f"at most {most} predictions"))
        return [], None
    if task == "multi-label-classification":
        return _multi_label(item, errors)
    if isinstance(item.predictions, dict):
        errors.append(ItemError(None, "predictions", f"must be a list for task {task}"))
        return [], None
    listed = [_prediction(p) for p in item.predictions or []]
    if task == "classification":
        return _single_label(item, listed, errors)
    return listed, None


def _prediction(p: PredictionIn) -> Prediction:
    points = None if p.points is None else tuple((point.x, point.y) for point in p.points)
    keypoints = None if p.keypoints is None else tuple(p.keypoints)
    return Prediction(
        p.class_, p.confidence, p.class_id, p.x, p.y, p.width, p.height, points, keypoints
    )


def _single_label(
    item: ItemIn, listed: list[Prediction], errors: list[ItemError]
) -> tuple[list[Prediction], Scores | None]:
    if item.top is None:
        # A response that lists every class without `top`: the top is the most confident.
        if not listed:
            return [], None
        position = max(range(len(listed)), key=lambda i: listed[i].confidence)
        best = listed[position]
        top = Prediction(best.class_name, best.confidence, best.class_id)
        return [top], Scores(listed, as_dict=False, chosen=(position,), top=top)
    confidence = item.confidence
    class_id = None
    found = None
    for position, p in enumerate(listed):
        if p.class_name == item.top:
            class_id = p.class_id
            confidence = p.confidence if confidence is None else confidence
            found = position
    if confidence is None:
        errors.append(ItemError(None, "confidence", "is required with `top`"))
        return [], None
    top = Prediction(item.top, confidence, class_id)
    chosen = () if found is None else (found,)
    return [top], Scores(listed, as_dict=False, chosen=chosen, top=top)


def _multi_label(item: ItemIn, errors: list[ItemError]) -> tuple[list[Prediction], Scores | None]:
    scores = item.predictions if isinstance(item.predictions, dict) else {}
    if isinstance(item.predictions, list):
        errors.append(ItemError(None, "predictions", "must map class to score for multi-label"))
        return [], None
    if item.predicted_classes is None:
        chosen = [name for name, s in scores.items() if s.confidence >= MULTI_LABEL_THRESHOLD]
    else:
        chosen = item.predicted_classes
    positions = {name: position for position, name in enumerate(scores)}
    result = []
    picked = []
    for position, name in enumerate(chosen):
        score = scores.get(name)
        if score is None:
            path = f"predicted_classes[{position}]"
            errors.append(ItemError(None, path, f"class {name[:64]!r} has no score in predictions"))
            continue
        result.append(Prediction(name, score.confidence, score.class_id))
        picked.append(positions[name])
    listed = [Prediction(name, s.confidence, s.class_id) for name, s in scores.items()]
    return result, Scores(listed, as_dict=True, chosen=tuple(picked))


def encode_metadata_value(value: MetadataValue) -> tuple[str, str]:
    """(text used for filtering, kind) of a metadata value."""
    if isinstance(value, bool):
        return ("true" if value else "false"), "b"
    if isinstance(value, int):
        return str(value), "i"
    if isinstance(value, float):
        return repr(value), "f"
    return value, "s"


def decode_metadata_value(text: str, kind: str) -> MetadataValue:
    if kind == "b":
        return text == "true"
    if kind == "i":
        return int(text)
    if kind == "f":
        return float(text)
    return text


def field_errors(error: ValidationError, prefix: str = "") -> list[ItemError]:
    """Pydantic's errors as ItemErrors, their paths under `prefix`."""
    result = []
    for e in error.errors():
        path = _path(e["loc"])
        full = f"{prefix}.{path}" if prefix and path else (prefix or path)
        result.append(ItemError(None, full, message_of(e)))
    return result


def message_of(error: Mapping[str, Any]) -> str:
    """A pydantic error's message, without the "Value error, " of our own validators."""
    if (
        error.get("type") == "string_pattern_mismatch"
        and error.get("ctx", {}).get("pattern") == NO_NUL_PATTERN
    ):
        return NUL_MESSAGE
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def _path(location: tuple[int | str, ...]) -> str:
    if location[:1] == ("predictions",) and location[1:2] in (("list",), ("dict",)):
        location = location[:1] + location[2:]  # drop the union's tag
    if location[-1:] == ("[key]",):
        location = location[:-1]  # a bad dict key: name the key itself
    return json_path(location)
