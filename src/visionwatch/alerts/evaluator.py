"""Evaluate every alert rule over the rollups, keep the history, and deliver notifications.

One run: for each rule, measure its window, step its state machine, record a
changed state, and queue its notifications (within the rule's limits, unless
muted) in one transaction; then deliver what is due, each channel on its own
thread so that a slow webhook holds up nobody else. The server runs this as a
periodic job under a database lock: with several replicas, one evaluates.
"""

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Any

import orjson

from visionwatch.aggregator import settle
from visionwatch.alert_rules import Measurement, Outcome, step
from visionwatch.alerts import notify
from visionwatch.alerts.measure import measure, window
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.store import alerts as store
from visionwatch.store.alerts import StoredRule

log = logging.getLogger("visionwatch.alerts")
SENDERS = 8


class Evaluator:
    def __init__(
        self, database: Database, settings: Settings, clock: Callable[[], datetime]
    ) -> None:
        self.database = database
        self.settings = settings
        self.clock = clock

    def run_once(self) -> None:
        try:
            settle(self.database)  # judge every inference received until now
        except Exception:  # judged on what is aggregated: late by the freshness bound at most
            log.exception("aggregating before evaluating alerts failed")
        now = self.clock()
        with self.database.read() as conn:
            rules = store.every_rule(conn)
        for stored in rules:
            try:
                self.evaluate(stored, now)
            except Exception:  # one broken rule must not stop the others
                log.exception("evaluating alert rule %s failed", stored.id)
        self.deliver_due(now)

    def evaluate(self, stored: StoredRule, now: datetime) -> Outcome:
        with self.database.read() as conn:
            measured = measure(conn, stored.workspace_id, stored.rule, now)
        outcome = step(stored.rule, stored.state, measured, now)
        span = window(stored.rule, now)
        with self.database.write() as conn:
            store.save_state(conn, stored.id, outcome.state, measured.value, now)
            if outcome.changed:
                store.add_event(
                    conn, stored, stored.state.state, outcome.state.state, measured.value, span, now
                )
            if outcome.notify is not None:
                self._queue(conn, stored, outcome.notify, measured, span, now)
        return outcome

    def _queue(
        self,
        conn: Any,
        stored: StoredRule,
        kind: str,
        measured: Measurement,
        span: tuple[datetime, datetime],
        now: datetime,
    ) -> None:
        rule = stored.rule
        status = "pending"
        if (stored.muted_until is not None and stored.muted_until > now) or (
            store.events_sent_since(conn, stored.id, now - timedelta(hours=1)) >= rule.max_per_hour
            or store.events_sent_since(conn, stored.id, now - timedelta(days=1)) >= rule.max_per_day
        ):
            status = "suppressed"
        body = notify.payload(
            self.settings,
            kind=kind,
            rule_id=stored.id,
            rule=rule,
            workspace=stored.workspace,
            value=measured.value,
            baseline=measured.baseline,
            window=span,
            now=now,
        )
        for channel, target in targets(stored):
            store.enqueue(conn, stored, kind, channel, target, body, status, now)

    def send_test(self, stored: StoredRule, now: datetime) -> list[dict[str, Any]]:
        """Queue a test notification to each target of the rule and send it now."""
        start, end = window(stored.rule, now)
        body = notify.payload(
            self.settings,
            kind="test",
            rule_id=stored.id,
            rule=stored.rule,
            workspace=stored.workspace,
            value=None,
            baseline=None,
            window=(start, end),
            now=now,
        )
        with self.database.write() as conn:
            ids = [
                store.enqueue(conn, stored, "test", channel, target, body, "sent", now)
                for channel, target in targets(stored)
            ]
        rows = store.by_ids(self.database, ids)
        errors = self._deliver(rows)
        return [
            {"channel": row.channel, "target": row.target, "ok": error is None, "error": error}
            for row, error in zip(rows, errors, strict=True)
        ]

    def deliver_due(self, now: datetime) -> int:
        """Send every pending notification that is due; how many were sent."""
        rows = store.due(self.database, now)
        return sum(error is None for error in self._deliver(rows))

    def _deliver(self, rows: list[Any]) -> list[str | None]:
        """Send the rows' notifications side by side, record each outcome, and return them."""
        if not rows:
            return []
        with ThreadPoolExecutor(max_workers=min(SENDERS, len(rows))) as pool:
            futures = [pool.submit(self._send, row) for row in rows]
            wait(futures)
        errors = [future.result() for future in futures]
        for row, error in zip(rows, errors, strict=True):
            store.finish(self.database, row, error, self.clock())
        return errors

    def _send(self, row: Any) -> str | None:
        try:
            notify.deliver(self.settings, row.channel, row.target, orjson.loads(row.payload))
        except Exception as error:  # kept in the outbox and tried again later
            log.warning("notification %s to %s failed: %s", row.id, row.target, error)
            return f"{type(error).__name__}: {error}"
        return None


def targets(stored: StoredRule) -> list[tuple[str, str]]:
    """(channel, target) of every recipient and webhook of a rule."""
    found = [("email", address) for address in stored.rule.recipients]
    found += [(hook.kind, hook.url) for hook in stored.rule.webhooks]
    return found
