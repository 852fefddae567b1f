"""A real detector on real photographs: OpenCV's Haar face cascade over scikit-image's pictures.

Both ship inside their packages, so the demo needs no download and no GPU. The
photographs are scikit-image's bundled ones (the astronaut, the cameraman, the
cat, the coffee, the rocket...) and grids of the small faces of its "Labeled
Faces in the Wild" subset, each also mirrored. Every detection is run for real
and timed; its result is shaped like a Roboflow object-detection response.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from skimage import data

MODEL_ID = "faces/1"
PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "coins", "moon", "page")
GRID_COLUMNS, GRID_ROWS, TILE = 4, 3, 100  # LFW faces are 25 px; the cascade needs more


@dataclass(frozen=True, slots=True)
class Photo:
    name: str
    mirrored: bool
    pixels: NDArray[np.uint8]  # BGR, the order OpenCV and the SDK's encoder use

    @property
    def metadata(self) -> dict[str, str | bool]:
        return {"photo": self.name, "mirrored": self.mirrored}


def photos() -> list[Photo]:
    """Every photograph the demo detects faces in, as it is and mirrored; the astronaut first."""
    originals = [(name, _bgr(getattr(data, name)())) for name in PHOTOS]
    originals += _face_grids()
    return [
        Photo(name, mirrored, np.ascontiguousarray(pixels[:, ::-1]) if mirrored else pixels)
        for mirrored in (False, True)
        for name, pixels in originals
    ]


def _bgr(image: NDArray[Any]) -> NDArray[np.uint8]:
    if image.dtype != np.uint8:
        image = (image * 255).astype(np.uint8)
    code = cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR
    converted = cv2.cvtColor(image if image.ndim == 2 else image[..., :3], code)
    return np.asarray(converted, dtype=np.uint8)


def _face_grids() -> list[tuple[str, NDArray[np.uint8]]]:
    """The LFW subset's faces, twelve to a picture: a crowd for the detector to count."""
    faces = data.lfw_subset()[:100]  # type: ignore[no-untyped-call]  # the first hundred are faces, the rest are not
    per_grid = GRID_COLUMNS * GRID_ROWS
    grids = []
    for number, start in enumerate(range(0, len(faces) - per_grid + 1, per_grid), start=1):
        tiles = [
            cv2.resize((face * 255).astype(np.uint8), (TILE, TILE), interpolation=cv2.INTER_CUBIC)
            for face in faces[start : start + per_grid]
        ]
        rows = [
            np.hstack(tiles[r * GRID_COLUMNS : (r + 1) * GRID_COLUMNS]) for r in range(GRID_ROWS)
        ]
        grid = cv2.copyMakeBorder(np.vstack(rows), 20, 20, 20, 20, cv2.BORDER_CONSTANT, value=128)
        grids.append((f"lfw-faces-{number}", _bgr(grid)))
    return grids


class FaceDetector:
    """OpenCV's frontal-face Haar cascade, answering like a Roboflow detection model."""

    def __init__(self) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV's face cascade is missing ({path}): opencv 5 ships none")

    def detect(self, photo: Photo) -> dict[str, Any]:
        started = time.perf_counter()
        gray = cv2.cvtColor(photo.pixels, cv2.COLOR_BGR2GRAY)
        boxes, _, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30), outputRejectLevels=True
        )
        elapsed = time.perf_counter() - started
        height, width = gray.shape
        return {
            "time": elapsed,
            "image": {"width": width, "height": height},
            "predictions": [
                {
                    # Roboflow's boxes are centred.
                    "x": float(x + w / 2),
                    "y": float(y + h / 2),
                    "width": float(w),
                    "height": float(h),
                    "confidence": confidence(float(weight)),
                    "class": "face",
                    "class_id": 0,
                }
                for (x, y, w, h), weight in zip(boxes, np.ravel(weights), strict=True)
            ],
        }


def confidence(weight: float) -> float:
    """The cascade's last-stage score through a logistic: ordered like the score, in 0..1.

    A cascade gives no probability; this keeps a clear face near 1 and a
    doubtful one near a half, which is what a confidence chart needs to show.
    """
    return round(1.0 / (1.0 + float(np.exp(-weight / 2.0))), 4)


def endless(photos: list[Photo], rng: np.random.Generator) -> Iterator[Photo]:
    """Each photograph once in order, then at random for ever."""
    yield from photos
    while True:
        yield photos[int(rng.integers(len(photos)))]
