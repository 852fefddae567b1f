"""Stored inference rows read back, and rewritten: their bodies decoded, the labels and
metadata fields their tags name looked up in the workspace's dictionaries
(docs/architecture.md, "The stored form")."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database
from visionwatch.db.schema import devices, inferences, models
from visionwatch.items import Inference, MetadataValue, Prediction, encode_metadata_value
from visionwatch.packed.body import Body, Score, pack_body, unpack_body
from visionwatch.packed.ids import decode_id, encode_id
from visionwatch.packed.remainder import Named, diff, item_of, pack_patch, render
from visionwatch.packed.tags import read_tags, value_tag
from visionwatch.store import dictionaries

MICROSECOND = timedelta(microseconds=1)

# What decode_rows reads of a row: its columns, its model's and device's names.
ROW_COLUMNS = (
    inferences.c.id,
    inferences.c.inference_id,
    inferences.c.ts,
    inferences.c.tags,
    inferences.c.body,
    inferences.c.image_key,
    models.c.name.label("model"),
    devices.c.name.label("device"),
)
# Inferences with their model's and device's names, which filters name.
WITH_NAMES = inferences.join(models, models.c.id == inferences.c.model_id).outerjoin(
    devices, devices.c.id == inferences.c.device_id
)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A row with its body decoded and its names found."""

    pk: int
    inference_id: str
    model: str
    device: str | None
    timestamp: datetime
    body: Body
    labels: list[tuple[str, int | None]]
    fields: list[str]
    values: str  # its metadata values' tags
    label_tags: str
    image_key: str | None

    @property
    def received_at(self) -> datetime:
        return self.timestamp + self.body.received_lag * MICROSECOND

    @property
    def predictions(self) -> list[Prediction]:
        return [self.prediction(score) for score in self.body.predictions]

    def prediction(self, score: Score) -> Prediction:
        name, class_id = self.labels[score.label]
        return Prediction(
            name,
            score.confidence,
            class_id,
            score.x,
            score.y,
            score.width,
            score.height,
            score.points,
            score.keypoints,
        )

    @property
    def metadata(self) -> dict[str, MetadataValue]:
        return {self.fields[position]: value for position, value in self.body.metadata}

    @property
    def named(self) -> Named:
        return Named(
            self.inference_id,
            self.model,
            self.device,
            self.timestamp,
            self.body,
            self.labels,
            self.fields,
        )

    @property
    def item(self) -> Any:
        """The item as sent."""
        return item_of(self.named)


def decode_rows(
    db: Database | None, conn: Connection, workspace_id: int, rows: Sequence[Any]
) -> list[Decoded]:
    """Rows with `id`, `inference_id`, `ts`, `tags`, `body`, `image_key`, and the names of
    their `model` and `device`. Names are kept in memory for `db` (None: looked up)."""
    bodies = [unpack_body(row.body) for row in rows]
    tags = [
        read_tags(row.tags, body.labels, body.fields)
        for row, body in zip(rows, bodies, strict=True)
    ]
    label_names = dictionaries.label_names(
        db, conn, workspace_id, {i for found in tags for i in found.labels}
    )
    field_names = dictionaries.field_names(
        db, conn, workspace_id, {i for found in tags for i in found.fields}
    )
    decoded = []
    for row, body, found in zip(rows, bodies, tags, strict=True):
        decoded.append(
            Decoded(
                pk=row.id,
                inference_id=decode_id(row.inference_id),
                model=row.model,
                device=row.device,
                timestamp=row.ts,
                body=body,
                labels=[label_names[i] for i in found.labels],
                fields=[field_names[i] for i in found.fields],
                values=found.values,
                label_tags=(row.tags or "")[: body.labels],
                image_key=row.image_key,
            )
        )
    return decoded


@dataclass(frozen=True, slots=True)
class Rewritten:
    tags: str | None
    body: bytes


def with_metadata(
    db: Database,
    conn: Connection,
    dialect: Dialect,
    workspace_id: int,
    row: Decoded,
    changes: Mapping[str, MetadataValue],
) -> Rewritten:
    """The row with metadata fields set (added or replaced), its item as sent unchanged.
    Run under the workspace's ingest lock (it may add fields to the dictionary)."""
    sent = row.item
    metadata = {**row.metadata, **changes}
    fields = list(metadata)
    ensured = dictionaries.ensure(db, conn, dialect, workspace_id, [], fields)
    body = replace(
        row.body,
        metadata=[(position, metadata[name]) for position, name in enumerate(fields)],
        fields=len(fields),
        remainder=None,
    )
    named = replace(row.named, body=body, fields=fields)
    body = replace(body, remainder=pack_patch(diff(sent, render(named))))
    values = "".join(
        sorted(
            {value_tag(name, encode_metadata_value(value)[0]) for name, value in metadata.items()}
        )
    )
    tags = row.label_tags + "".join(ensured.field_tags) + values
    # Fields made here are only in memory once the caller's write commits; the ids are
    # found in the dictionary again next time until then.
    return Rewritten(tags=tags or None, body=pack_body(body))


def with_image_size(row: Decoded, width: int | None, height: int | None) -> bytes:
    """The row's body with the size of its image where it had none, its item unchanged."""
    sent = row.item
    body = replace(
        row.body,
        image_width=row.body.image_width if row.body.image_width is not None else width,
        image_height=row.body.image_height if row.body.image_height is not None else height,
        remainder=None,
    )
    named = replace(row.named, body=body)
    return pack_body(replace(body, remainder=pack_patch(diff(sent, render(named)))))


def as_inference(row: Decoded) -> Inference:
    """What the rollups count of a stored inference (rollups.minute_rows)."""
    return Inference(
        inference_id=row.inference_id,
        model=row.model,
        timestamp=row.timestamp,
        task=row.body.task,
        predictions=row.predictions,
        item={},
        device=row.device,
        inference_time=row.body.inference_time,
        error=row.body.error,
    )


def find_rows(
    db: Database | None, conn: Connection, workspace_id: int, inference_ids: Sequence[str]
) -> list[Decoded]:
    """The stored inferences of `inference_ids`, decoded."""
    rows: list[Any] = []
    for start in range(0, len(inference_ids), 5000):  # under both databases' parameter limits
        chunk = [encode_id(i) for i in inference_ids[start : start + 5000]]
        rows += conn.execute(
            select(*ROW_COLUMNS)
            .select_from(WITH_NAMES)
            .where(inferences.c.workspace_id == workspace_id, inferences.c.inference_id.in_(chunk))
        ).all()
    return decode_rows(db, conn, workspace_id, rows)
