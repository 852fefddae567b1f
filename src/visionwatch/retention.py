"""Retention: delete raw inferences and images past their retention; keep rollups longer.

Rows go in chunks, each in its own transaction, so a large prune never holds
the writer for long. On PostgreSQL the raw tables are partitioned by week
(db/partitions.py): retention goes by whole weeks there (a row goes once its week is past
the retention, up to seven days later than on SQLite), and a week past every workspace's
retention is dropped whole, without deleting a row; only workspaces that keep less than
the longest delete their rows. An image file goes only when no inference and no vision event's
image anywhere points at it any more (files are shared by content). Vision events and
their images keep for the workspace's lookback (`workspaces retention --event-days`, else
VISIONWATCH_EVENT_LOOKBACK_DAYS); operators' verdicts keep as the rollups do.
"""

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, delete, exists, func, or_, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement

from visionwatch.aggregator import settle
from visionwatch.config import Settings
from visionwatch.db import dialect as dialects
from visionwatch.db import partitions
from visionwatch.db.engine import Database
from visionwatch.db.schema import (
    event_classes,
    event_data_fields,
    event_metadata,
    event_sources,
    event_verdicts,
    image_counts,
    inference_feedback,
    inferences,
    pending_metadata,
    rollup_queue,
    rollups,
    vision_events,
    workspaces,
)
from visionwatch.db.types import EPOCH, from_micros
from visionwatch.images.blobs import BlobStore, thumbnail_key
from visionwatch.rollups import ALL_DEVICES
from visionwatch.store.floors import read_floors

log = logging.getLogger("visionwatch.retention")

CHUNK = 2000


@dataclass
class PruneReport:
    """What a prune removed, or would remove (`dry_run`)."""

    dry_run: bool
    inferences: dict[str, int] = field(default_factory=dict)  # by workspace name
    images: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    files: int = 0
    rollup_rows: int = 0


@dataclass(frozen=True, slots=True)
class Cutoffs:
    rows: datetime
    images: datetime


def cutoffs(
    db: Database, settings: Settings, now: datetime, rows: int | None, images: int | None
) -> Cutoffs:
    return Cutoffs(
        rows=_whole_weeks(db, now - timedelta(days=rows or settings.retention_days)),
        images=now - timedelta(days=images or settings.image_retention_days),
    )


def _whole_weeks(db: Database, cutoff: datetime) -> datetime:
    """PostgreSQL's rows go by whole weeks (their partitions'); SQLite's to the microsecond."""
    return partitions.period_start(cutoff) if dialects.has_time_partitions(db.dialect) else cutoff


def prune(
    db: Database, blobs: BlobStore, settings: Settings, now: datetime, dry_run: bool = False
) -> PruneReport:
    report = PruneReport(dry_run=dry_run)
    if not dry_run:
        # What is queued is counted first, so that rows and rollups past their retention go
        # together; rows queued after this stay until counted (see _prune_rows).
        settle(db)
    with db.read() as conn:
        spaces = conn.execute(select(workspaces)).all()
    limits = {
        space.id: cutoffs(db, settings, now, space.retention_days, space.image_retention_days)
        for space in spaces
    }
    lookbacks = {
        space.id: _whole_weeks(
            db, now - timedelta(days=space.event_lookback_days or settings.event_lookback_days)
        )
        for space in spaces
    }
    dropped: Counter[int] = Counter()
    dropped_events: Counter[int] = Counter()
    if spaces and not dry_run and dialects.has_time_partitions(db.dialect):
        oldest = min(limit.rows for limit in limits.values())
        dropped = _drop_weeks(db, blobs, partitions.INFERENCE_TABLES, oldest, report)
        dropped_events = _drop_weeks(
            db, blobs, partitions.EVENT_TABLES, min(lookbacks.values()), report
        )
    for space in spaces:
        limit = limits[space.id]
        report.images[space.name] = _prune_images(db, blobs, space.id, limit, dry_run, report)
        report.inferences[space.name] = dropped[space.id] + _prune_rows(
            db, blobs, space.id, limit, dry_run, report
        )
        report.events[space.name] = dropped_events[space.id] + _prune_events(
            db, blobs, space.id, lookbacks[space.id], dry_run, report
        )
    rollup_cutoff = now - timedelta(days=settings.rollup_retention_days)
    report.rollup_rows = _prune_rollups(db, rollup_cutoff, dry_run)
    if not dry_run:
        with db.write() as conn:
            old_day = (now - EPOCH).days - 7
            conn.execute(delete(image_counts).where(image_counts.c.day < old_day))
            # Verdicts are what realised precision is summed from: they keep as rollups do.
            conn.execute(delete(inference_feedback).where(inference_feedback.c.ts < rollup_cutoff))
            conn.execute(delete(event_verdicts).where(event_verdicts.c.ts < rollup_cutoff))
            conn.execute(
                delete(pending_metadata).where(
                    pending_metadata.c.received_at < now - timedelta(days=settings.retention_days)
                )
            )
    return report


