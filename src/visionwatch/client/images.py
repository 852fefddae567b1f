"""Image sizes from what `log(image=...)` accepts: numpy arrays, PIL images, bytes or a path.

Only width and height are sent for now; the upload belongs to the images feature.
"""

import os
import struct
from typing import Any

_PNG = b"\x89PNG\r\n\x1a\n"


def check_image(image: object) -> None:
    if image is None or isinstance(image, bytes | bytearray | str | os.PathLike):
        return
    if hasattr(image, "shape") or hasattr(image, "size"):
        return
    raise TypeError("image must be a numpy array, a PIL image, bytes or a path")


def image_size(image: Any) -> tuple[int, int] | None:
    """(width, height), or None when it cannot be told cheaply."""
    shape = getattr(image, "shape", None)
    if shape is not None and len(shape) >= 2:
        return int(shape[1]), int(shape[0])
    size = getattr(image, "size", None)
    if isinstance(size, tuple) and len(size) == 2:
        return int(size[0]), int(size[1])
    if isinstance(image, str | os.PathLike):
        try:
            with open(image, "rb") as file:
                image = file.read(64 * 1024)
        except OSError:
            return None
    if isinstance(image, bytes | bytearray):
        return _header_size(bytes(image))
    return None


def _header_size(data: bytes) -> tuple[int, int] | None:
    if data.startswith(_PNG) and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return int(width), int(height)
        position += 2 + length
    return None
