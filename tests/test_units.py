"""Small pure pieces: time parsing, passwords, keys, model names."""

from datetime import UTC, datetime, timedelta

import pytest

from visionwatch import security
from visionwatch.alert_rules import Rule
from visionwatch.items import split_model_id
from visionwatch.timeutil import ceil_to, floor_to, parse_time
from visionwatch.web import rendering


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T10:00:00Z", datetime(2026, 11, 26, 10, tzinfo=UTC)),
        ("2026-11-26T10:00:00", datetime(2026, 11, 26, 10, tzinfo=UTC)),
        ("2026-11-26T11:30:00+01:30", datetime(2026, 11, 26, 10, tzinfo=UTC)),
        ("2026-11-26", datetime(2026, 11, 26, tzinfo=UTC)),
        ("1795687200", datetime(2026, 11, 26, 10, tzinfo=UTC)),
        (1795687200.5, datetime(2026, 11, 26, 10, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_times_parse(text: str | float, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("bad", ["", "soon", "1e999", float("nan"), True, 5, "3000-01-01"])
def test_bad_times_are_refused(bad: str | float) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the message varies by cause)
        parse_time(bad)


def test_floor_and_ceil() -> None:
    moment = datetime(2026, 11, 26, 10, 7, 30, tzinfo=UTC)
    minute = timedelta(minutes=1)
    assert floor_to(moment, minute) == datetime(2026, 11, 26, 10, 7, tzinfo=UTC)
    assert ceil_to(moment, minute) == datetime(2026, 11, 26, 10, 8, tzinfo=UTC)
    assert ceil_to(floor_to(moment, minute), minute) == floor_to(moment, minute)


def test_passwords_are_salted_and_checked() -> None:
    first = security.hash_password("correct horse")
    second = security.hash_password("correct horse")
    assert first != second
    assert first.startswith("scrypt$")
    assert security.verify_password("correct horse", first)
    assert not security.verify_password("correct horsE", first)
    assert not security.verify_password("x", "garbage")


def test_keys_are_random_and_hashed() -> None:
    keys = {security.new_api_key() for _ in range(100)}
    assert len(keys) == 100
    key = keys.pop()
    assert security.hash_api_key(key) != key
    assert len(security.hash_api_key(key)) == 64


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("vehicles/3", ("vehicles", "3")),
        ("org/vehicles/12", ("org/vehicles", "12")),
        ("yolov8n-640", (None, None)),
        ("vehicles/latest", (None, None)),
    ],
)
def test_model_names_split_into_project_and_version(
    name: str, parts: tuple[str | None, str | None]
) -> None:
    assert split_model_id(name) == parts


@pytest.mark.parametrize(
    ("metric", "value", "shown"),
    [
        ("device_silence", 45, "45 s"),
        ("device_silence", 900, "15 min"),
        ("device_silence", 121_200, "33.7 h"),
        ("device_silence", 3 * 86400, "3.0 days"),
        ("p95_inference_time", 0.0668, "66.8 ms"),
        ("avg_confidence", 0.8384, "83.8%"),
        ("request_count", 1234.0, "1,234"),
        ("class_drift_psi", 0.23456, "0.235"),
        ("avg_confidence", None, "\u2013"),
    ],
)
def test_alert_values_are_shown_in_their_unit(metric: str, value: float, shown: str) -> None:
    assert rendering.measured(value, metric) == shown


def test_a_rule_threshold_reads_as_a_sentence() -> None:
    silence = Rule("s", "device_silence", "above", 900, device="edge-1")
    drop = Rule("d", "avg_confidence", "drops_by", 20)
    low = Rule("l", "avg_confidence", "below", 0.7)
    assert rendering.threshold(silence) == "above 15 min"
    assert rendering.threshold(drop) == "drops by 20%"
    assert rendering.threshold(low) == "below 70.0%"
