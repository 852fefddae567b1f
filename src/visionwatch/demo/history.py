"""The demo's past: the fleet's history sent through the SDK, and the alert rules replayed over it.

The history goes through the same SDK and API as any client's inferences (not
into the database), with ids made from the seed, so that sending it twice
stores it once. The alert rules are then evaluated at every step of that past,
as the server would have done had it been running, so that their history shows
when each incident fired and resolved.
"""

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from visionwatch.aggregator import settle
from visionwatch.alerts.evaluator import Evaluator
from visionwatch.client import Client
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.demo.fleet import Fleet
from visionwatch.store import alerts as alert_store

IN_FLIGHT = 20_000  # logged but not yet acknowledged: the SDK's queue holds 100,000
REPLAY_STEP = timedelta(minutes=30)


def backfill(
    client: Client,
    fleet: Fleet,
    start: datetime,
    end: datetime,
    seed: int,
    progress: Callable[[int, int], None],
) -> int:
    """Send the fleet's inferences from `start` to `end`; `progress(sent, total)` as they land."""
    schedule = fleet.schedule(start, end)
    total = len(schedule)
    for number, (at, device) in enumerate(schedule):
        body, metadata = fleet.inference(device, at)
        client.log(
            fleet.model_id(device, at),
            body,
            metadata=metadata,
            timestamp=at,
            device_id=device.name,
            inference_id=f"demo-{seed:x}-{number:x}",
        )
        if number % 1000 == 999:
            _wait_for(client, number + 1 - IN_FLIGHT, total, progress)
    _wait_for(client, total, total, progress)
    return total


def _wait_for(client: Client, sent: int, total: int, progress: Callable[[int, int], None]) -> None:
    """Hold the sender's backlog under IN_FLIGHT (nothing dropped), reporting as it drains."""
    while True:
        stats = client.stats
        progress(stats.sent, total)
        if stats.failed:
            raise RuntimeError(f"the server refused {stats.failed} of the demo's inferences")
        if stats.sent >= sent:
            return
        time.sleep(0.05)


def replay_alerts(database: Database, settings: Settings, start: datetime, end: datetime) -> int:
    """Evaluate every rule at each step from `start` to `end`; the number of state changes.

    Nothing is sent: the demo's rules have no recipients.
    """
    settle(database)  # the whole history in the rollups before it is judged
    evaluator = Evaluator(database, settings, clock=lambda: end)
    changes = 0
    moment = start
    while moment <= end:
        with database.read() as conn:
            rules = alert_store.every_rule(conn)
        for stored in rules:
            changes += evaluator.evaluate(stored, moment).changed
        moment += REPLAY_STEP
    return changes
