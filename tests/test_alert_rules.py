"""The pure parts of alerting: drift scores and the state machine."""

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from visionwatch.alert_rules import Measurement, Rule, RuleState, compared_value, step
from visionwatch.drift import js_distance, psi

counts = st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 1000), min_size=1)
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


@given(counts, counts)
def test_drift_scores_are_symmetric_where_they_should_be_and_bounded(
    p: dict[str, int], q: dict[str, int]
) -> None:
    score = js_distance(p, q)
    assert score is not None
    assert 0 <= score <= 1 + 1e-9
    assert math.isclose(score, js_distance(q, p) or 0.0, abs_tol=1e-9)
    index = psi(p, q)
    assert index is not None
    assert index >= -1e-12
    assert math.isclose(index, psi(q, p) or 0.0, rel_tol=1e-9, abs_tol=1e-12)


@given(counts, st.integers(1, 50))
def test_the_same_mix_at_any_scale_has_no_drift(p: dict[str, int], scale: int) -> None:
    scaled = {k: v * scale for k, v in p.items()}
    assert js_distance(p, scaled) == 0 or math.isclose(js_distance(p, scaled) or 0, 0, abs_tol=1e-7)
    assert math.isclose(psi(p, scaled) or 0.0, 0.0, abs_tol=1e-12)


def test_disjoint_mixes_are_far_apart() -> None:
    assert js_distance({"a": 10}, {"b": 10}) == 1.0
    assert (psi({"a": 10}, {"b": 10}) or 0) > 5
    assert psi({}, {"a": 1}) is None


def test_relative_conditions_compare_the_change_in_percent() -> None:
    drop = Rule("r", "avg_confidence", "drops_by", 20)
    assert compared_value(drop, 0.6, 0.8) == pytest.approx(25.0)
    assert compared_value(drop, 0.9, 0.8) == pytest.approx(-12.5)
    assert compared_value(drop, 0.5, None) is None
    rise = Rule("r", "p95_inference_time", "rises_by", 100)
    assert compared_value(rise, 0.2, 0.1) == pytest.approx(100.0)


def measured(value: float | None) -> Measurement:
    return Measurement(value, 10, None, value)


def test_the_state_machine() -> None:
    rule = Rule("r", "avg_confidence", "below", 0.5, pending_seconds=120, repeat_seconds=600)
    state = RuleState()
    seen = []
    for minute, value in [
        (0, 0.9),
        (1, 0.4),
        (2, 0.4),
        (3, 0.4),
        (9, 0.4),
        (14, 0.4),
        (15, 0.8),
        (16, 0.8),
        (17, None),
        (18, 0.9),
    ]:
        outcome = step(rule, state, measured(value), NOW + timedelta(minutes=minute))
        state = outcome.state
        seen.append((minute, state.state, outcome.notify))
    assert seen == [
        (0, "ok", None),
        (1, "pending", None),
        (2, "pending", None),
        (3, "firing", "firing"),  # pending for 120 s
        (9, "firing", None),
        (14, "firing", "repeat"),  # 600 s after the first notification
        (15, "resolved", "resolved"),
        (16, "resolved", None),
        (17, "no_data", None),
        (18, "ok", None),
    ]
