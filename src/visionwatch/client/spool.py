"""Store-and-forward on disk: request bodies written atomically, delivered oldest first."""

import contextlib
import os
import time
import uuid
from pathlib import Path

SUFFIX = ".json.gz"


class Spool:
    """A directory of pending requests, one file each, named `<time>-<id>.<endpoint>.json.gz`.

    A file is complete or absent: it is written under a temporary name,
    synced, then renamed. It is removed only after the server acknowledged
    it, so a crash at any point re-sends at worst (inference ids make that safe).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, endpoint: str, body: bytes) -> Path:
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.{endpoint}{SUFFIX}"
        final = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        with open(temporary, "wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
        self._sync_directory()
        return final

    def pending(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX))

    @staticmethod
    def endpoint(path: Path) -> str:
        return path.name.removesuffix(SUFFIX).split(".", 1)[1]

    def remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def _sync_directory(self) -> None:
        # The rename itself must reach the disk for the file to survive a power cut.
        try:
            descriptor = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(descriptor)
        except OSError:
            pass
        finally:
            os.close(descriptor)
