"""Latency histograms: fixed buckets about 15% wide, so per-day p95 comes from rollups
instead of a scan of raw events. The estimate interpolates inside the bucket that holds
the 95th percentile: its error is at most the bucket's width (about 15%)."""

from __future__ import annotations

from bisect import bisect_left

BOUNDS_MS: tuple[int, ...] = tuple(
    sorted({max(1, round(1.15**i)) for i in range(0, 84)} | {120_000})
)  # upper bounds; a last open bucket catches anything slower
BUCKETS = len(BOUNDS_MS) + 1


def bucket_of(latency_ms: int) -> int:
    return bisect_left(BOUNDS_MS, latency_ms)


def add_into(target: list[int], other: list[int]) -> list[int]:
    if len(target) < len(other):
        target.extend([0] * (len(other) - len(target)))
    for i, n in enumerate(other):
        target[i] += n
    return target


def percentile(hist: list[int], q: float) -> float | None:
    """The q-th percentile (0 < q <= 1) of the latencies counted in `hist`, or None if empty."""
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        if n and seen + n >= rank:
            lower = BOUNDS_MS[i - 1] if i > 0 else 0
            upper = BOUNDS_MS[i] if i < len(BOUNDS_MS) else BOUNDS_MS[-1]
            return round(lower + (upper - lower) * (rank - seen) / n, 1)
        seen += n
    return float(BOUNDS_MS[-1])
