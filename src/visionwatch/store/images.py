"""Which image an inference has: its blob key, and its size when the inference lacked one."""

from dataclasses import dataclass

from sqlalchemy import func, select, update

from visionwatch.db.engine import Database
from visionwatch.db.schema import inferences


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image already in the blob store."""

    key: str
    width: int
    height: int


def attach_image(db: Database, workspace_id: int, inference_id: str, image: StoredImage) -> bool:
    """Point the inference at the image (replacing any before); False if there is no inference."""
    with db.write() as conn:
        result = conn.execute(
            update(inferences)
            .where(
                inferences.c.workspace_id == workspace_id,
                inferences.c.inference_id == inference_id,
            )
            .values(
                image_key=image.key,
                # The sizes sent with the inference win; the image fills them in when absent.
                image_width=func.coalesce(inferences.c.image_width, image.width),
                image_height=func.coalesce(inferences.c.image_height, image.height),
            )
        )
        return result.rowcount == 1


def image_key(db: Database, workspace_id: int, inference_id: str) -> str | None:
    """The blob key of the inference's image; None if it has none or is not in this workspace."""
    with db.read() as conn:
        key: str | None = conn.execute(
            select(inferences.c.image_key).where(
                inferences.c.workspace_id == workspace_id,
                inferences.c.inference_id == inference_id,
            )
        ).scalar_one_or_none()
    return key


def inference_exists(db: Database, workspace_id: int, inference_id: str) -> bool:
    with db.read() as conn:
        found = conn.execute(
            select(inferences.c.id).where(
                inferences.c.workspace_id == workspace_id,
                inferences.c.inference_id == inference_id,
            )
        ).first()
    return found is not None
