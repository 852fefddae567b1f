"""Export inferences with their images for retraining: COCO, YOLO or JSON Lines, as a zip stream.

Predictions become annotations (pre-labels). Boxes arrive centre-based
(Roboflow's x, y, width, height); COCO wants the top-left corner, YOLO the
centre normalised by the image size. The zip is written as it is read: one
image in memory at a time, the annotation files last.
"""

import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import orjson

from visionwatch.images.blobs import BlobStore

FORMATS = ("coco", "yolo", "jsonl")


class _Sink:
    """A write-only file that hands out what was written since last asked."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def write(self, data: bytes, /) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def file_name(index: int, inference_id: str, key: str) -> str:
    """A safe, unique name: its position, then the id with anything unusual replaced."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", inference_id)[:100]
    return f"{index:06d}_{safe}.{key.split('.', 1)[1]}"


Write = Callable[[str, bytes], None]


class _Writer(Protocol):
    def add(self, name: str, row: dict[str, Any]) -> None: ...

    def finish(self) -> None: ...


def export_zip(rows: Iterable[dict[str, Any]], blobs: BlobStore, fmt: str) -> Iterator[bytes]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED)
    kinds: dict[str, Callable[[Write], _Writer]] = {
        "coco": _Coco,
        "yolo": _Yolo,
        "jsonl": _JsonLines,
    }
    writer = kinds[fmt](archive.writestr)
    for index, row in enumerate(rows):
        data = blobs.get(row["image_key"])
        if data is None:
            continue  # pruned between the query and now
        name = file_name(index, row["inference_id"], row["image_key"])
        # Images are compressed already: stored as they are.
        archive.writestr(f"images/{name}", data, compress_type=zipfile.ZIP_STORED)
        writer.add(name, row)
        yield sink.take()
    writer.finish()
    archive.close()
    yield sink.take()


def _size(row: dict[str, Any]) -> tuple[float, float]:
    image = row.get("image") or {}
    return float(image.get("width") or 0), float(image.get("height") or 0)


def _box(prediction: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """(left, top, width, height) of a centre-based box, or None when it has none."""
    if not all(isinstance(prediction.get(n), int | float) for n in ("x", "y", "width", "height")):
        return None
    w, h = float(prediction["width"]), float(prediction["height"])
    return float(prediction["x"]) - w / 2, float(prediction["y"]) - h / 2, w, h


def _polygon(prediction: dict[str, Any]) -> list[float] | None:
    """A segmentation's polygon as COCO writes it (x1, y1, x2, y2, ...), or None."""
    flat = [float(v) for point in prediction.get("points") or () for v in (point["x"], point["y"])]
    return flat if len(flat) >= 6 else None


class _Coco:
    def __init__(self, write: Write) -> None:
        self.write = write
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.categories: dict[str, int] = {}

    def add(self, name: str, row: dict[str, Any]) -> None:
        image_id = len(self.images) + 1
        width, height = _size(row)
        self.images.append(
            {
                "id": image_id,
                "file_name": f"images/{name}",
                "width": width,
                "height": height,
                "inference_id": row["inference_id"],
                "model_id": row["model_id"],
            }
        )
        for prediction in row["predictions"]:
            box = _box(prediction)
            if box is None:
                continue
            category = self.categories.setdefault(prediction["class"], len(self.categories) + 1)
            annotation = {
                "id": len(self.annotations) + 1,
                "image_id": image_id,
                "category_id": category,
                "bbox": list(box),
                "area": box[2] * box[3],
                "iscrowd": 0,
                "score": prediction["confidence"],
            }
            polygon = _polygon(prediction)
            if polygon is not None:
                annotation["segmentation"] = [polygon]
            self.annotations.append(annotation)

    def finish(self) -> None:
        categories = [{"id": i, "name": n} for n, i in self.categories.items()]
        document = {
            "info": {"description": "visionwatch export: predictions as pre-labels"},
            "images": self.images,
            "annotations": self.annotations,
            "categories": categories,
        }
        self.write("annotations.json", orjson.dumps(document))


class _Yolo:
    def __init__(self, write: Write) -> None:
        self.write = write
        self.classes: dict[str, int] = {}

    def add(self, name: str, row: dict[str, Any]) -> None:
        width, height = _size(row)
        lines = []
        for prediction in row["predictions"]:
            box = _box(prediction)
            if box is None or not width or not height:
                continue
            index = self.classes.setdefault(prediction["class"], len(self.classes))
            left, top, w, h = box
            centre_x, centre_y = (left + w / 2) / width, (top + h / 2) / height
            lines.append(f"{index} {centre_x:.6f} {centre_y:.6f} {w / width:.6f} {h / height:.6f}")
        stem = name.rsplit(".", 1)[0]
        self.write(f"labels/{stem}.txt", ("\n".join(lines) + "\n" if lines else "").encode())

    def finish(self) -> None:
        names = sorted(self.classes, key=self.classes.__getitem__)
        listed = "".join(f"  {i}: {orjson.dumps(n).decode()}\n" for i, n in enumerate(names))
        self.write("data.yaml", f"path: .\ntrain: images\nval: images\nnames:\n{listed}".encode())
        self.write("classes.txt", "".join(f"{n}\n" for n in names).encode())


class _JsonLines:
    def __init__(self, write: Write) -> None:
        self.write = write
        self.lines: list[bytes] = []

    def add(self, name: str, row: dict[str, Any]) -> None:
        width, height = _size(row)
        line = {
            "image": f"images/{name}",
            "inference_id": row["inference_id"],
            "model_id": row["model_id"],
            "width": width,
            "height": height,
            "predictions": row["predictions"],
            "metadata": row["metadata"],
        }
        self.lines.append(orjson.dumps(line))

    def finish(self) -> None:
        self.write("annotations.jsonl", b"\n".join(self.lines) + b"\n" if self.lines else b"")
