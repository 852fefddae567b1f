"""An alert rule's metric, hour by hour over the last day: what the rule would have seen."""

from datetime import datetime, timedelta

from visionwatch.alerts.measure import measure
from visionwatch.db.engine import Database
from visionwatch.store import alerts as store
from visionwatch.timeutil import HOUR, floor_to


def preview_points(
    database: Database, found: store.StoredRule, now: datetime
) -> list[dict[str, object]]:
    end = floor_to(now, HOUR)
    points: list[dict[str, object]] = []
    with database.read() as conn:
        for hours in range(23, -1, -1):
            moment = end - timedelta(hours=hours)
            measured = measure(conn, found.workspace_id, found.rule, moment)
            points.append({"t": moment, "value": measured.value})
    return points
