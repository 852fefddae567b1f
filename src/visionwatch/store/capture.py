"""Capture rules of a workspace, and the count of images kept per model and day for their caps."""

from datetime import datetime

import orjson
from sqlalchemy import Connection, delete, select

from visionwatch.capture import CaptureRule, effective_rule
from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database
from visionwatch.db.schema import capture_rules, image_counts
from visionwatch.db.types import EPOCH


def list_rules(db: Database, workspace_id: int) -> list[CaptureRule]:
    with db.read() as conn:
        return rules_of(conn, workspace_id)


def rules_of(conn: Connection, workspace_id: int) -> list[CaptureRule]:
    rows = conn.execute(
        select(capture_rules.c.rule)
        .where(capture_rules.c.workspace_id == workspace_id)
        .order_by(capture_rules.c.model)
    )
    return [CaptureRule.from_dict(orjson.loads(row.rule)) for row in rows]


def put_rule(db: Database, workspace_id: int, rule: CaptureRule, now: datetime) -> None:
    """Create or replace the rule of its model (or of the workspace)."""
    with db.write() as conn:
        statement = dialects.insert(db.dialect, capture_rules).values(
            workspace_id=workspace_id,
            model=rule.model,
            rule=orjson.dumps(rule.as_dict()).decode(),
            updated_at=now,
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["workspace_id", "model"],
                set_={"rule": statement.excluded.rule, "updated_at": statement.excluded.updated_at},
            )
        )


def delete_rule(db: Database, workspace_id: int, model: str) -> bool:
    with db.write() as conn:
        result = conn.execute(
            delete(capture_rules).where(
                capture_rules.c.workspace_id == workspace_id, capture_rules.c.model == model
            )
        )
        return result.rowcount == 1


def daily_cap(rules: list[CaptureRule], model: str) -> int | None:
    """The images a model may keep a day under its effective rule; None: no cap."""
    rule = effective_rule(rules, model)
    return rule.daily_cap if rule is not None and rule.enabled else None


def take_image_slot(
    conn: Connection,
    dialect: Dialect,
    workspace_id: int,
    model: str,
    cap: int | None,
    now: datetime,
) -> bool:
    """Count one more image kept for the model today; False (and nothing counted) past `cap`.

    One statement that adds only below the cap: two servers cannot both take the
    last slot.
    """
    if cap is not None and cap <= 0:
        return False
    day = (now - EPOCH).days
    statement = dialects.insert(dialect, image_counts).values(
        workspace_id=workspace_id, model=model, day=day, count=1
    )
    statement = statement.on_conflict_do_update(
        index_elements=["workspace_id", "model", "day"],
        set_={"count": image_counts.c.count + 1},
        where=None if cap is None else image_counts.c.count < cap,
    )
    return conn.execute(statement.returning(image_counts.c.count)).first() is not None
