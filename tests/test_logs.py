"""The server's log: secrets never written, whichever logger writes them; text or JSON lines."""

import io
import logging
import tempfile
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.postgres import free_port
from tests.support.server import cli, serving_process
from visionwatch.config import Settings
from visionwatch.logs import secrets_of
from visionwatch.security import RedactSecrets

WEBHOOK_TOKEN = "hook-token-5f2c9d"  # what a Slack webhook URL carries in its path
SMTP_PASSWORD = "smtp-pass-8e41a7"


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_failed_webhook_is_logged_without_its_secret(tmp_path: Path, log_format: str) -> None:
    env = {
        "VISIONWATCH_DATA_DIR": str(tmp_path),
        "VISIONWATCH_LOG_FORMAT": log_format,
        "VISIONWATCH_SMTP_HOST": "127.0.0.1",
        "VISIONWATCH_SMTP_PORT": str(free_port()),  # nobody listens: the email fails too
        "VISIONWATCH_SMTP_USER": "alerts",
        "VISIONWATCH_SMTP_PASSWORD": SMTP_PASSWORD,
    }
    assert cli(env, "workspaces", "create", "acme").returncode == 0
    secret = cli(env, "keys", "create", "acme").stdout.split()[-1]
    headers = {"Authorization": f"Bearer {secret}"}
    closed = free_port()
    hook = f"http://127.0.0.1:{closed}/services/T0/B0/{WEBHOOK_TOKEN}"
    rule = {
        "name": "low",
        "metric": "avg_confidence",
        "condition": "below",
        "threshold": 0.5,
        "recipients": ["ops@example.com"],
        "webhooks": [{"url": hook}],
    }
    with tempfile.TemporaryFile(mode="w+") as log:
        with serving_process(env, log_to=log) as (base, _):
            created = httpx.post(f"{base}/api/v1/alerts", json=rule, headers=headers)
            assert created.status_code == 201, created.text
            tested = httpx.post(
                f"{base}/api/v1/alerts/{created.json()['id']}/test", headers=headers, timeout=60
            )
            assert tested.status_code == 200
            assert [result["ok"] for result in tested.json()["results"]] == [False, False]
        log.seek(0)
        written = log.read()
    assert WEBHOOK_TOKEN not in written
    assert SMTP_PASSWORD not in written
    assert secret not in written
    lines = written.splitlines()
    failures = [line for line in lines if "failed" in line and "notification" in line]
    assert len(failures) == 2, written  # the webhook's and the email's, both logged
    assert any(f"http://127.0.0.1:{closed}/[redacted]" in line for line in failures)
    if log_format == "json":
        entries = [orjson.loads(line) for line in written.splitlines() if line.strip()]
        assert {"uvicorn.error", "visionwatch.alerts"} <= {entry["logger"] for entry in entries}
        assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)


def test_redaction_on_the_handler_covers_child_loggers_and_tracebacks() -> None:
    """A filter on a logger sees only that logger's own records; on the handler, every one."""
    settings = Settings(smtp_password=SMTP_PASSWORD, secret_key="k" * 40)
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.addFilter(RedactSecrets(secrets_of(settings)))
    parent = logging.getLogger("visionwatch")
    parent.addHandler(handler)
    child = logging.getLogger("visionwatch.alerts.evaluator")
    try:
        child.warning("to %s failed", f"https://hooks.slack.com/services/T1/B2/{WEBHOOK_TOKEN}")
        child.warning("connecting to %s", "postgresql://watch:db-pass-31@db.internal:5432/vw")
        child.warning("GET /api/v1/stats?api_key=vw_abcdef&start=1 answered")
        try:
            raise ConnectionError(f"login refused for password {SMTP_PASSWORD}")
        except ConnectionError:
            child.exception("sending failed")
    finally:
        parent.removeHandler(handler)
    text = written.getvalue()
    for secret in (WEBHOOK_TOKEN, "db-pass-31", "watch:", "vw_abcdef", SMTP_PASSWORD, "k" * 40):
        assert secret not in text
    assert "https://hooks.slack.com/[redacted]" in text
    assert "postgresql://db.internal:5432/[redacted]" in text
    assert "api_key=[redacted]&start=1" in text
    assert "ConnectionError: login refused for password [redacted]" in text
