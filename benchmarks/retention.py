"""Retention on PostgreSQL: dropping a week's partitions against deleting its rows, and
partitions of a day against a week.

Two databases hold the same inferences (`--size`, default 10,000,000), each with one
prediction and one metadata field and an item of about 250 bytes, spread evenly over 13
weeks that start on a Monday, in one workspace that keeps 84 days (12 weeks). A prune at
the start of the 14th week removes the first week, a thirteenth of the rows, with
`visionwatch.retention.prune` itself:

- rows: the schema before partitions (revision 0012), an inference a row with a row per
  prediction and metadata field; the week's rows deleted as retention deleted them then,
  2,000 inferences a transaction with their children. Given an index on the children's
  `inference_pk`: 0012 has none that starts with it, so each deleted inference's
  foreign-key check scans every prediction and metadata row (a first run at ten million
  spent over 20 minutes on one batch of 2,000 before it was stopped), and a baseline that
  slow measures nothing;
- partitions: the current schema (an inference one row in its stored form); retention
  (`visionwatch.retention.prune`) drops the week's partitions.

Reported: the prune's time; the database's size before, after the prune, and after the
VACUUM that a delete leaves for autovacuum (it makes the space reusable; only VACUUM FULL,
which locks the table, gives it back), and that VACUUM's time.

Then days against weeks: the same rows (a tenth as many) over 91 days in daily and in
weekly partitions, and the lookups that name no time (and so visit every partition): an
inference by its id (its page, a metadata write, a resend) and a range of keys (the
aggregator's), and one a day bounds (a day's count); each prepared as the server's are and
timed 200 times.
"""

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from benchmarks.ingest import _databases
from visionwatch.config import Settings
from visionwatch.db import migrate, partitions
from visionwatch.db.engine import create_database
from visionwatch.db.schema import NO_CLASS_ID
from visionwatch.db.types import to_micros
from visionwatch.images.blobs import FilesystemStore
from visionwatch.items import parse_item
from visionwatch.packed.ids import encode_id
from visionwatch.packed.stored import pack_inference
from visionwatch.packed.tags import field_tag, label_tag
from visionwatch.retention import prune

DEFAULT_SIZE = 10_000_000
WEEKS = 13
KEEP_DAYS = 84
LOOKUPS = 200
# The first Monday of a recent year: weeks of data, then "now" at the start of the next.
FIRST_DAY = datetime(2026, 1, 5, tzinfo=UTC)


