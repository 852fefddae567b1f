"""Alert rules, their states and history, and the notification outbox."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, select, update

from visionwatch.alert_rules import Rule, RuleState
from visionwatch.db.engine import Database
from visionwatch.db.schema import alert_events, alert_rules, alert_states, notifications, workspaces


@dataclass(frozen=True, slots=True)
class StoredRule:
    id: int
    workspace_id: int
    workspace: str
    rule: Rule
    muted_until: datetime | None
    state: RuleState
    last_value: float | None
    evaluated_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.rule.as_dict(),
            "state": self.state.state,
            "state_since": self.state.since,
            "last_value": self.last_value,
            "evaluated_at": self.evaluated_at,
            "muted_until": self.muted_until,
        }


def _query() -> Any:
    return select(
        alert_rules,
        workspaces.c.name.label("workspace"),
        alert_states.c.state,
        alert_states.c.since,
        alert_states.c.pending_since,
        alert_states.c.last_notified,
        alert_states.c.last_value,
        alert_states.c.evaluated_at,
    ).select_from(
        alert_rules.join(workspaces, workspaces.c.id == alert_rules.c.workspace_id).outerjoin(
            alert_states, alert_states.c.rule_id == alert_rules.c.id
        )
    )


def _stored(row: Any) -> StoredRule:
    return StoredRule(
        id=row.id,
        workspace_id=row.workspace_id,
        workspace=row.workspace,
        rule=Rule.from_dict(orjson.loads(row.definition)),
        muted_until=row.muted_until,
        state=RuleState(row.state or "ok", row.since, row.pending_since, row.last_notified),
        last_value=row.last_value,
        evaluated_at=row.evaluated_at,
    )


def create_rule(db: Database, workspace_id: int, rule: Rule, now: datetime) -> int:
    with db.write() as conn:
        rule_id = conn.execute(
            alert_rules.insert()
            .values(
                workspace_id=workspace_id,
                definition=orjson.dumps(rule.as_dict()).decode(),
                created_at=now,
                updated_at=now,
            )
            .returning(alert_rules.c.id)
        ).scalar_one()
        conn.execute(alert_states.insert().values(rule_id=rule_id, state="ok", since=now))
    return int(rule_id)


def replace_rule(db: Database, workspace_id: int, rule_id: int, rule: Rule, now: datetime) -> bool:
    """Replace a rule's definition; its state starts again from ok."""
    with db.write() as conn:
        result = conn.execute(
            update(alert_rules)
            .where(alert_rules.c.workspace_id == workspace_id, alert_rules.c.id == rule_id)
            .values(definition=orjson.dumps(rule.as_dict()).decode(), updated_at=now)
        )
        if result.rowcount != 1:
            return False
        conn.execute(
            update(alert_states)
            .where(alert_states.c.rule_id == rule_id)
            .values(state="ok", since=now, pending_since=None)
        )
    return True


def delete_rule(db: Database, workspace_id: int, rule_id: int) -> bool:
    with db.write() as conn:
        if get_rule_in(conn, workspace_id, rule_id) is None:
            return False
        for table in (notifications, alert_events, alert_states):
            conn.execute(delete(table).where(table.c.rule_id == rule_id))
        conn.execute(delete(alert_rules).where(alert_rules.c.id == rule_id))
    return True


def get_rule(db: Database, workspace_id: int, rule_id: int) -> StoredRule | None:
    with db.read() as conn:
        return get_rule_in(conn, workspace_id, rule_id)


def get_rule_in(conn: Connection, workspace_id: int, rule_id: int) -> StoredRule | None:
    row = conn.execute(
        _query().where(alert_rules.c.workspace_id == workspace_id, alert_rules.c.id == rule_id)
    ).one_or_none()
    return None if row is None else _stored(row)


def list_rules(db: Database, workspace_id: int) -> list[StoredRule]:
    with db.read() as conn:
        rows = conn.execute(
            _query().where(alert_rules.c.workspace_id == workspace_id).order_by(alert_rules.c.id)
        ).all()
    return [_stored(row) for row in rows]


def every_rule(conn: Connection) -> list[StoredRule]:
    return [_stored(row) for row in conn.execute(_query().order_by(alert_rules.c.id)).all()]


