"""Rollups packed: one row per grain, workspace, device, bucket and model, its histograms
and class figures in blobs (docs/architecture.md, "Rollups"), minutes kept only for the
last hours.

The four tables per grain (`rollup_*`, `rollup_bins_*`, `class_rollup_*`,
`class_bins_*`) become one, `rollups_*`, a bucket window at a time. Hour and day rows gain
their all-models row (model 0) with sums as well as histograms. Minutes are converted from
their floors on (14 days of every device, 6 hours per device, the defaults of
`store/floors.py`): older minutes are read from the inferences' rows, and hours and days
keep the history. A class is counted by the id of its name's first label (`labels`),
made here for a name no label holds yet.

Going down unpacks the rows into the four tables again (minutes under the floors, already
dropped, stay gone: the pages read them from the rows either way).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

RESOLUTIONS = ("minute", "hour", "day")
STEPS = {"minute": 60_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}
WINDOW = 2000  # buckets converted at once
TIME_BIN_BASE = 100
NO_CLASS = ""
NO_CLASS_KEY = 0
NO_CLASS_ID = 2**32
KEY = ("workspace_id", "device_id", "bucket", "model_id")
SUMS = (
    "requests",
    "errors",
    "empty",
    "predictions",
    "confidence_sum",
    "timed",
    "inference_time_sum",
)
CLASS_SUMS = (
    "inferences",
    "predictions",
    "confidence_sum",
    "errors",
    "timed",
    "inference_time_sum",
)
FLOATS = {"confidence_sum", "inference_time_sum"}
MINUTES_KEPT = timedelta(days=14)
DEVICE_MINUTES_KEPT = timedelta(hours=6)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Key = tuple[int, int, int, int]  # workspace, device, bucket, model


def _micros(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _sum_columns(names: tuple[str, ...]) -> list[sa.Column[Any]]:
    return [
        sa.Column(name, sa.Float() if name in FLOATS else sa.Integer(), nullable=False)
        for name in names
    ]


def _key_columns(names: tuple[str, ...]) -> list[sa.Column[Any]]:
    types: dict[str, Any] = {"bucket": sa.BigInteger(), "class_name": sa.String(256)}
    return [sa.Column(name, types.get(name, sa.Integer()), nullable=False) for name in names]


def _packed_table(resolution: str) -> sa.Table:
    return sa.Table(
        f"rollups_{resolution}",
        sa.MetaData(),
        *_key_columns(KEY),
        *_sum_columns(SUMS),
        sa.Column("confidence_bins", sa.LargeBinary),
        sa.Column("time_bins", sa.LargeBinary),
        sa.Column("classes", sa.LargeBinary),
        # A rowid table on SQLite: rows of more than about 1 KB would be in overflow pages.
        sa.PrimaryKeyConstraint(*KEY, name=f"pk_rollups_{resolution}"),
    )


def _old_tables(resolution: str) -> dict[str, sa.Table]:
    """The first rollups' four tables of a grain (revision 0008's)."""
    meta = sa.MetaData()
    class_key = (*KEY, "class_name")
    bins_key = ("workspace_id", "bucket", "model_id", "class_name")
    return {
        "rollup": sa.Table(
            f"rollup_{resolution}",
            meta,
            *_key_columns(KEY),
            *_sum_columns(SUMS),
            sa.PrimaryKeyConstraint(*KEY, name=f"pk_rollup_{resolution}"),
            sqlite_with_rowid=False,
        ),
        "bins": sa.Table(
            f"rollup_bins_{resolution}",
            meta,
            *_key_columns(KEY),
            sa.Column("bin", sa.SmallInteger(), nullable=False),
            sa.Column("count", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint(*KEY, "bin", name=f"pk_rollup_bins_{resolution}"),
            sqlite_with_rowid=False,
        ),
        "classes": sa.Table(
            f"class_rollup_{resolution}",
            meta,
            *_key_columns(class_key),
            *_sum_columns(CLASS_SUMS),
            sa.PrimaryKeyConstraint(*class_key, name=f"pk_class_rollup_{resolution}"),
            sqlite_with_rowid=False,
        ),
        "class_bins": sa.Table(
            f"class_bins_{resolution}",
            meta,
            *_key_columns(bins_key),
            sa.Column("bin", sa.SmallInteger(), nullable=False),
            sa.Column("count", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint(*bins_key, "bin", name=f"pk_class_bins_{resolution}"),
            sqlite_with_rowid=False,
        ),
    }


def _floors_table() -> sa.Table:
    return sa.Table(
        "rollup_floors",
        sa.MetaData(),
        sa.Column("grain", sa.String(32), nullable=False),
        sa.Column("floor", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("grain", name="pk_rollup_floors"),
    )


def _minute(micros: int) -> int:
    return micros - micros % STEPS["minute"]


def upgrade() -> None:
    from visionwatch.packed.rollup import pack_bins, pack_classes

    bind = op.get_bind()
    now = datetime.now(UTC)
    floors = {
        "minutes": _minute(_micros(now - MINUTES_KEPT)),
        "device_minutes": _minute(_micros(now - DEVICE_MINUTES_KEPT)),
    }
    floors_table = _floors_table()
    floors_table.create(bind)
    bind.execute(floors_table.insert(), [{"grain": g, "floor": f} for g, f in floors.items()])
    labels = _Labels(bind)
    for resolution in RESOLUTIONS:
        target = _packed_table(resolution)
        target.create(bind)
        old = _old_tables(resolution)
        for workspace_id, first, last in _spans(bind, old["rollup"]):
            if resolution == "minute":
                first = max(first, floors["minutes"])  # noqa: PLW2901 (older minutes stay unread)
            step = STEPS[resolution]
            for start in range(first - first % step, last + 1, step * WINDOW):
                rows = _convert(
                    bind, old, workspace_id, start, start + step * WINDOW, resolution, floors
                )
                made = []
                for key, (sums, blobs) in rows.items():
                    made.append(
                        {
                            **dict(zip(KEY, key, strict=True)),
                            **dict(zip(SUMS, sums, strict=True)),
                            "confidence_bins": pack_bins(blobs.confidence_bins),
                            "time_bins": pack_bins(blobs.time_bins),
                            "classes": pack_classes(
                                {labels.id(workspace_id, n): f for n, f in blobs.classes.items()},
                                Counter(
                                    {
                                        (labels.id(workspace_id, n), b): c
                                        for (n, b), c in blobs.class_bins.items()
                                    }
                                ),
                            ),
                        }
                    )
                for chunk in range(0, len(made), 1000):
                    bind.execute(target.insert(), made[chunk : chunk + 1000])
        for table in reversed(old.values()):
            table.drop(bind)


def _spans(bind: sa.Connection, table: sa.Table) -> list[tuple[int, int, int]]:
    """Per workspace, its first and last bucket."""
    rows = bind.execute(
        sa.select(table.c.workspace_id, sa.func.min(table.c.bucket), sa.func.max(table.c.bucket))
        .group_by(table.c.workspace_id)
        .order_by(table.c.workspace_id)
    )
    return [(int(w), int(first), int(last)) for w, first, last in rows]


def _convert(
    bind: sa.Connection,
    old: dict[str, sa.Table],
    workspace_id: int,
    start: int,
    end: int,
    resolution: str,
    floors: dict[str, int],
) -> dict[Key, tuple[list[Any], Any]]:
    """The packed rows of a bucket window, as (sums, Blobs keyed by class name)."""
    from visionwatch.packed.rollup import Blobs, ClassFigures

    made: dict[Key, tuple[list[Any], Blobs]] = {}

    def row(key: Key) -> tuple[list[Any], Blobs]:
        found = made.get(key)
        if found is None:
            found = made[key] = ([0, 0, 0, 0, 0.0, 0, 0.0], Blobs())
        return found

    def kept(device: int, bucket: int) -> bool:
        if resolution != "minute":
            return True
        return bucket >= floors["minutes" if device == 0 else "device_minutes"]

    def window(table: sa.Table) -> Any:
        return bind.execute(
            sa.select(table).where(
                table.c.workspace_id == workspace_id,
                table.c.bucket >= start,
                table.c.bucket < end,
            )
        )

    for found in window(old["rollup"]):
        if not kept(found.device_id, found.bucket):
            continue
        sums = [getattr(found, name) for name in SUMS]
        keys = [(workspace_id, found.device_id, found.bucket, found.model_id)]
        if resolution != "minute" and found.device_id == 0 and found.model_id != 0:
            keys.append((workspace_id, 0, found.bucket, 0))  # every model, summed here
        for key in keys:
            target = row(key)[0]
            for n, value in enumerate(sums):
                target[n] += value
    for found in window(old["bins"]):
        if found.model_id == 0 or not kept(found.device_id, found.bucket):
            continue  # every model's histograms: summed from the models' own
        bins = [(workspace_id, found.device_id, found.bucket, found.model_id)]
        if resolution != "minute" and found.device_id == 0:
            bins.append((workspace_id, 0, found.bucket, 0))
        for key in bins:
            blobs = row(key)[1]
            if found.bin < TIME_BIN_BASE:
                blobs.confidence_bins[found.bin] += found.count
            else:
                blobs.time_bins[found.bin - TIME_BIN_BASE] += found.count
    for found in window(old["classes"]):
        if not kept(found.device_id, found.bucket):
            continue
        key = (workspace_id, found.device_id, found.bucket, found.model_id)
        row(key)[1].classes[found.class_name] = ClassFigures(
            found.inferences,
            found.predictions,
            found.errors,
            found.timed,
            found.confidence_sum,
            found.inference_time_sum,
        )
    for found in window(old["class_bins"]):
        if not kept(0, found.bucket):
            continue
        key = (workspace_id, 0, found.bucket, found.model_id)
        row(key)[1].class_bins[(found.class_name, found.bin)] += found.count
    return made


class _Labels:
    """The id a class name is counted by: its first label's, made when no label has it
    (as `store/dictionaries.py` does: the next id, its tag, no class id)."""

    def __init__(self, bind: sa.Connection) -> None:
        self.bind = bind
        self.known: dict[tuple[int, str], int] = {}

    def id(self, workspace_id: int, name: Any) -> int:
        if name == NO_CLASS:
            return NO_CLASS_KEY
        found = self.known.get((workspace_id, name))
        if found is not None:
            return found
        found = self.bind.execute(
            sa.text("SELECT MIN(id) FROM labels WHERE workspace_id = :w AND name = :n"),
            {"w": workspace_id, "n": name},
        ).scalar()
        if found is None:
            from visionwatch.packed.tags import label_tag

            last = self.bind.execute(
                sa.text("SELECT COALESCE(MAX(id), 0) FROM labels WHERE workspace_id = :w"),
                {"w": workspace_id},
            ).scalar_one()
            found = int(last) + 1
            self.bind.execute(
                sa.text(
                    "INSERT INTO labels (workspace_id, id, name, class_id, tag) "
                    "VALUES (:w, :i, :n, :c, :t)"
                ),
                {"w": workspace_id, "i": found, "n": name, "c": NO_CLASS_ID, "t": label_tag(found)},
            )
        self.known[(workspace_id, name)] = int(found)
        return int(found)


def downgrade() -> None:
    from visionwatch.packed.rollup import unpack_bins, unpack_classes

    bind = op.get_bind()
    names = {
        (int(w), int(i)): n
        for w, i, n in bind.execute(sa.text("SELECT workspace_id, id, name FROM labels"))
    }
    for resolution in RESOLUTIONS:
        old = _old_tables(resolution)
        for table in old.values():
            table.create(bind)
        source = _packed_table(resolution)
        for workspace_id, first, last in _spans(bind, source):
            step = STEPS[resolution]
            for start in range(first - first % step, last + 1, step * WINDOW):
                made: dict[str, list[dict[str, Any]]] = {part: [] for part in old}
                for found in bind.execute(
                    sa.select(source).where(
                        source.c.workspace_id == workspace_id,
                        source.c.bucket >= start,
                        source.c.bucket < start + step * WINDOW,
                    )
                ):
                    key = dict(zip(KEY, found[:4], strict=True))
                    for _kind, data, base in (
                        ("confidence", found.confidence_bins, 0),
                        ("time", found.time_bins, TIME_BIN_BASE),
                    ):
                        for b, count in unpack_bins(data).items():
                            made["bins"].append({**key, "bin": base + b, "count": count})
                    if found.model_id == 0:
                        continue  # every model: only histograms in the first rollups
                    made["rollup"].append({**key, **{n: getattr(found, n) for n in SUMS}})
                    blobs = unpack_classes(found.classes)
                    for class_id, figures in blobs.classes.items():
                        made["classes"].append(
                            {
                                **key,
                                "class_name": _name(names, workspace_id, class_id),
                                **{n: getattr(figures, n) for n in CLASS_SUMS},
                            }
                        )
                    for (class_id, b), count in blobs.class_bins.items():
                        made["class_bins"].append(
                            {
                                "workspace_id": workspace_id,
                                "bucket": found.bucket,
                                "model_id": found.model_id,
                                "class_name": _name(names, workspace_id, class_id),
                                "bin": b,
                                "count": count,
                            }
                        )
                for part, rows in made.items():
                    for chunk in range(0, len(rows), 1000):
                        bind.execute(old[part].insert(), rows[chunk : chunk + 1000])
        source.drop(bind)
    _floors_table().drop(bind)


def _name(names: dict[tuple[int, int], str], workspace_id: int, class_id: int) -> str:
    return NO_CLASS if class_id == NO_CLASS_KEY else names[(workspace_id, class_id)]
