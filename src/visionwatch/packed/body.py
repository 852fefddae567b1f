"""An inference's body: what it predicted and what was said of it, packed.

Classes and metadata fields are named by position among the row's tags (packed/tags.py),
whose characters the ingest statement writes from the workspace's dictionaries; a body
alone never holds a name it shares with other rows.

Every number is kept in the smallest form that holds it exactly, chosen per inference: a
confidence of four decimals in two bytes (0.9123 -> 9123), else a float32 when it is one
(what a model's float32 output prints as), else a double; box sides and polygon points of
one decimal in two or four bytes (320.5 -> 3205), else a float32 or a double. An
inference time is kept in microseconds when it is a whole number of them, else as a
double. So a body is exact: what comes back is what was sent.

Layout (all integers varints unless said):

    version (byte)  flags  form  labels  fields  received lag (zigzag, microseconds)
    [inference time]  [task]  [width]  [height]  [error]
    [scores: count, number forms (byte), each: label, confidence, box; shapes]
    [chosen: count, positions]  [top: label, confidence]
    [metadata: count, each: field, kind (byte), value]  [remainder]
"""

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from visionwatch.packed.wire import (
    Reader,
    put_bytes,
    put_f64,
    put_i32,
    put_text,
    put_u16,
    put_varint,
    put_zigzag,
)

VERSION = 1
TASKS = (
    "object-detection",
    "instance-segmentation",
    "keypoint-detection",
    "classification",
    "multi-label-classification",
)

# flags: what the body holds
_TIME = 1 << 0
_TIME_EXACT = 1 << 1  # a double, not whole microseconds
_TASK = 1 << 2
_WIDTH = 1 << 3
_HEIGHT = 1 << 4
_ERROR = 1 << 5
_SCORES = 1 << 6
_CHOSEN = 1 << 7
_TOP = 1 << 8
_METADATA = 1 << 9
_REMAINDER = 1 << 10
_AS_DICT = 1 << 11

# number forms of a body's scores (one byte): confidence in bits 0-1, box and points in
# bits 2-4, bit 5 set when some score lacks some side of its box, bit 6 when some have
# shapes (points, keypoints)
_CONFIDENCE_FORMS = ("u16", "f32", "f64")
_COORDINATE_FORMS = ("none", "u16", "i32", "f32", "f64")
_PARTIAL_BOXES = 1 << 5
_SHAPES = 1 << 6

_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")

# metadata kinds
_STR, _INT, _FLOAT, _FALSE, _TRUE = range(5)

_SHAPE_LEVEL = 6


@dataclass(frozen=True, slots=True)
class Score:
    """One score as stored: its class by position among the row's labels."""

    label: int
    confidence: float
    x: float | None = None
    y: float | None = None
    width: float | None = None
    height: float | None = None
    points: tuple[tuple[float, float], ...] | None = None
    keypoints: tuple[dict[str, Any], ...] | None = None

    @property
    def sides(self) -> tuple[float | None, float | None, float | None, float | None]:
        return (self.x, self.y, self.width, self.height)


@dataclass(frozen=True, slots=True)
class Body:
    """A body's facts. `scores` are the response's scores (its predictions when `chosen`
    is None); `top` a classifier's top class when its scores do not hold it."""

    received_lag: int = 0  # microseconds from the inference's time to its arrival
    form: int = 0  # how the item as sent was laid out (packed/remainder.py)
    inference_time: float | None = None
    task: str | None = None
    image_width: int | None = None
    image_height: int | None = None
    error: str | None = None
    scores: list[Score] = field(default_factory=list)
    as_dict: bool = False
    chosen: tuple[int, ...] | None = None
    top: Score | None = None
    metadata: list[tuple[int, Any]] = field(default_factory=list)  # (field position, value)
    remainder: bytes | None = None
    labels: int = 0  # how many labels and fields the row's tags name
    fields: int = 0

    @property
    def predictions(self) -> list[Score]:
        """The scores that are the inference's predictions (none when it failed)."""
        if self.error is not None:
            return []
        if self.top is not None:
            return [self.top]
        if self.chosen is None:
            return self.scores
        return [self.scores[i] for i in self.chosen]


