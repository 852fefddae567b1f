"""Which image an inference has, kept within the capture rules' daily caps."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from visionwatch.capture import CaptureRule
from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database
from visionwatch.db.schema import inferences
from visionwatch.images.blobs import BlobStore, content_key
from visionwatch.images.decode import CheckedImage
from visionwatch.packed.ids import encode_id
from visionwatch.store import legacy
from visionwatch.store.capture import daily_cap, rules_of, take_image_slot
from visionwatch.store.decoded import find_rows, with_image_size


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image in the blob store."""

    key: str
    width: int
    height: int


class NoInference(LookupError):
    pass


class OverCap(Exception):
    """The model has kept as many images today as its capture rule allows."""


def keep_image(
    conn: Connection,
    dialect: Dialect,
    blobs: BlobStore,
    workspace_id: int,
    model: str,
    rules: list[CaptureRule],
    image: CheckedImage,
    now: datetime,
) -> StoredImage | None:
    """Store the image (once, by content) if the model's daily cap allows; None if not.

    Called inside the transaction that points an inference at it: the slot is
    only taken if that commits, and the bytes are on disk before it does.
    """
    if not take_image_slot(conn, dialect, workspace_id, model, daily_cap(rules, model), now):
        return None
    key = content_key(image.data, image.extension)
    blobs.put(key, image.data)
    return StoredImage(key, image.width, image.height)


def attach_image(
    db: Database,
    blobs: BlobStore,
    workspace_id: int,
    inference_id: str,
    image: CheckedImage,
    now: datetime,
) -> StoredImage:
    """Give a stored inference this image (replacing any before). NoInference, OverCap."""

    def work(conn: Connection) -> StoredImage:
        legacy.move_ids(conn, db.dialect, workspace_id, [inference_id])  # changed in one form
        found = find_rows(db, conn, workspace_id, [inference_id])
        if not found:
            raise NoInference(inference_id)
        row = found[0]
        rules = rules_of(conn, workspace_id)
        stored = keep_image(conn, db.dialect, blobs, workspace_id, row.model, rules, image, now)
        if stored is None:
            raise OverCap(row.model)
        conn.execute(
            update(inferences)
            .where(
                inferences.c.workspace_id == workspace_id,  # with the time and id: its key
                inferences.c.ts == row.timestamp,
                inferences.c.id == row.pk,
            )
            .values(
                image_key=stored.key,
                # The sizes sent with the inference win; the image fills them in when absent.
                body=with_image_size(row, stored.width, stored.height),
            )
        )
        return stored

    result: StoredImage = db.run_write(work)
    return result


def image_key(db: Database, workspace_id: int, inference_id: str) -> str | None:
    """The blob key of the inference's image; None if it has none or is not in this workspace."""
    with db.read() as conn:
        key: str | None = conn.execute(
            select(inferences.c.image_key).where(
                inferences.c.workspace_id == workspace_id,
                inferences.c.inference_id == encode_id(inference_id),
            )
        ).scalar_one_or_none()
        if key is None:
            key = legacy.image_key_of(conn, workspace_id, inference_id)
    return key
