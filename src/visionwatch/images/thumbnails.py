"""Thumbnails: a small JPEG of an image, made once and kept beside it."""

import io

from PIL import Image

from visionwatch.images.blobs import BlobStore, thumbnail_key

THUMBNAIL_SIZE = (320, 320)


def make_thumbnail(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail(THUMBNAIL_SIZE)
        small = image.convert("RGB")
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def thumbnail_of(blobs: BlobStore, key: str) -> bytes | None:
    """The thumbnail of the image under `key`, made on first request and kept."""
    small_key = thumbnail_key(key)
    small = blobs.get(small_key)
    if small is None:
        original = blobs.get(key)
        if original is None:
            return None
        small = make_thumbnail(original)
        blobs.put(small_key, small)
    return small