def pack_body(body: Body) -> bytes:
    out = bytearray([VERSION])
    flags = _flags(body)
    put_varint(out, flags)
    put_varint(out, body.form)
    put_varint(out, body.labels)
    put_varint(out, body.fields)
    put_zigzag(out, body.received_lag)
    if body.inference_time is not None:
        if flags & _TIME_EXACT:
            put_f64(out, body.inference_time)
        else:
            put_varint(out, round(body.inference_time * 1_000_000))
    if body.task is not None:
        known = body.task in TASKS
        put_varint(out, TASKS.index(body.task) + 1 if known else 0)
        if not known:
            put_text(out, body.task)
    if body.image_width is not None:
        put_varint(out, body.image_width)
    if body.image_height is not None:
        put_varint(out, body.image_height)
    if body.error is not None:
        put_text(out, body.error)
    if body.scores or body.top is not None:
        forms = _forms([*body.scores, *([body.top] if body.top is not None else [])])
        out.append(forms)
        if body.scores:
            put_varint(out, len(body.scores))
            _put_scores(out, body.scores, forms)
        if body.top is not None:
            put_varint(out, body.top.label)
            _put_confidence(out, body.top.confidence, forms & 3)
    if body.chosen is not None:
        put_varint(out, len(body.chosen))
        for position in body.chosen:
            put_varint(out, position)
    if body.metadata:
        put_varint(out, len(body.metadata))
        for position, value in body.metadata:
            put_varint(out, position)
            _put_value(out, value)
    if body.remainder:
        put_bytes(out, body.remainder)
    return bytes(out)


def _flags(body: Body) -> int:
    flags = 0
    if body.inference_time is not None:
        flags |= _TIME
        if round(body.inference_time * 1_000_000) / 1_000_000 != body.inference_time:
            flags |= _TIME_EXACT
    present = (
        (_TASK, body.task is not None),
        (_WIDTH, body.image_width is not None),
        (_HEIGHT, body.image_height is not None),
        (_ERROR, body.error is not None),
        (_SCORES, bool(body.scores)),
        (_CHOSEN, body.chosen is not None),
        (_TOP, body.top is not None),
        (_METADATA, bool(body.metadata)),
        (_REMAINDER, bool(body.remainder)),
        (_AS_DICT, body.as_dict),
    )
    for flag, holds in present:
        if holds:
            flags |= flag
    return flags


def unpack_body(data: bytes) -> Body:
    read = Reader(data)
    version = read.u8()
    if version != VERSION:
        raise ValueError(f"a body of unknown version {version}")
    flags = read.varint()
    form = read.varint()
    labels = read.varint()
    fields = read.varint()
    lag = read.zigzag()
    inference_time = None
    if flags & _TIME:
        inference_time = read.f64() if flags & _TIME_EXACT else read.varint() / 1_000_000
    task = None
    if flags & _TASK:
        code = read.varint()
        task = TASKS[code - 1] if code else read.text()
    width = read.varint() if flags & _WIDTH else None
    height = read.varint() if flags & _HEIGHT else None
    error = read.text() if flags & _ERROR else None
    scores: list[Score] = []
    top = None
    if flags & (_SCORES | _TOP):
        forms = read.u8()
        if flags & _SCORES:
            scores = _read_scores(read, read.varint(), forms)
        if flags & _TOP:
            label = read.varint()
            top = Score(label, _read_confidence(read, forms & 3))
    chosen = None
    if flags & _CHOSEN:
        chosen = tuple(read.varint() for _ in range(read.varint()))
    metadata: list[tuple[int, Any]] = []
    if flags & _METADATA:
        for _ in range(read.varint()):
            position = read.varint()
            metadata.append((position, _read_value(read)))
    remainder = read.bytes() if flags & _REMAINDER else None
    return Body(
        received_lag=lag,
        form=form,
        inference_time=inference_time,
        task=task,
        image_width=width,
        image_height=height,
        error=error,
        scores=scores,
        as_dict=bool(flags & _AS_DICT),
        chosen=chosen,
        top=top,
        metadata=metadata,
        remainder=remainder,
        labels=labels,
        fields=fields,
    )


