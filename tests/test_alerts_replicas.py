"""Three `visionwatch serve` processes on one PostgreSQL: one notification per event."""

import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import ScratchDatabases
from tests.support.receivers import smtp_server
from tests.support.server import serving
from tests.support.workspaces import auth, new_workspace

pytestmark = pytest.mark.slow
RULES = 30


@pytest.fixture
def postgres_url(postgres: ScratchDatabases) -> Iterator[str]:
    with postgres.database(migrated=True) as url:
        yield url


def test_three_replicas_send_one_email_per_event(postgres_url: str, tmp_path: Path) -> None:
    with smtp_server() as (port, mailbox), ExitStack() as servers:
        env = {
            "VISIONWATCH_DATABASE_URL": postgres_url,
            "VISIONWATCH_ALERT_INTERVAL_SECONDS": "1",
            "VISIONWATCH_SMTP_HOST": "127.0.0.1",
            "VISIONWATCH_SMTP_PORT": str(port),
            "VISIONWATCH_SMTP_SECURITY": "none",
        }
        key = new_workspace({**env, "VISIONWATCH_DATA_DIR": str(tmp_path)}, "acme")
        headers = auth(key)
        bases = [
            servers.enter_context(serving({**env, "VISIONWATCH_DATA_DIR": str(tmp_path / name)}))
            for name in ("a", "b", "c")
        ]
        now = datetime.now(UTC)
        items = [
            {
                "model_id": "cam/1",
                "timestamp": (now - timedelta(seconds=30 + 10 * n)).isoformat(),
                "predictions": [{"class": "car", "confidence": 0.2}],
            }
            for n in range(50)
        ]
        sent = httpx.post(
            f"{bases[0]}/api/v1/inferences", json={"inferences": items}, headers=headers
        )
        assert sent.status_code == 200
        # Many rules firing at once make each evaluation pass long enough that
        # unlocked servers would overlap and both send some of the same events.
        ids = []
        for n in range(RULES):
            rule = {
                "name": f"replicas {n}",
                "metric": "avg_confidence",
                "condition": "below",
                "threshold": 0.5,
                "model_id": "cam/1",
                "window_seconds": 1800,
                "recipients": ["ops@example.com"],
            }
            created = httpx.post(
                f"{bases[n % len(bases)]}/api/v1/alerts", json=rule, headers=headers
            )
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        assert mailbox.wait_for(RULES, timeout=60)
        time.sleep(5)  # several more evaluations by every server
        subjects = sorted(m["Subject"] for m in mailbox.messages)
        assert subjects == sorted(f"[visionwatch] FIRING: replicas {n}" for n in range(RULES))
        for base in bases:
            shown = httpx.get(f"{base}/api/v1/alerts", headers=headers).json()["alerts"]
            assert [a["state"] for a in shown] == ["firing"] * RULES
