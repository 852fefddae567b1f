"""Pages that read in one snapshot of the database (`Database.snapshot`)."""

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec

from starlette.responses import Response

from visionwatch.db.engine import Database

P = ParamSpec("P")


def one_snapshot(page: Callable[P, Response]) -> Callable[P, Response]:
    """Run a page (its `database` argument named) with every read in one transaction: its
    figures agree with each other, and it opens one connection, not one per read."""

    @wraps(page)  # FastAPI reads the page's own signature through __wrapped__
    def read_in_one(*args: P.args, **kwargs: P.kwargs) -> Response:
        database = kwargs["database"]
        assert isinstance(database, Database)
        with database.snapshot():
            return page(*args, **kwargs)

    return read_in_one
