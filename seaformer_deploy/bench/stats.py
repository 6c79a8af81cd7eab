"""Latency statistics: robust location, spread, a distribution-free CI of the median.

Timing samples are skewed (interrupts and cache misses only ever add time), so the median and
trimmed mean are the figures to compare; the mean, std and CV describe the noise. The 95 % CI of
the median uses order statistics and the binomial distribution, which assumes nothing about the
shape of the distribution. Whether a result is stable is judged in ``precision.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..export.records import Record


@dataclass
class Summary(Record):
    n: int
    min: float
    median: float
    mean: float
    trimmed_mean: float          # mean of the samples between the 10th and 90th percentiles
    p90: float
    p99: float
    std: float
    cv: float                    # std / mean
    iqr: float
    median_ci95: tuple[float, float]
    unstable: bool               # precision target missed, drift across rounds, or too few
    precision: float | None = None     # half-width of median_ci95 reached, / median
    target: float | None = None        # the precision asked for (0: none)
    trend: dict | None = None          # precision.Trend across rounds
    why: str | None = None             # why unstable, in words
    slow_mode: dict | None = None      # noise.SlowMode: share of iterations in a slow mode
    wander: dict | None = None         # noise.Wander: how far the speed moved during the run


def summarize(samples: np.ndarray) -> Summary:
    """The descriptive statistics; ``unstable`` only when too few samples to judge."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(x)
    if n == 0:
        raise ValueError("no samples")
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    cv = std / mean if mean > 0 else math.inf
    q1, q3 = np.percentile(x, [25, 75])
    return Summary(
        n=n, min=float(x[0]), median=float(np.median(x)), mean=mean,
        trimmed_mean=trimmed_mean(x, 0.1), p90=float(np.percentile(x, 90)),
        p99=float(np.percentile(x, 99)), std=std, cv=cv, iqr=float(q3 - q1),
        median_ci95=median_ci(x, 0.95), unstable=n < 6,
        why=f"only {n} samples, too few to judge" if n < 6 else None)


def trimmed_mean(sorted_x: np.ndarray, cut: float) -> float:
    """Mean after removing ``cut`` of the samples from each end (as scipy's trim_mean)."""
    k = int(cut * len(sorted_x))
    kept = sorted_x[k:len(sorted_x) - k] if len(sorted_x) > 2 * k else sorted_x
    return float(kept.mean())


def median_ci(sorted_x: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median: order statistics x_(lo), x_(hi) with
    P(lo <= B < hi) >= confidence for B ~ Binomial(n, 1/2)."""
    n = len(sorted_x)
    if n < 6:        # no pair of order statistics reaches 95 % below six samples
        return float(sorted_x[0]), float(sorted_x[-1])
    alpha = (1 - confidence) / 2
    cdf, lower = 0.0, 0
    while True:                       # largest rank with P(B < rank) <= alpha
        p = _binom_pmf(n, lower)
        if cdf + p > alpha:
            break
        cdf += p
        lower += 1
    lower = max(lower, 1)
    upper = n - lower + 1             # symmetric: the upper order statistic (1-based)
    return float(sorted_x[lower - 1]), float(sorted_x[upper - 1])


def _binom_pmf(n: int, k: int) -> float:
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    - n * math.log(2))
