"""Custom metadata attached after the fact, kept pending until its inference arrives."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database
from visionwatch.db.schema import inference_metadata, inferences, pending_metadata
from visionwatch.items import MetadataValue, encode_metadata_value


@dataclass(frozen=True, slots=True)
class MetadataUpdate:
    inference_ids: list[str]
    field: str
    value: MetadataValue


@dataclass(frozen=True, slots=True)
class AttachResult:
    attached: int  # (inference, field) pairs set on stored inferences
    pending: int  # pairs kept until their inference arrives


def attach(
    db: Database, workspace_id: int, updates: list[MetadataUpdate], now: datetime
) -> AttachResult:
    result: AttachResult = db.run_write(_attach, db.dialect, workspace_id, updates, now)
    return result


def _attach(
    conn: Connection,
    dialect: Dialect,
    workspace_id: int,
    updates: list[MetadataUpdate],
    now: datetime,
) -> AttachResult:
    dialects.lock_for_metadata(dialect, conn, workspace_id)
    wanted = sorted({i for update in updates for i in update.inference_ids})
    known: dict[str, tuple[int, datetime]] = {}
    for start in range(0, len(wanted), 5000):
        rows = conn.execute(
            select(inferences.c.id, inferences.c.inference_id, inferences.c.ts).where(
                inferences.c.workspace_id == workspace_id,
                inferences.c.inference_id.in_(wanted[start : start + 5000]),
            )
        )
        known.update((r.inference_id, (r.id, r.ts)) for r in rows)
    # Later updates of the same field win, as if applied one after another.
    attached: dict[tuple[str, str], tuple[str, str]] = {}
    pending: dict[tuple[str, str], tuple[str, str]] = {}
    for update in updates:
        encoded = encode_metadata_value(update.value)
        for inference_id in update.inference_ids:
            target = attached if inference_id in known else pending
            target[(inference_id, update.field)] = encoded
    if attached:
        statement = dialects.insert(dialect, inference_metadata)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=dialects.row_key(dialect, ["workspace_id", "inference_pk", "field"]),
                set_={"value": statement.excluded.value, "kind": statement.excluded.kind},
            ),
            [
                {
                    "workspace_id": workspace_id,
                    "inference_pk": known[inference_id][0],
                    "field": field,
                    "value": value,
                    "kind": kind,
                    "ts": known[inference_id][1],
                }
                for (inference_id, field), (value, kind) in sorted(attached.items())
            ],
        )
    if pending:
        statement = dialects.insert(dialect, pending_metadata)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["workspace_id", "inference_id", "field"],
                set_={
                    "value": statement.excluded.value,
                    "kind": statement.excluded.kind,
                    "received_at": statement.excluded.received_at,
                },
            ),
            [
                {
                    "workspace_id": workspace_id,
                    "inference_id": inference_id,
                    "field": field,
                    "value": value,
                    "kind": kind,
                    "received_at": now,
                }
                for (inference_id, field), (value, kind) in sorted(pending.items())
            ],
        )
    return AttachResult(attached=len(attached), pending=len(pending))