def _forms(scores: list[Score]) -> int:
    """The number forms that hold every confidence and coordinate of `scores` exactly.

    The forms are not nested (a float32 does not hold 0.1, four decimals do not hold a
    float32's 0.21875001), so each value says which forms hold it, as bits, and the
    smallest form that holds them all is chosen."""
    confidences = _ANY_CONFIDENCE
    for score in scores:
        confidences &= _confidence_forms(score.confidence)
    coordinates = _ANY_COORDINATE
    seen = shapes = False
    for score in scores:
        for side in score.sides:
            if side is not None:
                coordinates &= _coordinate_forms(side)
                seen = True
        if score.points is not None or score.keypoints is not None:
            shapes = True
            for x, y in score.points or ():
                coordinates &= _coordinate_forms(x) & _coordinate_forms(y)
                seen = True
    confidence = _lowest(confidences)
    coordinate = _lowest(coordinates) if seen else 0
    partial = coordinate > 0 and any(None in score.sides for score in scores)
    return (
        confidence
        | coordinate << 2
        | (_PARTIAL_BOXES if partial else 0)
        | (_SHAPES if shapes else 0)
    )


# Which forms hold a value, a bit per form (bit n: form n).
_ANY_CONFIDENCE = 0b111
_ANY_COORDINATE = 0b11110


def _lowest(forms: int) -> int:
    return (forms & -forms).bit_length() - 1


def _is_f32(value: float) -> bool:
    try:
        return bool(_F32.unpack(_F32.pack(value))[0] == value)
    except OverflowError:  # beyond float32's range
        return False


def _confidence_forms(value: float) -> int:
    forms = 0b100
    if round(value * 10_000) / 10_000 == value:
        forms |= 0b001
    if _is_f32(value):
        forms |= 0b010
    return forms


def _coordinate_forms(value: float) -> int:
    forms = 0b10000
    if abs(value) < 2**31 / 10:  # beyond, tenths overflow an i32 (and a double's * 10)
        tenths = round(value * 10)
        if tenths / 10 == value:
            forms |= 0b00110 if 0 <= tenths <= 0xFFFF else 0b00100
    if _is_f32(value):
        forms |= 0b01000
    return forms


def _put_confidence(out: bytearray, value: float, form: int) -> None:
    if form == 0:
        put_u16(out, round(value * 10_000))
    elif form == 1:
        out += _F32.pack(value)
    else:
        out += _F64.pack(value)


def _read_confidence(read: Reader, form: int) -> float:
    if form == 0:
        return read.u16() / 10_000
    if form == 1:
        return float(_F32.unpack(read.raw(4))[0])
    return read.f64()


def _put_coordinate(out: bytearray, value: float, form: int) -> None:
    if form == 1:
        put_u16(out, round(value * 10))
    elif form == 2:
        put_i32(out, round(value * 10))
    elif form == 3:
        out += _F32.pack(value)
    else:
        out += _F64.pack(value)


def _read_coordinate(read: Reader, form: int) -> float:
    if form == 1:
        return read.u16() / 10
    if form == 2:
        return read.i32() / 10
    if form == 3:
        return float(_F32.unpack(read.raw(4))[0])
    return read.f64()


