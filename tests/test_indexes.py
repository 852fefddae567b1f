"""Every index of an inference's tables is used by a query the product runs, on both
databases: the indexes listed in docs/architecture.md ("Indexes") are the database's, and
each one shows in the plan (EXPLAIN) of a statement that real traffic ran.

The statements are caught as the API runs them (ingest, a duplicate batch, the aggregator,
the inference table with each filter, an inference's page, images, metadata, retention),
then explained with their own parameters, after ANALYZE of traffic spread as a fleet's
(many models, devices, classes). PostgreSQL is also told not to scan tables whole: here
they are small, and a planner rightly scans a small table; the question is whether the
index serves the query, as it will when the table is large.
"""

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import event, inspect

from tests.support.settled import SettledClient
from tests.support.workspaces import auth
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.db.schema import RESOLUTIONS
from visionwatch.retention import prune
from visionwatch.timeutil import utcnow

# The tables of an inference and of its rollups, whose indexes this file holds to account.
TABLES = (
    "inferences",
    "labels",
    "metadata_fields",
    "rollup_queue",
    "rollup_floors",
    *(f"rollups_{resolution}" for resolution in RESOLUTIONS),
)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


@dataclass
class Caught:
    statement: str
    parameters: Any


def documented(dialect: str) -> set[tuple[str, str]]:
    """(table, index) pairs of the architecture notes' table of indexes for `dialect`: rows
    `| table | index | columns | sqlite, postgresql | the query |`."""
    text = DOCS.read_text()
    section = text.split("\n### Indexes\n", 1)[1].split("\n## ", 1)[0]
    found = set()
    for line in section.splitlines():
        cells = [cell.strip(" `") for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0] in TABLES and dialect in cells[3]:
            found.add((cells[0], cells[1]))
    return found


def stored_indexes(database: Database) -> set[tuple[str, str]]:
    """(table, index) of every index the database holds on TABLES, keys included."""
    found = set()
    with database.reader.connect() as conn:
        if database.dialect.value == "sqlite":
            rows = conn.exec_driver_sql(
                "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index'"
            ).all()
            found = {(t, n) for t, n in rows if t in TABLES}
            # A rowid table's integer key is the row's address, no index of its own.
            for table in TABLES:
                if inspect(conn).get_pk_constraint(table)["constrained_columns"] == ["id"]:
                    found.add((table, "rowid"))
            return found
        rows = conn.exec_driver_sql(
            """SELECT t.relname, i.relname FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = 'public' AND NOT t.relispartition"""
        ).all()
        return {(t, n) for t, n in rows if t in TABLES}


@pytest.fixture
def caught(database: Database) -> Iterator[list[Caught]]:
    found: list[Caught] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        found.append(Caught(statement, parameters))

    engines = {database.writer, database.reader}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", keep)
    yield found
    for engine in engines:
        event.remove(engine, "before_cursor_execute", keep)


def run_traffic(client: SettledClient, database: Database, key: str) -> None:
    """What users do to an inference's tables, once each."""
    headers = auth(key)
    now = utcnow()
    # Many models, devices, classes and fields, so that the planner's statistics say what
    # a fleet's would: a model or a device is a small part of a workspace's rows.
    sent = [
        {
            "inference_id": f"i-{n}",
            "model_id": f"m{n % 40}/1",
            "device_id": f"cam-{n % 41}",
            "timestamp": (now - timedelta(seconds=20 * n)).isoformat(),
            "predictions": [
                {"class": f"c{n % 30}", "confidence": 0.9, "x": 5, "y": 5, "width": 4, "height": 4}
            ],
            "metadata": {"site": f"s{n % 7}", f"f{n % 20}": "on"},
        }
        for n in range(2000)
    ]
    batches = [sent[at : at + 500] for at in range(0, len(sent), 500)]
    for batch in [*batches, [*sent[:5], {**sent[0], "inference_id": "i-new"}]]:
        response = client.post("/api/v1/inferences", json={"inferences": batch}, headers=headers)
        assert response.status_code == 200, response.text
    client.app.state.aggregator.drain()  # type: ignore[attr-defined]
    period = {"start": int((now - timedelta(days=1)).timestamp()), "end": int(now.timestamp())}
    for filters in (
        {},
        {"model_id": "m1/1"},
        {"device_id": "cam-2"},
        {"class": "c3"},
        {"metadata.site": "s1"},
        {"has_image": "true"},
    ):
        response = client.get("/api/v1/inferences", params={**period, **filters}, headers=headers)
        assert response.status_code == 200, response.text
    assert client.get("/api/v1/inferences/i-3", headers=headers).status_code == 200
    for inference_id in ("i-3", "i-39"):
        response = client.put(
            f"/api/v1/inferences/{inference_id}/image",
            content=png(),
            headers={**headers, "content-type": "image/png"},
        )
        assert response.status_code == 200, response.text
    assert client.get("/api/v1/stats", params=period, headers=headers).status_code == 200


def run_retention(client: SettledClient, database: Database) -> None:
    """Retention, past every week's partition on PostgreSQL, which it drops whole."""
    later = utcnow() + timedelta(days=16)
    prune(database, client.app.state.blobs, Settings(retention_days=1), later)  # type: ignore[attr-defined]


def png() -> bytes:
    found = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 30, 30)).save(found, format="PNG")
    return found.getvalue()


