"""Time parsing and bucket arithmetic, all in UTC."""

import math
from datetime import UTC, datetime, timedelta

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
RESOLUTION_STEPS = {"minute": MINUTE, "hour": HOUR, "day": DAY}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Outside these years a timestamp is a bug on the sender's side, not history.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value: str | int | float) -> datetime:
    """ISO 8601 (UTC when no offset is given) or Unix seconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 time or Unix seconds, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("expected a finite number of Unix seconds")
        if not EARLIEST.timestamp() <= value < LATEST.timestamp():
            raise ValueError("Unix seconds out of range (years 2000 to 2199)")
        return _EPOCH + timedelta(microseconds=round(value * 1_000_000))
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return parse_time(number)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time or Unix seconds: {value[:64]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    if not EARLIEST <= parsed < LATEST:
        raise ValueError("time out of range (years 2000 to 2199)")
    return parsed


def floor_to(moment: datetime, step: timedelta) -> datetime:
    return moment - (moment - _EPOCH) % step


def ceil_to(moment: datetime, step: timedelta) -> datetime:
    floored = floor_to(moment, step)
    return floored if floored == moment else floored + step


def isoformat(moment: datetime) -> str:
    """ISO 8601 with a Z, the form every API answer uses."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
