"""Migrations: up and down on both databases, the schema they build matches the code's, and a
database made at the first revision upgrades with its data intact."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from tests.conftest import auth
from tests.support.settled import SettledClient
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db import migrate
from visionwatch.db.engine import create_database
from visionwatch.db.schema import metadata
from visionwatch.store import accounts


def test_migrated_schema_matches_the_code(database_url: str) -> None:
    database = create_database(database_url)
    try:
        migrate.upgrade(database)
        assert migrate.current_revision(database) == migrate.head_revision()
        with database.reader.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        database.dispose()


def test_down_to_nothing_and_up_again(database_url: str) -> None:
    database = create_database(database_url)
    try:
        migrate.upgrade(database)
        migrate.downgrade(database, "base")
        with database.reader.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(database)
        with database.reader.connect() as conn:
            assert "inferences" in inspect(conn).get_table_names()
    finally:
        database.dispose()


def test_first_revision_upgrades_with_its_data(database_url: str, settings: Settings) -> None:
    database = create_database(database_url)
    try:
        migrate.upgrade(database, "0001")
        accounts.create_workspace(database, "early")
        _, secret = accounts.create_key(database, "early")
        migrate.upgrade(database)
        with SettledClient(create_app(settings, database)) as client:
            item = {"inference_id": "after-upgrade", "model_id": "m/1"}
            response = client.post(
                "/api/v1/inferences", json={"inferences": [item]}, headers=auth(secret)
            )
            assert response.json() == {"accepted": 1, "duplicates": 0}
            stats = client.get("/api/v1/stats", headers=auth(secret)).json()
            assert stats["total_requests"]["current"] == 1
    finally:
        database.dispose()