def _drop_weeks(
    db: Database, blobs: BlobStore, group: Sequence[str], cutoff: datetime, report: PruneReport
) -> Counter[int]:
    """Drop the weeks of `group` that end by `cutoff` (the oldest of every workspace's), a
    week a transaction; how many rows of its parent each workspace lost. A week whose
    inferences are still queued for the aggregator stays until they are counted; one
    whose locks are not had in time (a long read holds it) waits for the next run."""
    with db.read() as conn:
        weeks = partitions.expired(conn, group[0], cutoff)
    lost: Counter[int] = Counter()
    for week in weeks:
        try:
            with db.write() as conn:
                dropped = _drop_week(conn, group, week)
        except OperationalError as error:
            if not partitions.is_lock_timeout(error):
                raise
            log.warning("retention: %s is busy, left for the next run", week.date())
            continue
        if dropped is not None:
            counts, orphans = dropped
            lost.update(counts)
            _delete_files(blobs, orphans, report)
    return lost


def _drop_week(
    conn: Connection, group: Sequence[str], week: datetime
) -> tuple[dict[int, int], list[str]] | None:
    """Drop a week of `group` unless still queued: the rows each workspace lost, and the
    image files nothing points at any more (to delete once this commits)."""
    partitions.lock(conn, group, week)
    name = partitions.partition_name(group[0], week)
    if group[0] == "inferences" and partitions.queued(conn, name):
        return None
    counts = conn.execute(
        text(f'SELECT workspace_id, count(*) FROM "{name}" GROUP BY workspace_id')
    ).all()
    keys: set[str] = set()
    if group[0] == "inferences":
        keys = set(
            conn.execute(
                text(f'SELECT DISTINCT image_key FROM "{name}" WHERE image_key IS NOT NULL')
            ).scalars()
        )
    partitions.drop(conn, group, week)
    lost = {row[0]: row[1] for row in counts}
    return lost, (_orphans(conn, keys) if keys else [])


def _delete_files(blobs: BlobStore, keys: list[str], report: PruneReport) -> None:
    """After the commit: a file goes only once nothing points at it."""
    for key in keys:
        blobs.delete(key)
        blobs.delete(thumbnail_key(key))
    report.files += len(keys)


def _prune_images(
    db: Database,
    blobs: BlobStore,
    workspace_id: int,
    limits: Cutoffs,
    dry_run: bool,
    report: PruneReport,
) -> int:
    """Unlink images older than the image retention from their inferences."""
    old = (
        inferences.c.workspace_id == workspace_id,
        inferences.c.ts < limits.images,
        inferences.c.image_key.is_not(None),
    )

    def unlink(conn: Connection, keys: Sequence[tuple[datetime, int]]) -> None:
        conn.execute(update(inferences).where(*_of_keys(workspace_id, keys)).values(image_key=None))

    return _in_chunks(db, blobs, old, unlink, dry_run, report)


def _prune_rows(
    db: Database,
    blobs: BlobStore,
    workspace_id: int,
    limits: Cutoffs,
    dry_run: bool,
    report: PruneReport,
) -> int:
    """Delete inferences older than the retention, with their predictions and metadata.

    Rows still queued for the aggregator stay until it has counted them (a backfill of old
    data may be pruned moments after it lands): their rollups must not lose them.
    """
    queued = exists().where(
        rollup_queue.c.workspace_id == workspace_id,
        and_(rollup_queue.c.first_pk <= inferences.c.id, inferences.c.id <= rollup_queue.c.last_pk),
    )
    old = (inferences.c.workspace_id == workspace_id, inferences.c.ts < limits.rows, ~queued)

    def delete_rows(conn: Connection, keys: Sequence[tuple[datetime, int]]) -> None:
        conn.execute(delete(inferences).where(*_of_keys(workspace_id, keys)))

    return _in_chunks(db, blobs, old, delete_rows, dry_run, report)


