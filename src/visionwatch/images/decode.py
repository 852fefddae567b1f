"""Accept an image only if Pillow really decodes it, within the configured limits."""

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# Pillow's format name -> (the extension of our blob key, the content type served).
FORMATS = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
}
CONTENT_TYPES = dict(FORMATS.values())
CONTENT_TYPES["thumb.jpg"] = "image/jpeg"


class BadImage(ValueError):
    """An upload that is not an image we keep; the message says why."""


@dataclass(frozen=True, slots=True)
class CheckedImage:
    data: bytes
    extension: str
    content_type: str
    width: int
    height: int


def check_image(data: bytes, *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """The image in `data` if it is a whole JPEG, PNG or WebP within the limits; else BadImage."""
    if not data:
        raise BadImage("the image is empty")
    if len(data) > max_bytes:
        raise BadImage(f"images have at most {max_bytes} bytes, this one has {len(data)}")
    try:
        with warnings.catch_warnings():
            # Pillow warns, then refuses, past its own bomb limit; ours is checked below.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in FORMATS:
                    raise BadImage(
                        f"{image.format} images are not accepted: send JPEG, PNG or WebP"
                    )
                width, height = image.size
                if width * height > max_pixels:
                    raise BadImage(
                        f"images have at most {max_pixels} pixels, this one has {width}x{height}"
                    )
                image.load()  # decode every byte: a truncated or corrupt file fails here
                extension, content_type = FORMATS[image.format]
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage("the image decompresses to too many pixels") from None
    except UnidentifiedImageError:
        raise BadImage("not an image: send JPEG, PNG or WebP") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImage(f"the image cannot be decoded: {error}") from None
    return CheckedImage(data, extension, content_type, width, height)
