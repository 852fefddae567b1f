"""Histogram bins and percentiles, checked against their definitions."""

import math

from hypothesis import given
from hypothesis import strategies as st

from visionwatch.histograms import (
    CONFIDENCE_BINS,
    TIME_BINS,
    confidence_bin,
    confidence_bin_value,
    percentile_bin,
    ranked_bins,
    time_bin,
    time_bin_lower_edge,
    time_bin_value,
)


@given(st.floats(0.0, 1.0))
def test_confidence_bins_are_hundredths(confidence: float) -> None:
    index = confidence_bin(confidence)
    assert 0 <= index < CONFIDENCE_BINS
    assert index / 100 <= confidence or math.isclose(index / 100, confidence)
    assert confidence < (index + 1) / 100 or index == CONFIDENCE_BINS - 1
    assert abs(confidence_bin_value(index) - confidence) <= 0.005 + 1e-12


@given(st.floats(1e-4, 99.9))
def test_time_bins_are_log_spaced(seconds: float) -> None:
    index = time_bin(seconds)
    assert 1 <= index < TIME_BINS - 1
    low, high = time_bin_lower_edge(index), time_bin_lower_edge(index + 1)
    assert low * (1 - 1e-12) <= seconds < high * (1 + 1e-12)
    assert math.isclose(high / low, 10 ** (1 / 20))
    assert low <= time_bin_value(index) <= high


def test_time_bins_at_the_ends() -> None:
    assert time_bin(0.0) == 0
    assert time_bin(0.00005) == 0
    assert time_bin(1e6) == TIME_BINS - 1


@given(st.lists(st.integers(0, 9), min_size=1, max_size=300), st.sampled_from([1, 50, 95, 99, 100]))
def test_percentile_bin_is_the_nearest_rank(values: list[int], percent: int) -> None:
    counts = [values.count(b) for b in range(10)]
    ordered = sorted(values)
    rank = math.ceil(len(ordered) * percent / 100 - 1e-9)
    assert percentile_bin(counts, percent) == ordered[max(rank, 1) - 1]


@given(
    st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=50), min_size=1, max_size=6),
    st.sampled_from([1, 50, 95, 99, 100]),
)
def test_ranked_bins_of_several_buckets_are_the_nearest_rank_of_all(
    buckets: list[list[int]], percent: int
) -> None:
    """A chart's interval of several minutes: each minute's bins, merged in the bins' order
    with a bin repeated, rank as the values of every minute together."""
    pairs = sorted((b, values.count(b)) for values in buckets for b in set(values))
    ordered = sorted(value for values in buckets for value in values)
    rank = math.ceil(len(ordered) * percent / 100 - 1e-9)
    assert ranked_bins(pairs, (percent,)) == {percent: ordered[max(rank, 1) - 1]}


def test_percentile_of_nothing() -> None:
    assert percentile_bin([0] * 10, 50) is None
    # 95% of 20 values is the 19th, not the 20th (no floating-point rounding up).
    assert percentile_bin([19, 1], 95) == 0
