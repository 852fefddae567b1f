"""The server's logging: one configuration for our loggers and uvicorn's, to stderr, as text
or as one JSON object a line, with secrets redacted on the way out."""

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from visionwatch.config import Settings

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log collectors: time, level, logger, message, and the
    traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return orjson.dumps(entry).decode()


def secrets_of(settings: Settings) -> tuple[str, ...]:
    """Configured secrets that must never be written, wherever an error message puts them."""
    return tuple(secret for secret in (settings.smtp_password, settings.secret_key) if secret)


def logging_config(settings: Settings) -> dict[str, Any]:
    """For `logging.config.dictConfig` (uvicorn applies it when it starts). Redaction is a
    filter of the one handler, so every record written passes it, whichever logger made it."""
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {"()": "visionwatch.security.RedactSecrets", "secrets": secrets_of(settings)}
        },
        "formatters": {
            "text": {"format": TEXT},
            "json": {"()": "visionwatch.logs.JsonFormatter"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": settings.log_format,
                "filters": ["redact"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's loggers would otherwise keep handlers of their own, unredacted.
            name: {"handlers": [], "level": level, "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
