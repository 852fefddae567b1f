"""What the dashboard draws over an image: boxes, polygons and keypoints in image pixels.

Shared by the pages that draw (an inference's predictions, a vision event's detections);
`_drawing.html` renders the result as SVG. Values come from clients as they sent them,
so only real numbers become coordinates: anything else is left undrawn, never rendered
into an attribute.
"""

from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

# What a drawing spans when neither the image's size nor any box says.
DEFAULT_WIDTH, DEFAULT_HEIGHT = 640, 480


def drawing(
    detections: Iterable[Mapping[str, Any]], width: object = None, height: object = None
) -> dict[str, Any]:
    """Shapes for `detections` (centre-based x, y, width, height as Roboflow sends them;
    `points` as {x, y} objects or [x, y] pairs; `keypoints` as {x, y} objects), over an
    image of `width` x `height`, or of the extent of the boxes when the size is unknown."""
    shapes = []
    extent_w, extent_h = 0.0, 0.0
    for index, detection in enumerate(detections):
        confidence = detection.get("confidence")
        shape: dict[str, Any] = {
            "index": index,
            "class": detection.get("class"),
            "confidence": confidence if is_number(confidence) else None,
        }
        x, y, w, h = (detection.get(n) for n in ("x", "y", "width", "height"))
        if is_number(x) and is_number(y) and is_number(w) and is_number(h):
            shape["box"] = {"x": x - w / 2, "y": y - h / 2, "width": w, "height": h}
            extent_w, extent_h = max(extent_w, x + w / 2), max(extent_h, y + h / 2)
        points = detection.get("points")
        if isinstance(points, list):
            shape["points"] = " ".join(f"{p[0]},{p[1]}" for p in map(_xy, points) if p)
        keypoints = detection.get("keypoints")
        if isinstance(keypoints, list):
            shape["keypoints"] = [p for p in keypoints if isinstance(p, dict) and _xy(p)]
        shapes.append(shape)
    shown_w = width if is_number(width) and width > 0 else extent_w or DEFAULT_WIDTH
    shown_h = height if is_number(height) and height > 0 else extent_h or DEFAULT_HEIGHT
    # Labels in the drawing's units, a fifty-fifth of its longer side: as legible at a
    # page's width for a 4,000-pixel photograph as for a 400-pixel crop.
    label_size = round(max(shown_w, shown_h) / 55, 2)
    return {"width": shown_w, "height": shown_h, "shapes": shapes, "label_size": label_size}


def is_number(value: object) -> TypeGuard[float]:
    """A JSON number: booleans are ints to Python, not to people."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _xy(point: object) -> tuple[float, float] | None:
    if isinstance(point, dict):
        x, y = point.get("x"), point.get("y")
    elif isinstance(point, list | tuple) and len(point) >= 2:
        x, y = point[0], point[1]
    else:
        return None
    return (x, y) if is_number(x) and is_number(y) else None
