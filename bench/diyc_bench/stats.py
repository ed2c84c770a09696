"""Summaries of latency samples: median, p95, max.

Medians and tails rather than means: a few slow outliers (a kernel RCU grace
period, a scheduler hiccup on a shared machine) would otherwise dominate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["Summary", "percentile", "summarize"]

_NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Summary:
    """One operation's latencies, in milliseconds."""

    count: int
    median_ms: float
    p95_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted values, interpolating linearly.

    Linear interpolation (numpy's default) keeps p95 meaningful for the
    small sample counts of the quick mode, where nearest-rank would simply
    return the maximum.
    """
    if not ordered:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(samples_ns: Sequence[int]) -> Summary:
    """Median, p95, max and mean of nanosecond samples, in milliseconds."""
    if not samples_ns:
        raise ValueError("no samples to summarize")
    ordered = sorted(s / _NS_PER_MS for s in samples_ns)
    return Summary(
        count=len(ordered),
        median_ms=percentile(ordered, 50),
        p95_ms=percentile(ordered, 95),
        max_ms=ordered[-1],
        mean_ms=sum(ordered) / len(ordered),
    )
