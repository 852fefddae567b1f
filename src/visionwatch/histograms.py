"""Fixed-bin histograms: confidences in 100 bins of 0.01, inference times in log-spaced bins.

Rollups keep one count per bin, so medians and percentiles read from them are
exact to a bin and merge across buckets by adding counts.
"""

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from itertools import accumulate

CONFIDENCE_BINS = 100

# Inference times: bin 0 holds [0, 0.1 ms), then 20 bins per decade up to
# 100 s (each about 12% wide), and the last bin holds everything slower.
TIME_FLOOR_SECONDS = 1e-4
TIME_BINS_PER_DECADE = 20
TIME_DECADES = 6
TIME_BINS = TIME_BINS_PER_DECADE * TIME_DECADES + 2


def confidence_bin(confidence: float) -> int:
    return min(int(confidence * CONFIDENCE_BINS), CONFIDENCE_BINS - 1)


def confidence_bin_value(index: int) -> float:
    """The middle of a confidence bin, the value reported for it."""
    return round((index + 0.5) / CONFIDENCE_BINS, 4)


def time_bin(seconds: float) -> int:
    if seconds < TIME_FLOOR_SECONDS:
        return 0
    position = math.log10(seconds / TIME_FLOOR_SECONDS) * TIME_BINS_PER_DECADE
    return min(int(position) + 1, TIME_BINS - 1)


def time_bin_lower_edge(index: int) -> float:
    if index == 0:
        return 0.0
    return TIME_FLOOR_SECONDS * 10 ** ((index - 1) / TIME_BINS_PER_DECADE)


def time_bin_value(index: int) -> float:
    """The geometric middle of a time bin (the lower edge for the open-ended last bin)."""
    if index == 0:
        return TIME_FLOOR_SECONDS / 2
    if index == TIME_BINS - 1:
        return time_bin_lower_edge(index)
    return TIME_FLOOR_SECONDS * 10 ** ((index - 0.5) / TIME_BINS_PER_DECADE)


def percentile_bin(counts: Mapping[int, int] | Sequence[int], percent: int) -> int | None:
    """The bin holding the nearest-rank percentile (rank ceil(percent/100 * n)); None if empty.

    `counts` maps bin to count (or lists counts by bin).
    """
    by_bin = counts if isinstance(counts, Mapping) else dict(enumerate(counts))
    return percentile_bins(by_bin, (percent,)).get(percent)


def percentile_bins(counts: Mapping[int, int], percents: tuple[int, ...]) -> dict[int, int]:
    """The bin of each nearest-rank percentile of `percents`, in one walk over the bins;
    empty when the histogram is."""
    return ranked_bins(sorted(counts.items()), percents)


def ranked_bins(pairs: Sequence[tuple[int, int]], percents: tuple[int, ...]) -> dict[int, int]:
    """`percentile_bins` of (bin, count) pairs in the bins' order; a bin may come more than
    once (its counts of several buckets)."""
    at = ranked_positions([count for _, count in pairs], percents)
    return {percent: pairs[position][0] for percent, position in at.items()}


def ranked_positions(counts: Sequence[int], percents: tuple[int, ...]) -> dict[int, int]:
    """Where in `counts` (a histogram's counts in its bins' order) each nearest-rank
    percentile falls; empty when they add up to nothing. Integer arithmetic, so that 95% of
    20 is rank 19, not 20 by rounding error. The running counts never fall, so a rank is
    found by bisection, at the first position whose count reaches it: never a bin of no
    count."""
    running = list(accumulate(counts))
    total = running[-1] if running else 0
    if total <= 0:
        return {}
    return {
        percent: bisect_left(running, max(1, (percent * total + 99) // 100)) for percent in percents
    }
