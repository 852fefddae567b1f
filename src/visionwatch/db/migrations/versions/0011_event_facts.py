"""Vision events' facts for filters and realised precision: their eventData fields, their
detected classes, operators' verdicts on them; and each workspace's own lookback.

Events already stored are read once to fill the new tables, as the store derives them on
write (visionwatch.event_facts, copied here as it is today: a migration must not change
when later code does), so old and new events filter alike.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections import Counter
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

from visionwatch.db.types import BigId, Timestamp

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("event_lookback_days", sa.Integer))
    data = op.create_table(
        "event_data_fields",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("event_pk", BigId, sa.ForeignKey("vision_events.id"), nullable=False),
        sa.Column("field", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("text_value", sa.Text),
        sa.Column("number_value", sa.Float),
        sa.PrimaryKeyConstraint("event_pk", "field"),
    )
    classes = op.create_table(
        "event_classes",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("event_pk", BigId, sa.ForeignKey("vision_events.id"), nullable=False),
        sa.Column("class_name", sa.String(256), nullable=False),
        sa.Column("confidence", sa.Float),
        sa.PrimaryKeyConstraint("event_pk", "class_name"),
    )
    verdicts = op.create_table(
        "event_verdicts",
        sa.Column("workspace_id", sa.Integer, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("use_case_id", sa.Integer, sa.ForeignKey("use_cases.id"), nullable=False),
        sa.Column("feedback_event_id", sa.String(256), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("device", sa.String(256)),
        sa.Column("workflow", sa.String(256)),
        sa.Column("class_name", sa.String(256)),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("given_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "event_id"),
    )
    op.create_index(
        "ix_event_verdicts_use_case_ts", "event_verdicts", ["workspace_id", "use_case_id", "ts"]
    )
    _fill(data, classes, verdicts)


def _fill(data: sa.Table, classes: sa.Table, verdicts: sa.Table) -> None:
    events = sa.table(
        "vision_events",
        sa.column("id", BigId),
        sa.column("workspace_id", sa.Integer),
        sa.column("use_case_id", sa.Integer),
        sa.column("event_id", sa.String),
        sa.column("ts", Timestamp),
        sa.column("device", sa.String),
        sa.column("workflow", sa.String),
        sa.column("event", sa.Text),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(events).order_by(events.c.ts, events.c.id)).all()
    judged: dict[tuple[int, str], dict[str, Any]] = {}
    about: dict[tuple[int, str], dict[str, Any]] = {}
    for row in rows:
        sent = orjson.loads(row.event)
        fields = [
            {"workspace_id": row.workspace_id, "event_pk": row.id, "field": name, **_typed(value)}
            for name, value in _data_fields(sent).items()
        ]
        if fields:
            conn.execute(data.insert(), fields)
        best, top = _detected(sent)
        if best:
            conn.execute(
                classes.insert(),
                [
                    {
                        "workspace_id": row.workspace_id,
                        "event_pk": row.id,
                        "class_name": name,
                        "confidence": confidence,
                    }
                    for name, confidence in best.items()
                ],
            )
        about[(row.workspace_id, row.event_id)] = {
            "device": row.device,
            "workflow": row.workflow,
            "class_name": top,
            "ts": row.ts,
        }
        verdict = _given_verdict(sent)
        if verdict is not None:  # in time order: the newest verdict is the one that stays
            related, given = verdict
            judged[(row.workspace_id, related)] = {
                "workspace_id": row.workspace_id,
                "event_id": related,
                "use_case_id": row.use_case_id,
                "feedback_event_id": row.event_id,
                "verdict": given,
                "device": None,
                "workflow": None,
                "class_name": None,
                "ts": row.ts,
                "given_at": row.ts,
            }
    for key, values in judged.items():
        values.update(about.get(key, {}))
    if judged:
        conn.execute(verdicts.insert(), list(judged.values()))


def _detected(event: dict[str, Any]) -> tuple[dict[str, float | None], str | None]:
    """Each detected class's highest confidence, and the class predicted most often."""
    best: dict[str, float | None] = {}
    counts: Counter[str] = Counter()
    images = event.get("images")
    for image in images if isinstance(images, list) else ():
        if not isinstance(image, dict):
            continue
        for kind in ("objectDetections", "classifications", "instanceSegmentations", "keypoints"):
            predictions = image.get(kind)
            for prediction in predictions if isinstance(predictions, list) else ():
                name = prediction.get("class") if isinstance(prediction, dict) else None
                if not isinstance(name, str) or not name or len(name) > 256:
                    continue
                counts[name] += 1
                confidence = prediction.get("confidence")
                if isinstance(confidence, bool) or not isinstance(confidence, int | float):
                    best.setdefault(name, None)
                    continue
                known = best.get(name)
                best[name] = float(confidence) if known is None else max(known, confidence)
    top = min(counts, key=lambda name: (-counts[name], name)) if counts else None
    return best, top


def _data_fields(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("eventData")
    if not isinstance(data, dict):
        return {}
    return {
        name: value
        for name, value in data.items()
        if isinstance(name, str)
        and 0 < len(name) <= 100
        and isinstance(value, str | bool | int | float)
        and not (isinstance(value, str) and len(value) > 1000)
    }


def _given_verdict(event: dict[str, Any]) -> tuple[str, str] | None:
    data = event.get("eventData")
    if event.get("eventType") != "operator_feedback" or not isinstance(data, dict):
        return None
    related, feedback = data.get("relatedEventId"), data.get("feedback")
    if not isinstance(related, str) or not related:
        return None
    if feedback not in ("correct", "incorrect", "inconclusive"):
        return None
    return related, feedback


def _typed(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"kind": "boolean", "text_value": "true" if value else "false", "number_value": None}
    if isinstance(value, int | float):
        return {"kind": "number", "text_value": repr(float(value)), "number_value": float(value)}
    return {"kind": "string", "text_value": value, "number_value": None}


def downgrade() -> None:
    op.drop_index("ix_event_verdicts_use_case_ts", table_name="event_verdicts")
    op.drop_table("event_verdicts")
    op.drop_table("event_classes")
    op.drop_table("event_data_fields")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("event_lookback_days")