def _in_chunks(
    db: Database,
    blobs: BlobStore,
    old: tuple[ColumnElement[bool], ...],
    act: Callable[[Connection, Sequence[tuple[datetime, int]]], None],
    dry_run: bool,
    report: PruneReport,
) -> int:
    """Apply `act` to the matching inferences a chunk per transaction, then delete the image
    files nothing points at any more; how many inferences (or, dry, how many would be)."""
    if dry_run:
        with db.read() as conn:
            return int(conn.execute(select(func.count()).where(*old)).scalar_one())
    done = 0
    while True:
        with db.write() as conn:
            rows = conn.execute(
                select(inferences.c.ts, inferences.c.id, inferences.c.image_key)
                .where(*old)
                .limit(CHUNK)
            ).all()
            if not rows:
                return done
            act(conn, [(row.ts, row.id) for row in rows])
            keys = {row.image_key for row in rows if row.image_key is not None}
            orphans = _orphans(conn, keys) if keys else []
        _delete_files(blobs, orphans, report)
        done += len(rows)


def _orphans(conn: Connection, keys: set[str]) -> list[str]:
    """Which of `keys` nothing points at any more: no inference, no vision event's image."""
    asked = sorted(keys)
    still = set(
        conn.execute(select(inferences.c.image_key).where(inferences.c.image_key.in_(asked)))
        .scalars()
        .all()
    ) | set(
        conn.execute(select(event_sources.c.image_key).where(event_sources.c.image_key.in_(asked)))
        .scalars()
        .all()
    )
    return sorted(keys - still)


def _prune_events(
    db: Database,
    blobs: BlobStore,
    workspace_id: int,
    cutoff: datetime,
    dry_run: bool,
    report: PruneReport,
) -> int:
    """Delete vision events older than the lookback, and the images uploaded before it;
    how many events (or, dry, how many would be)."""
    old = (vision_events.c.workspace_id == workspace_id, vision_events.c.ts < cutoff)
    if dry_run:
        with db.read() as conn:
            return int(conn.execute(select(func.count()).where(*old)).scalar_one())
    done = 0
    while True:
        with db.write() as conn:
            pks = conn.execute(select(vision_events.c.id).where(*old).limit(CHUNK)).scalars().all()
            if not pks:
                break
            for facts in (event_metadata, event_data_fields, event_classes):
                conn.execute(delete(facts).where(facts.c.event_pk.in_(pks)))
            conn.execute(delete(vision_events).where(vision_events.c.id.in_(pks)))
        done += len(pks)
    old_sources = (
        event_sources.c.workspace_id == workspace_id,
        event_sources.c.created_at < cutoff,
    )
    with db.write() as conn:
        keys = set(conn.execute(select(event_sources.c.image_key).where(*old_sources)).scalars())
        conn.execute(delete(event_sources).where(*old_sources))
        orphans = _orphans(conn, keys) if keys else []
    _delete_files(blobs, orphans, report)
    return done


def _of_keys(
    workspace_id: int, keys: Sequence[tuple[datetime, int]]
) -> tuple[ColumnElement[bool], ...]:
    """The inferences of (time, id) keys: by the time and the id, each a list, for the key
    on PostgreSQL (workspace, time, id); an id has one time, so no other row matches."""
    return (
        inferences.c.workspace_id == workspace_id,
        inferences.c.ts.in_(sorted({ts for ts, _ in keys})),
        inferences.c.id.in_([pk for _, pk in keys]),
    )


def _prune_rollups(db: Database, cutoff: datetime, dry_run: bool) -> int:
    """Rollups older than their retention go; so do minutes under their floor
    (store/floors.py): hours and days keep the history, as time-series stores
    downsample."""
    with db.read() as conn:
        floors = read_floors(conn)
    total = 0
    with db.read() if dry_run else db.write() as conn:
        for resolution, table in rollups.items():
            old: ColumnElement[bool] = table.c.bucket < cutoff
            if resolution == "minute" and floors is not None:
                old = or_(
                    table.c.bucket < max(cutoff, from_micros(floors.minutes)),
                    and_(
                        table.c.device_id != ALL_DEVICES,
                        table.c.bucket < from_micros(floors.device_minutes),
                    ),
                )
            if dry_run:
                query = select(func.count()).select_from(table).where(old)
                total += int(conn.execute(query).scalar_one())
            else:
                total += conn.execute(delete(table).where(old)).rowcount
    return total