def mute(db: Database, workspace_id: int, rule_id: int, until: datetime | None) -> bool:
    with db.write() as conn:
        result = conn.execute(
            update(alert_rules)
            .where(alert_rules.c.workspace_id == workspace_id, alert_rules.c.id == rule_id)
            .values(muted_until=until)
        )
        return result.rowcount == 1


def save_state(
    conn: Connection, rule_id: int, state: RuleState, value: float | None, now: datetime
) -> None:
    conn.execute(
        update(alert_states)
        .where(alert_states.c.rule_id == rule_id)
        .values(
            state=state.state,
            since=state.since,
            pending_since=state.pending_since,
            last_notified=state.last_notified,
            last_value=value,
            evaluated_at=now,
        )
    )


def add_event(
    conn: Connection,
    stored: StoredRule,
    before: str,
    after: str,
    value: float | None,
    window: tuple[datetime, datetime],
    now: datetime,
) -> None:
    conn.execute(
        alert_events.insert().values(
            workspace_id=stored.workspace_id,
            rule_id=stored.id,
            at=now,
            from_state=before,
            to_state=after,
            value=value,
            window_start=window[0],
            window_end=window[1],
        )
    )


def history(db: Database, workspace_id: int, rule_id: int, limit: int = 200) -> list[Any]:
    with db.read() as conn:
        return list(
            conn.execute(
                select(alert_events)
                .where(
                    alert_events.c.workspace_id == workspace_id, alert_events.c.rule_id == rule_id
                )
                .order_by(alert_events.c.at.desc(), alert_events.c.id.desc())
                .limit(limit)
            ).all()
        )


def events_sent_since(conn: Connection, rule_id: int, since: datetime) -> int:
    """Notification events (not test ones) of a rule queued or sent since `since`."""
    return int(
        conn.execute(
            select(func.count(func.distinct(notifications.c.created_at))).where(
                notifications.c.rule_id == rule_id,
                notifications.c.kind != "test",
                notifications.c.status.in_(("pending", "sent", "failed")),
                notifications.c.created_at >= since,
            )
        ).scalar_one()
    )


def enqueue(
    conn: Connection,
    stored: StoredRule,
    kind: str,
    channel: str,
    target: str,
    payload: dict[str, Any],
    status: str,
    now: datetime,
) -> int:
    return int(
        conn.execute(
            notifications.insert()
            .values(
                workspace_id=stored.workspace_id,
                rule_id=stored.id,
                kind=kind,
                channel=channel,
                target=target,
                payload=orjson.dumps(payload).decode(),
                status=status,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            .returning(notifications.c.id)
        ).scalar_one()
    )


def due(db: Database, now: datetime, limit: int = 100) -> list[Any]:
    with db.read() as conn:
        return list(
            conn.execute(
                select(notifications)
                .where(notifications.c.status == "pending", notifications.c.next_attempt_at <= now)
                .order_by(notifications.c.id)
                .limit(limit)
            ).all()
        )


def by_ids(db: Database, ids: list[int]) -> list[Any]:
    with db.read() as conn:
        return list(
            conn.execute(
                select(notifications)
                .where(notifications.c.id.in_(ids))
                .order_by(notifications.c.id)
            ).all()
        )


MAX_ATTEMPTS = 8


def finish(db: Database, row: Any, error: str | None, now: datetime) -> None:
    """Record a delivery: sent, or failed and tried again later (with backoff), or given up."""
    if error is None:
        values: dict[str, Any] = {"status": "sent", "sent_at": now, "attempts": row.attempts + 1}
    else:
        attempts = row.attempts + 1
        backoff = timedelta(seconds=min(30 * 2 ** (attempts - 1), 3600))
        values = {
            # A test is answered at once, never tried again.
            "status": "pending" if attempts < MAX_ATTEMPTS and row.kind != "test" else "failed",
            "attempts": attempts,
            "next_attempt_at": now + backoff,
            "last_error": error[:2000],
        }
    with db.write() as conn:
        conn.execute(update(notifications).where(notifications.c.id == row.id).values(**values))


def outbox(db: Database, workspace_id: int, rule_id: int, limit: int = 100) -> list[Any]:
    with db.read() as conn:
        return list(
            conn.execute(
                select(notifications)
                .where(
                    notifications.c.workspace_id == workspace_id, notifications.c.rule_id == rule_id
                )
                .order_by(notifications.c.id.desc())
                .limit(limit)
            ).all()
        )
