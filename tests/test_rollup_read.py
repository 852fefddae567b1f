"""Covering a period with aligned minute, hour and day buckets."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from visionwatch.store.rollup_read import cover

ORIGIN = datetime(2026, 11, 1, tzinfo=UTC)
STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


@given(
    st.integers(0, 6 * 1440), st.integers(1, 6 * 1440), st.sampled_from(["minute", "hour", "day"])
)
def test_segments_tile_the_period_with_aligned_buckets(
    start_minute: int, length: int, coarsest: str
) -> None:
    start = ORIGIN + timedelta(minutes=start_minute)
    end = start + timedelta(minutes=length)
    segments = cover(start, end, coarsest)
    assert segments[0][1] == start
    assert segments[-1][2] == end
    for (_, _, first_end), (_, second_start, _) in itertools.pairwise(segments):
        assert first_end == second_start
    allowed = list(STEP)[: list(STEP).index(coarsest) + 1]
    for resolution, seg_start, seg_end in segments:
        assert resolution in allowed
        step = STEP[resolution]
        assert (seg_start - ORIGIN) % step == timedelta(0)
        assert (seg_end - seg_start) % step == timedelta(0)
    # Coarse buckets are used wherever they fit: at most 2 partial runs per finer resolution.
    assert len(segments) <= 5


def test_a_week_reads_few_buckets() -> None:
    start = ORIGIN + timedelta(minutes=17)
    segments = cover(start, start + timedelta(days=7))
    buckets = sum((e - s) // STEP[r] for r, s, e in segments)
    assert buckets <= 6 + 1 + 23 + 23 + 43 + 17 + 1


def test_unaligned_periods_are_refused() -> None:
    with pytest.raises(ValueError, match="minute boundaries"):
        cover(ORIGIN + timedelta(seconds=1), ORIGIN + timedelta(hours=1))
