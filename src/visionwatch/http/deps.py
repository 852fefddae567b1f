"""Dependencies every route may take: the database, the settings, and the app's clock."""

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from visionwatch.config import Settings
from visionwatch.db.engine import Database


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def clock_of(request: Request) -> datetime:
    """Now, by the app's clock (tests move it; see docs/architecture.md, "Clocks")."""
    now: datetime = request.app.state.clock()
    return now


DatabaseDep = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
# Now, by the app's clock, for a route that needs it once.
NowDep = Annotated[datetime, Depends(clock_of)]
