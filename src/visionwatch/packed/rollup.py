"""A rollup row's histograms and class figures, packed (docs/architecture.md, "Rollups").

A row of `rollups_*` keeps its sums as columns (SQL adds them up) and two blobs:

- `confidence_bins` and `time_bins`: its confidence and inference-time histograms, each a
  sparse list of (bin, count) (a chart of percentiles reads only the second);
- `classes`: per class (by the id of its name, NO_CLASS 0 for an inference that predicted
  nothing) its inferences, predictions, errors and timed inferences, and the sums of its
  confidences and inference times; then, on rows of every device, each class's
  confidence histogram.

Counts are two bytes when all of a blob's fit, else four (its first byte says which), so
that a minute's row stays small and a day's still holds millions; sums are doubles. A
blob is read by `struct.iter_unpack`, in C.
"""

import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

NO_CLASS = 0  # the class id of inferences that predicted nothing
TIME_BIN_BASE = 100

_SMALL, _LARGE = 0, 1
_BINS = {_SMALL: struct.Struct("<BH"), _LARGE: struct.Struct("<BI")}
_CLASSES = {_SMALL: struct.Struct("<HHHHHdd"), _LARGE: struct.Struct("<IIIIIdd")}
_CLASS_BINS = {_SMALL: struct.Struct("<HBH"), _LARGE: struct.Struct("<IBI")}
_COUNT = struct.Struct("<I")


@dataclass(slots=True)
class ClassFigures:
    inferences: int = 0
    predictions: int = 0
    errors: int = 0
    timed: int = 0
    confidence_sum: float = 0.0
    inference_time_sum: float = 0.0

    def add(self, other: "ClassFigures") -> None:
        self.inferences += other.inferences
        self.predictions += other.predictions
        self.errors += other.errors
        self.timed += other.timed
        self.confidence_sum += other.confidence_sum
        self.inference_time_sum += other.inference_time_sum


@dataclass(slots=True)
class Blobs:
    """What a row's blobs hold, decoded: histograms, class figures and class histograms."""

    confidence_bins: Counter[int] = field(default_factory=Counter)
    time_bins: Counter[int] = field(default_factory=Counter)
    classes: dict[int, ClassFigures] = field(default_factory=dict)
    class_bins: Counter[tuple[int, int]] = field(default_factory=Counter)  # (class, bin)

    def add(self, other: "Blobs") -> None:
        self.confidence_bins.update(other.confidence_bins)
        self.time_bins.update(other.time_bins)
        for class_id, figures in other.classes.items():
            found = self.classes.get(class_id)
            if found is None:
                self.classes[class_id] = found = ClassFigures()
            found.add(figures)
        self.class_bins.update(other.class_bins)


def pack_bins(bins: Counter[int]) -> bytes:
    listed = sorted((b, c) for b, c in bins.items() if c)
    size = _size(c for _, c in listed)
    form = _BINS[size]
    return bytes([size]) + b"".join(form.pack(b, c) for b, c in listed)


def unpack_bins(data: bytes | None, into: Counter[int] | None = None) -> Counter[int]:
    found = into if into is not None else Counter()
    if data:
        for b, c in _BINS[data[0]].iter_unpack(memoryview(data)[1:]):
            found[b] += c
    return found


def pack_classes(classes: dict[int, ClassFigures], class_bins: Counter[tuple[int, int]]) -> bytes:
    """The classes blob: a byte of form, the number of classes, their figures, their bins."""
    listed = sorted(classes.items())
    binned = sorted((k, c) for k, c in class_bins.items() if c)
    # The largest integer says the form (a max of builtins: this runs for every rollup
    # row an aggregator run writes).
    largest = max(
        max(
            (
                max(class_id, f.inferences, f.predictions, f.errors, f.timed)
                for class_id, f in listed
            ),
            default=0,
        ),
        max((max(key[0], count) for key, count in binned), default=0),
    )
    size = _LARGE if largest > 0xFFFF else _SMALL
    figures, bins = _CLASSES[size], _CLASS_BINS[size]
    return b"".join(
        (
            bytes([size]),
            _COUNT.pack(len(listed)),
            *(
                figures.pack(
                    class_id,
                    f.inferences,
                    f.predictions,
                    f.errors,
                    f.timed,
                    f.confidence_sum,
                    f.inference_time_sum,
                )
                for class_id, f in listed
            ),
            *(bins.pack(class_id, b, count) for (class_id, b), count in binned),
        )
    )


def class_totals(data: bytes) -> list[tuple[int, int, float]]:
    """Per class of a classes blob: its id, its predictions and their confidences' sum,
    the rest left packed."""
    if not data:
        return []
    figures = _CLASSES[data[0]]
    (count,) = _COUNT.unpack_from(data, 1)
    packed = memoryview(data)[5 : 5 + count * figures.size]
    return [(c, p, s) for c, _, p, _, _, s, _ in figures.iter_unpack(packed)]


def unpack_classes(
    data: bytes | None, into: Blobs | None = None, *, with_bins: bool = True
) -> Blobs:
    """The classes blob decoded (into `into`); without its class histograms when the
    reader shows no class's histogram: a day's row holds up to a hundred bins a class,
    most of what decoding it costs."""
    found = into if into is not None else Blobs()
    if not data:
        return found
    size = data[0]
    (count,) = _COUNT.unpack_from(data, 1)
    figures, bins = _CLASSES[size], _CLASS_BINS[size]
    end = 5 + count * figures.size
    view = memoryview(data)
    classes = found.classes
    for class_id, inferences, predictions, errors, timed, confidences, times in figures.iter_unpack(
        view[5:end]
    ):
        figure = classes.get(class_id)
        if figure is None:
            classes[class_id] = ClassFigures(
                inferences, predictions, errors, timed, confidences, times
            )
        else:
            figure.inferences += inferences
            figure.predictions += predictions
            figure.errors += errors
            figure.timed += timed
            figure.confidence_sum += confidences
            figure.inference_time_sum += times
    if not with_bins:
        return found
    class_bins = found.class_bins
    for class_id, b, c in bins.iter_unpack(view[end:]):
        class_bins[(class_id, b)] += c
    return found


def _size(*values: Iterable[int]) -> int:
    for listed in values:
        for value in listed:
            if value > 0xFFFF:
                return _LARGE
    return _SMALL
