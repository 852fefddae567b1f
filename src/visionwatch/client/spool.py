"""Store-and-forward on disk: request bodies written atomically, delivered oldest first."""

import contextlib
import os
import threading
import time
import uuid
from pathlib import Path

from visionwatch.files import sync_directory, write_durably

SUFFIX = ".json.gz"
# A forked child's own directory inside the spool: `fork-<pid>`.
FORKED = "fork-"


class Spool:
    """A directory of pending requests, one file each, named `<time>-<id>.<endpoint>.json.gz`.

    A file is complete or absent: it is written under a temporary name,
    synced, then renamed. It is removed only after the server acknowledged
    it, so a crash at any point re-sends at worst (inference ids make that safe).

    A process forked from the one that made the spool writes to a directory of its
    own inside it (see `forked`): parent and child never send or remove each other's
    files. What a child left there when it ended is taken over by the next spool made
    on the directory.
    """

    def __init__(self, directory: str | os.PathLike[str], *, root: Path | None = None) -> None:
        self.directory = Path(directory)
        # Set for a forked child's spool: the spool directory its own one sits in.
        self.root = root
        # remove() empties a child's directory, then removes it: pending() must not see the
        # first step alone, or a flush() ends and the process exits with the directory left.
        self.lock = threading.Lock()
        if root is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._adopt_orphans()

    def forked(self) -> "Spool":
        """The spool of this process, forked from the one that used `self`."""
        root = self.root or self.directory
        return Spool(root / f"{FORKED}{os.getpid()}", root=root)

    def put(self, endpoint: str, body: bytes) -> Path:
        if self.root is not None and not self.directory.is_dir():
            # A child's directory exists only while it holds something: made on its
            # first write, removed once emptied (children come and go, a pool's workers).
            self.directory.mkdir(exist_ok=True)
            sync_directory(self.root)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.{endpoint}{SUFFIX}"
        final = self.directory / name
        write_durably(final, body)  # its temporary name starts with a dot: never pending
        return final

    def pending(self) -> list[Path]:
        try:
            with self.lock:
                return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX))
        except FileNotFoundError:  # a child's directory, not made yet or emptied
            return []

    @staticmethod
    def endpoint(path: Path) -> str:
        return path.name.removesuffix(SUFFIX).split(".", 1)[1]

    def remove(self, path: Path) -> None:
        with self.lock:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            if self.root is not None:
                with contextlib.suppress(OSError):  # not empty yet: more to deliver
                    self.directory.rmdir()

    def _adopt_orphans(self) -> None:
        """Move in what forked children, no longer running, left undelivered (one killed,
        or ended while the server was away), so that it is sent."""
        moved = False
        for child in self.directory.glob(f"{FORKED}*"):
            pid = child.name.removeprefix(FORKED)
            if not pid.isdigit() or not child.is_dir() or _running(int(pid)):
                continue
            try:
                for path in child.iterdir():
                    if path.name.startswith("."):  # a write cut short: never complete
                        path.unlink()
                    else:
                        os.replace(path, self.directory / path.name)
                        moved = True
                child.rmdir()
            except OSError:
                continue  # left for the next spool made here; never fatal to the caller
        if moved:
            sync_directory(self.directory)


def _running(pid: int) -> bool:
    """Whether process `pid` exists (this one included); asked only where fork exists."""
    if not hasattr(os, "fork"):
        return True  # os.kill would end the process on Windows, not probe it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: it exists
        return True
    return True