def run(size: int | None) -> None:
    size = size or DEFAULT_SIZE
    with (
        tempfile.TemporaryDirectory() as temporary,
        _databases("postgresql", Path(temporary)) as new,
    ):
        print(f"retention of one week of {WEEKS} ({size:,} inferences in all), PostgreSQL")
        print(
            f"{'':<12}{'prune s':>10}{'MB before':>11}{'MB after':>10}"
            f"{'vacuum s':>10}{'MB vacuumed':>13}{'rows left':>12}"
        )
        for variant in ("rows", "partitions"):
            url = new(f"retention_{variant}")
            figures = retention(url, variant, size, Path(temporary) / variant)
            print(
                f"{variant:<12}{figures['prune_s']:>10.1f}{figures['mb_before']:>11.0f}"
                f"{figures['mb_after']:>10.0f}{figures['vacuum_s']:>10.1f}"
                f"{figures['mb_vacuumed']:>13.0f}{figures['left']:>12,}"
            )
        print()
        small = max(size // 10, 10_000)
        print(f"lookups over 91 days ({small:,} inferences), ms per call (p50 / p95)")
        print(f"{'':<18}{'by id':>16}{'key range':>16}{'one day':>16}{'partitions':>12}")
        for name, width in (("daily", timedelta(days=1)), ("weekly", timedelta(days=7))):
            url = new(f"lookups_{name}")
            found = lookups(url, width, small)
            cells = "".join(f"{p50:>8.3f} / {p95:<5.3f}" for p50, p95 in found[:3])
            print(f"{name:<18}{cells}{int(found[3][0]):>12}")


def retention(url: str, variant: str, size: int, images: Path) -> dict[str, float]:
    database = create_database(url)
    migrate.upgrade(database, "0012" if variant == "rows" else "head")
    if variant == "rows":
        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("predictions", "inference_metadata"):
                conn.execute(f"CREATE INDEX ON {table} (inference_pk)")
    end = FIRST_DAY + timedelta(weeks=WEEKS)
    if variant == "partitions":
        with database.write() as conn:
            partitions.ensure(conn, partitions.INFERENCE_TABLES, FIRST_DAY, end, partitions.WIDTH)
    (fill_first_form if variant == "rows" else fill)(url, size, FIRST_DAY, end)
    before = megabytes(url)
    settings = Settings(data_dir=images, retention_days=KEEP_DAYS)
    started = time.perf_counter()
    if variant == "rows":
        removed = delete_as_before(url, end - timedelta(days=KEEP_DAYS))
    else:
        removed = prune(database, FilesystemStore(images), settings, end).inferences["bench"]
    pruned = time.perf_counter() - started
    after = megabytes(url)
    tables = "inferences, predictions, inference_metadata" if variant == "rows" else "inferences"
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(f"VACUUM {tables}")
        vacuum = time.perf_counter() - started
        left = conn.execute("SELECT count(*) FROM inferences").fetchone()
    vacuumed = megabytes(url)
    database.dispose()
    assert left is not None
    assert removed + left[0] == size, (removed, left[0], size)
    # A week of the thirteen, to a row: the times are spread evenly.
    assert abs(removed - size / WEEKS) <= 1, (removed, size / WEEKS)
    return {
        "prune_s": pruned,
        "mb_before": before,
        "mb_after": after,
        "vacuum_s": vacuum,
        "mb_vacuumed": vacuumed,
        "left": left[0],
    }


def _workspace(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO workspaces (name, created_at, retention_days) VALUES ('bench', 0, %s)",
        (KEEP_DAYS,),
    )
    conn.execute(
        "INSERT INTO models (workspace_id, name, project, version, task, first_seen,"
        " last_seen) VALUES (1, 'parts/1', 'parts', '1', 'object-detection', 0, 0)"
    )


ITEM = {
    "model_id": "parts/1",
    "predictions": [
        {"class": "bolt", "confidence": 0.87, "x": 120.5, "y": 88.25, "width": 32, "height": 41}
    ],
    "inference_time": 0.02,
    "metadata": {"line": "north"},
    "image": {"width": 640},
}


def fill(url: str, size: int, start: datetime, end: datetime) -> None:
    """One workspace keeping KEEP_DAYS, one model, and `size` inferences spread evenly
    over [start, end) in the stored form, each with a prediction and a metadata field
    (the same body, packed once), in SQL."""
    low, span = to_micros(start), to_micros(end) - to_micros(start)
    inference = parse_item(ITEM, now=end, max_clock_skew=timedelta(days=1))
    packed = pack_inference(inference, inference.timestamp)
    tags = label_tag(1) + field_tag(1) + packed.values
    with psycopg.connect(url, autocommit=True) as conn:
        _workspace(conn)
        conn.execute(
            "INSERT INTO labels (workspace_id, id, name, class_id, tag) VALUES (1, 1, %s, %s, %s)",
            (packed.labels[0][0], NO_CLASS_ID, label_tag(1)),
        )
        conn.execute(
            "INSERT INTO metadata_fields (workspace_id, id, name, tag) VALUES (1, 1, %s, %s)",
            (packed.fields[0], field_tag(1)),
        )
        step = 1_000_000
        for first in range(0, size, step):
            last = min(size, first + step) - 1
            conn.execute(
                f"""INSERT INTO inferences (workspace_id, inference_id, model_id, ts, tags, body)
                SELECT 1, convert_to('inference-' || g, 'UTF8')
                    || CASE WHEN length('inference-' || g) IN (16, 17)
                        THEN '\\xff'::bytea ELSE ''::bytea END,
                    1, {low} + (g::numeric * {span} / {size})::bigint, %s, %s
                FROM generate_series({first}, {last}) g""",
                (tags, packed.body),
            )
        conn.execute("VACUUM ANALYZE")


def fill_first_form(url: str, size: int, start: datetime, end: datetime) -> None:
    """`fill`, in the first form's tables (revision 0012): the item as sent, a row per
    prediction and metadata field."""
    low, span = to_micros(start), to_micros(end) - to_micros(start)
    with psycopg.connect(url, autocommit=True) as conn:
        _workspace(conn)
        step = 1_000_000
        for first in range(0, size, step):
            last = min(size, first + step) - 1
            conn.execute(
                f"""INSERT INTO inferences (workspace_id, inference_id, model_id, ts,
                received_at, inference_time, task, prediction_count, item, time_bin)
                SELECT 1, 'inference-' || g, 1, {low} + (g::numeric * {span} / {size})::bigint,
                    {low} + (g::numeric * {span} / {size})::bigint, 0.02, 'object-detection', 1,
                    '{{"inference_id": "inference-' || g || '", "model_id": "parts/1", '
                    || '"predictions": [{{"class": "bolt", "confidence": 0.87, "x": 120.5, '
                    || '"y": 88.25, "width": 32, "height": 41}}], "inference_time": 0.02, '
                    || '"metadata": {{"line": "north"}}, "image": {{"width": 640}}}}', 10
                FROM generate_series({first}, {last}) g"""
            )
        conn.execute(
            """INSERT INTO predictions (workspace_id, inference_pk, idx, ts, class_name,
            class_id, confidence, x, y, width, height)
            SELECT workspace_id, id, 0, ts, 'bolt', 0, 0.87, 120.5, 88.25, 32, 41
            FROM inferences"""
        )
        conn.execute(
            """INSERT INTO inference_metadata (workspace_id, inference_pk, field, value, kind, ts)
            SELECT workspace_id, id, 'line', 'north', 's', ts FROM inferences"""
        )
        conn.execute("VACUUM ANALYZE")


def delete_as_before(url: str, cutoff: datetime) -> int:
    """Retention as it deleted rows before partitions: 2,000 inferences a transaction, their
    predictions and metadata first; how many inferences."""
    removed = 0
    with psycopg.connect(url) as conn:
        while True:
            with conn.transaction():
                pks = [
                    row[0]
                    for row in conn.execute(
                        "SELECT id FROM inferences WHERE workspace_id = 1 AND ts < %s LIMIT 2000",
                        (to_micros(cutoff),),
                    )
                ]
                if not pks:
                    return removed
                for table in ("predictions", "inference_metadata"):
                    conn.execute(
                        f"DELETE FROM {table} WHERE workspace_id = 1 AND inference_pk = ANY(%s)",
                        (pks,),
                    )
                conn.execute("DELETE FROM inferences WHERE id = ANY(%s)", (pks,))
            removed += len(pks)


def megabytes(url: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return float(row[0]) / 2**20


def lookups(url: str, width: timedelta, size: int) -> list[tuple[float, float]]:
    database = create_database(url)
    migrate.upgrade(database)
    start = FIRST_DAY
    end = start + timedelta(days=91)
    with database.write() as conn:
        partitions.ensure(conn, partitions.INFERENCE_TABLES, start, end, width)
    with database.read() as conn:
        count = len(partitions.partitions(conn, "inferences"))
    database.dispose()
    fill(url, size, start, end)
    rng = random.Random(7)
    day = to_micros(start + timedelta(days=45))
    with psycopg.connect(url) as pg:
        max_id = pg.execute("SELECT max(id) FROM inferences").fetchone()
        assert max_id is not None
        top = int(max_id[0])

        def by_id() -> None:
            found = pg.execute(
                "SELECT id, ts FROM inferences WHERE workspace_id = 1 AND inference_id = %s",
                (encode_id(f"inference-{rng.randrange(size)}"),),
            ).fetchall()
            assert len(found) == 1

        def key_range() -> None:
            first = rng.randrange(1, top - 500)
            found = pg.execute(
                "SELECT count(*) FROM inferences WHERE id BETWEEN %s AND %s",
                (first, first + 499),
            ).fetchone()
            assert found is not None
            assert found[0] == 500

        def one_day() -> None:
            found = pg.execute(
                "SELECT count(*) FROM inferences WHERE workspace_id = 1 AND ts >= %s AND ts < %s",
                (day, day + 86_400_000_000),
            ).fetchone()
            assert found is not None
            assert found[0] > 0

        figures = [_timed(call) for call in (by_id, key_range, one_day)]
    return [*figures, (float(count), 0.0)]


def _timed(call: Callable[[], None]) -> tuple[float, float]:
    for _ in range(10):  # prepared after five, as the server's statements are
        call()
    spent = []
    for _ in range(LOOKUPS):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    spent.sort()
    return statistics.median(spent), spent[int(len(spent) * 0.95) - 1]
