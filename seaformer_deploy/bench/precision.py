"""When to stop measuring: the precision of the median, and drift across rounds.

A CV above a few percent is the normal shape of timings on a shared VM or a phone (a second,
slow mode from a sibling core or an interrupt storm); what decides whether a median can be
trusted is how well it is known. So an artifact is measured until the distribution-free 95 % CI
of its median (``stats.median_ci``) is within +-``precision`` of the median, or the time budget
is spent, as criterion.rs samples to a target and pyperf warns with a reason.

The binomial CI assumes the iterations are exchangeable. On a shared machine they are not: the
slow mode comes in episodes of a second or more, so neighbouring iterations are alike and the
CI of the pooled iterations is too narrow (measured here: +17 % for 70 rounds in a row). So the
precision reported is the wider of two CIs: the iterations' and the batch medians' (batch
means, as simulation output analysis does it: 20 batches of consecutive iterations, merged
into 10 longer ones while neighbouring batch medians are still correlated, since a batch must
outlast an episode; still correlated at 10, the range of the 10 is taken as the CI).

A slow drift (thermal throttling, a neighbour starting up) moves the median without widening
either CI. It shows as a monotone trend across time: the Mann-Kendall test on the medians of
(at most 12) consecutive stretches of rounds finds it (stretches, not rounds, so that episodes
do not pass for a trend), Sen's slope sizes it, and a trend both significant and larger than
the precision target makes the result unstable whatever its CI says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..export.records import Record
from .stats import Summary, median_ci, summarize

MIN_SAMPLES = 6          # below six samples no pair of order statistics covers 95 %
BATCHES = 20             # batch medians for the CI under autocorrelation
MIN_BATCH = 5            # iterations per batch at least, else the batch CI is not used
TREND_STRETCHES = 12     # the trend test's time resolution


@dataclass(frozen=True)
class StopRule:
    precision: float = 0.01      # target: 95 % CI of the median within +-1 % of it; 0: no target
    max_seconds: float = 240.0   # measuring budget of the whole bench (all blocks)
    drift_alpha: float = 0.01    # significance level of the trend test across rounds

    @property
    def active(self) -> bool:
        return self.precision > 0


def relative_half_width(samples: np.ndarray) -> float:
    """The larger side of the median's 95 % CI, as a fraction of the median (inf: too few):
    the wider of the iterations' CI and the batch medians' CI. ``samples`` in time order."""
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < MIN_SAMPLES:
        return math.inf
    median = float(np.median(x))
    if median <= 0:
        return math.inf
    width = _half_width(np.sort(x), median)
    if len(x) >= BATCHES * MIN_BATCH:
        width = max(width, _batch_half_width(x, median))
    return width / median


def _batch_half_width(x: np.ndarray, median: float) -> float:
    """The CI of the median from batch medians: 20 batches, or 10 when neighbouring batches'
    medians are correlated (lag-1 autocorrelation above its 5 % bound 2/sqrt(k)); correlated
    at 10 too, the 10 medians' whole range (the episodes are as long as a batch)."""
    for k in (BATCHES, BATCHES // 2):
        batches = np.asarray([np.median(b) for b in np.array_split(x, k)])
        if _lag1(batches) < 2 / math.sqrt(k):
            return _half_width(np.sort(batches), median)
    return max(median - batches.min(), batches.max() - median)


def _lag1(y: np.ndarray) -> float:
    d = y - y.mean()
    denominator = float((d * d).sum())
    return float((d[1:] * d[:-1]).sum()) / denominator if denominator > 0 else 0.0


def _half_width(sorted_x: np.ndarray, median: float) -> float:
    lo, hi = median_ci(sorted_x, 0.95)
    return max(median - lo, hi - median)


def reached(samples: np.ndarray, rule: StopRule) -> bool:
    return rule.active and relative_half_width(samples) <= rule.precision


def samples_needed(samples: np.ndarray, rule: StopRule) -> int:
    """How many more iterations should bring the CI to the target: the half-width shrinks as
    1/sqrt(n), so n * ((w / target)^2 - 1), at least a tenth of n (the estimate is noisy) and at
    most 3 n (a grossly wide CI is re-estimated after the next step instead)."""
    n = len(samples)
    if n < MIN_SAMPLES:
        return MIN_SAMPLES - n + MIN_SAMPLES
    width = relative_half_width(samples)
    if not rule.active or width <= rule.precision:
        return 0
    wanted = n * ((width / rule.precision) ** 2 - 1)
    return int(min(max(wanted, 0.1 * n, MIN_SAMPLES), 3 * n))


@dataclass
class Trend(Record):
    """Mann-Kendall test on the per-round medians, in time order."""

    rounds: int
    p_value: float
    change: float        # Sen's slope times the span, as a fraction of the median (+: slower)
    drifted: bool        # significant and larger than the precision target


def trend(round_medians: list[float], rule: StopRule) -> Trend:
    """Is there a monotone drift across rounds (in time order)? Tested on the medians of at
    most ``TREND_STRETCHES`` consecutive stretches of them; Sen's slope sizes it."""
    rounds = np.asarray(round_medians, dtype=np.float64)
    y = (np.asarray([np.median(s) for s in np.array_split(rounds, TREND_STRETCHES)])
         if len(rounds) > TREND_STRETCHES else rounds)
    k = len(y)
    if k < 4:                    # the test cannot reach 1 % below four rounds
        return Trend(len(rounds), 1.0, 0.0, False)
    i, j = np.triu_indices(k, 1)
    diffs = y[j] - y[i]
    s = float(np.sign(diffs).sum())
    _, counts = np.unique(y, return_counts=True)
    variance = (k * (k - 1) * (2 * k + 5)
                - float((counts * (counts - 1) * (2 * counts + 5)).sum())) / 18
    z = 0.0
    if s and variance > 0:                               # with the continuity correction
        z = (s - math.copysign(1, s)) / math.sqrt(variance)
    p = math.erfc(abs(z) / math.sqrt(2))                 # two-sided normal approximation
    slope = float(np.median(diffs / (j - i)))
    change = slope * (k - 1) / float(np.median(y)) if np.median(y) > 0 else 0.0
    floor = rule.precision if rule.active else 0.01
    return Trend(len(rounds), p, change, bool(p < rule.drift_alpha and abs(change) > floor))


def round_medians(samples: np.ndarray, blocks: np.ndarray, rounds: np.ndarray) -> list[float]:
    """Each (block, round)'s median, in time order (blocks run in order, rounds within them)."""
    samples, blocks, rounds = map(np.asarray, (samples, blocks, rounds))
    keys = sorted(set(zip(blocks.tolist(), rounds.tolist())))
    return [float(np.median(samples[(blocks == b) & (rounds == r)])) for b, r in keys]


def judge(samples: np.ndarray, blocks: np.ndarray, rounds: np.ndarray, rule: StopRule
          ) -> Summary:
    """The statistics of one artifact, with the precision its median reached, its trend across
    rounds and, when unstable, why: the target missed, a drift, or too few samples."""
    summary = summarize(samples)
    width = relative_half_width(samples)
    drift = trend(round_medians(samples, blocks, rounds), rule)
    summary.precision = None if math.isinf(width) else width
    summary.target = rule.precision
    summary.trend = drift.to_dict()
    reasons = [summary.why] if summary.why else []
    if rule.active and summary.precision is not None and width > rule.precision:
        reasons.append(f"median known to +-{100 * width:.1f} %, short of the "
                       f"+-{100 * rule.precision:g} % target")
    if drift.drifted:
        reasons.append(f"the rounds drifted {100 * drift.change:+.1f} % from first to last "
                       f"(trend p = {drift.p_value:.1g})")
    summary.unstable = bool(reasons)
    summary.why = "; ".join(reasons) or None
    return summary