def explained(database: Database, caught: list[Caught]) -> dict[str, list[str]]:
    """Index name -> the statements whose plans use it."""
    uses: dict[str, list[str]] = {}
    sqlite = database.dialect.value == "sqlite"
    with database.writer.connect() as conn:
        conn.exec_driver_sql("ANALYZE")  # the statistics of what the traffic left
        parents: dict[str, str] = {}
        if not sqlite:
            conn.exec_driver_sql("SET enable_seqscan = off")
            # A partition's index is named by PostgreSQL; its parent index is the schema's.
            parents = dict(
                conn.exec_driver_sql(
                    """SELECT c.relname, p.relname FROM pg_inherits i
                    JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                    WHERE c.relkind = 'i'"""
                ).all()
            )
        for made in caught:  # the scratch tables statements read
            if made.statement.lstrip().upper().startswith("CREATE TEMP TABLE"):
                conn.exec_driver_sql(made.statement)
        for made in caught:
            head = made.statement.lstrip().split(None, 1)[0].upper()
            if head not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
                continue
            if re.search(r'"\w+_(?:p\d{8}|default)"', made.statement):
                continue  # a partition's upkeep, by its name: it may be dropped since
            parameters = made.parameters
            if isinstance(parameters, list):  # executemany: each row plans the same
                parameters = parameters[0]
            if sqlite:
                rows = conn.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {made.statement}", parameters
                ).all()
                plan = "\n".join(str(row[-1]) for row in rows)
                names = set(re.findall(r"USING (?:COVERING )?INDEX (\w+)", plan))
                if "USING INTEGER PRIMARY KEY" in plan or "USING ROWID SEARCH" in plan:
                    names.add("rowid")
            else:
                rows = conn.exec_driver_sql(
                    f"EXPLAIN (FORMAT JSON) {made.statement}", parameters
                ).all()
                plan = str(rows[0][0])
                names = set(re.findall(r"'Index Name': '(\w+)'", plan))
                names |= {
                    name
                    for listed in re.findall(r"'Conflict Arbiter Indexes': \[([^\]]*)\]", plan)
                    for name in re.findall(r"'(\w+)'", listed)
                }
            for name in names:
                uses.setdefault(parents.get(name, name), []).append(made.statement)
        conn.rollback()
    return uses


# Indexes whose work is not a plan's: a unique key's, which SQLite enforces (ON CONFLICT)
# without saying so in a plan, and the floors' (two rows, read whole: the key keeps each
# grain once).
ENFORCING = {
    "sqlite_autoindex_inferences_1",
    "sqlite_autoindex_labels_1",
    "sqlite_autoindex_rollup_floors_1",
    "pk_rollup_floors",
}


def test_every_index_of_an_inference_is_documented_and_used(
    settings: Settings, database: Database, caught: list[Caught], new_key: Any
) -> None:
    dialect = database.dialect.value
    stored = stored_indexes(database)
    assert stored == documented(dialect), f"docs/architecture.md lists {sorted(stored)}"
    with SettledClient(create_app(settings, database)) as client:
        run_traffic(client, database, new_key())
        uses = explained(database, list(caught))  # a copy: explaining runs statements too
        # Retention's statements apart: the others are explained on the rows it deletes.
        caught.clear()
        run_retention(client, database)
        for name, statements in explained(database, list(caught)).items():
            uses.setdefault(name, []).extend(statements)
    unused = {(table, name) for table, name in stored if name not in ENFORCING and name not in uses}
    assert unused == set(), f"indexes no query uses: {sorted(unused)}"


def test_the_resend_check_probes_inference_ids_whatever_the_planner_knows(
    settings: Settings, database: Database, caught: list[Caught], new_key: Any
) -> None:
    """The resend check looks each id up (the hash index) and never scans the batch's
    window of the key once a row, with or without statistics of the week and in a plan
    made for any parameters (psycopg prepares a statement run five times). Scanning was
    15x slower at 8,000 rows of one camera's week, and worse with every batch: the
    planner took the key for a week autovacuum had vacuumed but not analyzed (seen under
    `python -m benchmarks ingest --shape camera --db postgresql`; this test's small week
    does not bring that plan back by itself, so it holds the plans that can be made)."""
    if database.dialect.value == "sqlite":
        pytest.skip("SQLite's resend check is its unique key's ON CONFLICT")
    headers = auth(new_key())
    now = utcnow()
    with database.writer.connect() as conn:  # no statistics but what this test makes
        for (name,) in conn.exec_driver_sql(
            "SELECT relname FROM pg_class WHERE relname LIKE 'inferences_%%' AND relkind = 'r'"
        ).all():
            conn.exec_driver_sql(f'ALTER TABLE "{name}" SET (autovacuum_enabled = false)')
        conn.commit()
    with SettledClient(create_app(settings, database)) as client:
        for batch in range(6):
            items = [
                {
                    "inference_id": f"{batch}-{n}",
                    "model_id": "m/1",
                    "device_id": "cam",
                    "timestamp": (now - timedelta(seconds=batch * 5 + n / 100)).isoformat(),
                    "predictions": [{"class": "car", "confidence": 0.5}],
                }
                for n in range(500)
            ]
            response = client.post(
                "/api/v1/inferences", json={"inferences": items}, headers=headers
            )
            assert response.status_code == 200, response.text
    statements = list(caught)
    [insert] = [c for c in statements if c.statement.lstrip().startswith("INSERT INTO inferences")][
        -1:
    ]
    for analyzed in (False, True):
        with database.writer.connect() as conn:
            if analyzed:
                conn.exec_driver_sql("ANALYZE inferences")
            for made in statements:  # the scratch tables the statement reads
                if made.statement.lstrip().upper().startswith("CREATE TEMP TABLE"):
                    conn.exec_driver_sql(made.statement)
            conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            plan = str(
                conn.exec_driver_sql(
                    f"EXPLAIN (FORMAT JSON) {insert.statement}", insert.parameters
                ).all()[0][0]
            )
            conn.rollback()
        assert re.search(r"'Index Name': '\w*inference_id\w*'", plan), (analyzed, plan)
        assert not re.search(r"'Index Name': '\w*pkey'", plan), (analyzed, plan)