def _put_scores(out: bytearray, scores: list[Score], forms: int) -> None:
    confidence, coordinate = forms & 3, forms >> 2 & 7
    partial = forms & _PARTIAL_BOXES
    for score in scores:
        put_varint(out, score.label)
        _put_confidence(out, score.confidence, confidence)
        if not coordinate:
            continue
        sides = score.sides
        if partial:
            out.append(sum(1 << n for n, side in enumerate(sides) if side is not None))
        for side in sides:
            if side is not None:
                _put_coordinate(out, side, coordinate)
    if forms & _SHAPES:
        put_bytes(out, _packed_shapes(scores, coordinate))


def _read_scores(read: Reader, count: int, forms: int) -> list[Score]:
    confidence, coordinate = forms & 3, forms >> 2 & 7
    partial = forms & _PARTIAL_BOXES
    found = []
    for _ in range(count):
        label = read.varint()
        value = _read_confidence(read, confidence)
        if not coordinate:
            found.append(Score(label, value))
            continue
        present = read.u8() if partial else 15
        x, y, width, height = (
            _read_coordinate(read, coordinate) if present >> n & 1 else None for n in range(4)
        )
        found.append(Score(label, value, x, y, width, height))
    if forms & _SHAPES:
        shapes = _unpacked_shapes(read.bytes(), count, coordinate)
        found = [
            Score(s.label, s.confidence, s.x, s.y, s.width, s.height, points, keypoints)
            for s, (points, keypoints) in zip(found, shapes, strict=True)
        ]
    return found


def _packed_shapes(scores: list[Score], coordinate: int) -> bytes:
    """Every score's polygon and keypoints, deflated: they are most of a segmentation's
    bytes, and a polygon's points repeat their neighbours' digits."""
    out = bytearray()
    for score in scores:
        if score.points is None:
            out.append(0)
        else:
            out.append(1)
            put_varint(out, len(score.points))
            if coordinate in (1, 2):  # tenths, as differences from the point before
                last_x = last_y = 0
                for x, y in score.points:
                    tx, ty = round(x * 10), round(y * 10)
                    put_zigzag(out, tx - last_x)
                    put_zigzag(out, ty - last_y)
                    last_x, last_y = tx, ty
            else:
                for x, y in score.points:
                    _put_coordinate(out, x, coordinate)
                    _put_coordinate(out, y, coordinate)
        if score.keypoints is None:
            out.append(0)
        else:
            out.append(1)
            put_bytes(out, orjson.dumps(score.keypoints))
    compressor = zlib.compressobj(_SHAPE_LEVEL, zlib.DEFLATED, -15)
    return compressor.compress(bytes(out)) + compressor.flush()


def _unpacked_shapes(
    data: bytes, count: int, coordinate: int
) -> list[tuple[tuple[tuple[float, float], ...] | None, tuple[dict[str, Any], ...] | None]]:
    read = Reader(zlib.decompress(data, -15))
    found = []
    for _ in range(count):
        points = None
        if read.u8():
            listed = []
            if coordinate in (1, 2):
                x = y = 0
                for _ in range(read.varint()):
                    x += read.zigzag()
                    y += read.zigzag()
                    listed.append((x / 10, y / 10))
            else:
                for _ in range(read.varint()):
                    listed.append(
                        (_read_coordinate(read, coordinate), _read_coordinate(read, coordinate))
                    )
            points = tuple(listed)
        keypoints = None
        if read.u8():
            keypoints = tuple(orjson.loads(read.bytes()))
        found.append((points, keypoints))
    return found


def _put_value(out: bytearray, value: Any) -> None:
    if value is True:
        out.append(_TRUE)
    elif value is False:
        out.append(_FALSE)
    elif isinstance(value, int):
        out.append(_INT)
        put_zigzag(out, value)
    elif isinstance(value, float):
        out.append(_FLOAT)
        put_f64(out, value)
    else:
        out.append(_STR)
        put_text(out, value)


def _read_value(read: Reader) -> Any:
    kind = read.u8()
    if kind == _TRUE:
        return True
    if kind == _FALSE:
        return False
    if kind == _INT:
        return read.zigzag()
    if kind == _FLOAT:
        return read.f64()
    return read.text()
