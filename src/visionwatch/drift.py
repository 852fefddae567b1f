"""Distribution drift of one side against a baseline: PSI and Jensen-Shannon distance. Pure.

Alert rules compare a window with the one before it; the comparison page compares two
versions or two periods. Both read drift here, so a score means the same on both.
"""

import math
from collections.abc import Mapping
from typing import Any

from visionwatch.histograms import CONFIDENCE_BINS

# Empty bins get this share, so that a class absent from one side costs a finite amount.
EPSILON = 1e-4
# Confidence drift compares 10 bins of 0.1: finer bins are mostly noise in a window.
CONFIDENCE_DRIFT_BINS = 10


def coarse_confidence(bins: Mapping[int, int]) -> dict[int, int]:
    """Counts per confidence histogram bin, summed into CONFIDENCE_DRIFT_BINS bins."""
    width = CONFIDENCE_BINS // CONFIDENCE_DRIFT_BINS
    coarse: dict[int, int] = {}
    for index, count in bins.items():
        coarse[index // width] = coarse.get(index // width, 0) + count
    return coarse


def _shares(counts: Mapping[Any, float], keys: list[Any]) -> list[float]:
    total = sum(counts.get(k, 0) for k in keys)
    if total <= 0:
        return [1.0 / len(keys)] * len(keys)
    return [max(counts.get(k, 0) / total, EPSILON) for k in keys]


def psi(current: Mapping[Any, float], baseline: Mapping[Any, float]) -> float | None:
    """Population stability index of `current` against `baseline` (counts by bin or class).

    0 for the same distribution; above 0.2 is commonly read as a real shift.
    None when either side is empty.
    """
    keys = sorted(set(current) | set(baseline), key=str)
    if not keys or not sum(current.values()) or not sum(baseline.values()):
        return None
    p, q = _shares(current, keys), _shares(baseline, keys)
    return sum((a - b) * math.log(a / b) for a, b in zip(p, q, strict=True))


def js_distance(current: Mapping[Any, float], baseline: Mapping[Any, float]) -> float | None:
    """Jensen-Shannon distance (base 2): 0 for the same distribution, 1 for disjoint ones."""
    keys = sorted(set(current) | set(baseline), key=str)
    total_p, total_q = sum(current.values()), sum(baseline.values())
    if not keys or not total_p or not total_q:
        return None
    divergence = 0.0
    for key in keys:
        a, b = current.get(key, 0) / total_p, baseline.get(key, 0) / total_q
        m = (a + b) / 2
        if a:
            divergence += a / 2 * math.log2(a / m)
        if b:
            divergence += b / 2 * math.log2(b / m)
    return math.sqrt(max(divergence, 0.0))
