"""Where image bytes live, behind a small interface: the filesystem today, S3-ready.

Keys are made here from the content (its SHA-256 and format), never from
user input, so a key is a safe file name and the same image is stored once.
"""

import hashlib
import re
from pathlib import Path
from typing import Protocol

from visionwatch.files import write_durably

# An image (hash.ext) or the thumbnail made from it (hash.thumb.jpg).
KEY = re.compile(r"^[0-9a-f]{64}(\.thumb\.jpg|\.jpg|\.png|\.webp)$")


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None: ...


def content_key(data: bytes, extension: str) -> str:
    key = f"{hashlib.sha256(data).hexdigest()}.{extension}"
    check_key(key)
    return key


def thumbnail_key(key: str) -> str:
    check_key(key)
    return key.split(".", 1)[0] + ".thumb.jpg"


def check_key(key: str) -> None:
    if not KEY.match(key):
        raise ValueError(f"not a blob key: {key[:80]!r}")


class FilesystemStore:
    """Blobs under a folder, sharded by the first bytes of their hash (ab/cd/abcd....jpg)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        if target.exists():
            return  # content-addressed: the same key holds the same bytes
        target.parent.mkdir(parents=True, exist_ok=True)
        write_durably(target, data)

    def get(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
