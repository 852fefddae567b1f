"""Files written whole or not at all, and still there after a power cut: the one way the
server (images, the session secret) and the SDK (its spool) write a file. No dependency:
the SDK ships alone."""

import os
import secrets
from pathlib import Path


def write_durably(target: Path, data: bytes, *, replace: bool = True, mode: int = 0o644) -> bool:
    """Write `data` to a temporary name beside `target`, sync it, then move it into place
    and sync the directory: a reader never sees half a file, and a crash leaves no torn one.

    `replace=False` keeps a `target` that already exists (a link, which fails on an existing
    name, instead of a rename): of processes writing at once, one wins, and all can read
    what it wrote. Returns whether `data` is now at `target`."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, target)
        else:
            try:
                os.link(temporary, target)
            except FileExistsError:
                return False
    finally:
        temporary.unlink(missing_ok=True)
    sync_directory(target.parent)
    return True


def sync_directory(directory: Path) -> None:
    """A new name, a rename or a removal reaches the disk only when its directory is synced."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not every system opens directories (Windows): nothing more to do there
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
