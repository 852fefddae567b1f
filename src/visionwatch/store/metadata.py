"""Custom metadata attached after the fact, kept pending until its inference arrives."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, update

from visionwatch.db import dialect as dialects
from visionwatch.db.engine import Database
from visionwatch.db.schema import inferences, pending_metadata
from visionwatch.items import MetadataValue, encode_metadata_value
from visionwatch.store import legacy
from visionwatch.store.decoded import find_rows, with_metadata


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
    result: AttachResult = db.run_write(_attach, db, workspace_id, updates, now)
    return result


def _attach(
    conn: Connection,
    db: Database,
    workspace_id: int,
    updates: list[MetadataUpdate],
    now: datetime,
) -> AttachResult:
    dialect = db.dialect
    dialects.lock_for_metadata(dialect, conn, workspace_id)
    wanted = sorted({i for update in updates for i in update.inference_ids})
    legacy.move_ids(conn, dialect, workspace_id, wanted)  # rewritten before it changes
    known = {row.inference_id for row in find_rows(db, conn, workspace_id, wanted)}
    # Later updates of the same field win, as if applied one after another.
    attached: dict[str, dict[str, MetadataValue]] = {}
    pending: dict[tuple[str, str], tuple[str, str]] = {}
    for change in updates:
        for inference_id in change.inference_ids:
            if inference_id in known:
                attached.setdefault(inference_id, {})[change.field] = change.value
            else:
                pending[(inference_id, change.field)] = encode_metadata_value(change.value)
    set_metadata(conn, db, workspace_id, attached)
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
    return AttachResult(
        attached=sum(len(fields) for fields in attached.values()), pending=len(pending)
    )


def set_metadata(
    conn: Connection,
    db: Database,
    workspace_id: int,
    changes: dict[str, dict[str, MetadataValue]],
) -> None:
    """Set metadata fields of stored inferences (by inference id), in this transaction,
    under the workspace's ingest lock; ids not stored are left alone."""
    if not changes:
        return
    found = find_rows(db, conn, workspace_id, sorted(changes))
    for row in found:
        rewritten = with_metadata(
            db, conn, db.dialect, workspace_id, row, changes[row.inference_id]
        )
        conn.execute(
            update(inferences)
            .where(
                inferences.c.workspace_id == workspace_id,  # with the time and id: its key
                inferences.c.ts == row.timestamp,
                inferences.c.id == row.pk,
            )
            .values(tags=rewritten.tags, body=rewritten.body)
        )
