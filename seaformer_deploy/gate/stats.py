"""How much slower is B than A: a ratio, its confidence interval, and one-sided p-values.

Latencies compare as ratios, so everything is computed on log latencies and reported back as
ratios (candidate / baseline). Two designs:

* **paired** (interleaved A/B): one pair per timed round, each side's median in that round. The
  Wilcoxon signed-rank test gives the p-values; the Hodges-Lehmann estimate (median of the Walsh
  averages of the log ratios) and its exact distribution-free interval go with that test.
* **unpaired** (two reports): the raw iterations of each run. The Mann-Whitney U test gives the
  p-values; the Hodges-Lehmann shift (median of all pairwise log differences) and its interval
  go with that test. The test sees only each run's iterations; where the machine's speed
  wandered during a run (``bench.noise.wander``), a whole session's median moves by about as
  much, so ``with_session_noise`` widens the interval by that variance (Student's t).

scipy provides the tests; it has no Hodges-Lehmann intervals, so those are computed here from
the tests' null distributions (exact signed-rank distribution; normal approximation of U).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import stats as sps

from ..bench.noise import Wander
from ..errors import UserError

# Pairwise differences are computed on at most this many order statistics per side: beyond that
# the interval is limited by the run-to-run noise, not by this thinning, and memory stays small.
MAX_UNPAIRED = 2000


class LatencyError(UserError, ValueError):
    """Samples the rank tests cannot use. A ValueError for library callers; a UserError so the
    command line prints it (exit 2) instead of a traceback CI would read as a regression.
    Callers that know the file and field check with ``latency_problem`` first and say so."""


@dataclass(frozen=True)
class Shift:
    """Candidate relative to baseline."""

    design: str                  # "paired", "unpaired", or "counted" (instructions: the
    #                              medians below are then instructions per iteration)
    n_baseline: int
    n_candidate: int
    ratio: float                 # Hodges-Lehmann estimate of candidate / baseline
    ci_low: float
    ci_high: float
    confidence: float
    p_slower: float              # one-sided: H0 "the candidate is not slower"
    p_faster: float              # one-sided: H0 "the candidate is not faster"
    baseline_median_ms: float
    candidate_median_ms: float
    session_sd: float = 0.0      # unpaired: the runs' speed wander added to the interval (SD)

    def to_dict(self) -> dict:
        return asdict(self)


def paired_shift(baseline: np.ndarray, candidate: np.ndarray, confidence: float) -> Shift:
    """``baseline[i]`` and ``candidate[i]`` were measured side by side (same round)."""
    a, b = _positive(baseline), _positive(candidate)
    if len(a) != len(b):
        raise LatencyError("paired samples need equal lengths")
    if len(a) < 2:
        raise LatencyError("at least two pairs are needed")
    d = np.log(b) - np.log(a)
    walsh = np.sort(_walsh_averages(d))
    k = _signed_rank_critical(len(d), (1 - confidence) / 2)
    low, high = walsh[k - 1], walsh[len(walsh) - k]
    if np.all(d == 0):
        p_slower = p_faster = 1.0
    else:
        p_slower = float(sps.wilcoxon(d, alternative="greater").pvalue)
        p_faster = float(sps.wilcoxon(d, alternative="less").pvalue)
    return Shift("paired", len(a), len(b), math.exp(float(np.median(walsh))), math.exp(low),
                 math.exp(high), confidence, p_slower, p_faster, float(np.median(a)),
                 float(np.median(b)))


def unpaired_shift(baseline: np.ndarray, candidate: np.ndarray, confidence: float) -> Shift:
    """Independent samples (two runs)."""
    a, b = _positive(baseline), _positive(candidate)
    if min(len(a), len(b)) < 2:
        raise LatencyError("at least two samples per side are needed")
    la, lb = np.log(_thin(a)), np.log(_thin(b))
    diffs = np.sort((lb[None, :] - la[:, None]).ravel())
    n, m = len(la), len(lb)
    z = sps.norm.ppf(1 - (1 - confidence) / 2)
    k = max(1, int(math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12))))
    low, high = diffs[k - 1], diffs[len(diffs) - k]
    p_slower = float(sps.mannwhitneyu(b, a, alternative="greater").pvalue)
    p_faster = float(sps.mannwhitneyu(b, a, alternative="less").pvalue)
    return Shift("unpaired", len(a), len(b), math.exp(float(np.median(diffs))), math.exp(low),
                 math.exp(high), confidence, p_slower, p_faster, float(np.median(a)),
                 float(np.median(b)))


def with_session_noise(shift: Shift, baseline: Wander, candidate: Wander) -> Shift:
    """``shift`` with each run's speed wander (``noise.Wander``: a relative SD from its stretch
    medians) added to its uncertainty, on log latencies: the test's interval read as a normal
    one (half-width over z) plus both variances. Each wander is estimated from a few stretch
    medians, so the interval and p-values use Student's t with the Welch-Satterthwaite degrees
    of freedom. A run's median moves about as far as its stretches do (measured on a Xeon VM:
    stretches 3.1-4.3 %, medians of five runs 3.4-4.3 %), so the whole wander counts, not its
    share of a longer run."""
    parts = [(w.level ** 2, w.stretches - 1) for w in (baseline, candidate) if w.level > 0]
    if not parts:
        return shift
    z = float(sps.norm.ppf(1 - (1 - shift.confidence) / 2))
    estimate = math.log(shift.ratio)
    tested = ((math.log(shift.ci_high) - math.log(shift.ci_low)) / (2 * z)) ** 2
    variance = tested + sum(v for v, _ in parts)
    df = variance ** 2 / sum(v ** 2 / k for v, k in parts)     # the test's part: df infinite
    t = float(sps.t.ppf(1 - (1 - shift.confidence) / 2, df))
    se = math.sqrt(variance)
    return replace(shift, ci_low=math.exp(estimate - t * se), ci_high=math.exp(estimate + t * se),
                   p_slower=float(sps.t.sf(estimate / se, df)),
                   p_faster=float(sps.t.cdf(estimate / se, df)),
                   session_sd=math.sqrt(variance - tested))


def latency_problem(x: object) -> str:
    """What makes ``x`` unusable as latencies, or '' when nothing does: the tests work on log
    latencies, so every value must be a finite number above 0 (NaN, inf, 0 and negative values
    come from a damaged report or a broken timer, never from a slow artifact)."""
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return "is not a list of numbers"
    if x.ndim != 1:
        return f"is a {x.ndim}-D array, not a list of numbers"
    bad = ~np.isfinite(x) | (x <= 0)
    if not bad.any():
        return ""
    first = int(np.argmax(bad))
    return (f"holds {int(bad.sum())} value(s) that are not finite numbers above 0 (the first: "
            f"[{first}] = {float(x[first])!r})")


def _positive(x: np.ndarray) -> np.ndarray:
    if problem := latency_problem(x):
        raise LatencyError(f"latencies must be a 1-D array of positive finite numbers; these "
                           f"{problem}")
    return np.asarray(x, dtype=np.float64)


def _walsh_averages(d: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(len(d))
    return (d[i] + d[j]) / 2


def _thin(x: np.ndarray) -> np.ndarray:
    """Evenly spaced order statistics: the same distribution, at most MAX_UNPAIRED values."""
    if len(x) <= MAX_UNPAIRED:
        return x
    return np.quantile(x, np.linspace(0, 1, MAX_UNPAIRED))


def signed_rank_pmf(n: int) -> np.ndarray:
    """Exact null distribution of the Wilcoxon signed-rank statistic T+ for n pairs (no ties):
    the number of subsets of {1..n} with each sum, over 2**n."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
        counts /= 2.0                  # keeps the values in range: after n steps, sum == 1
    return counts


def _signed_rank_critical(n: int, alpha: float) -> int:
    """The largest k >= 1 with P(T+ <= k - 1) <= alpha: the interval between the k-th smallest
    and k-th largest Walsh averages covers the shift with probability >= 1 - 2 alpha."""
    cdf = np.cumsum(signed_rank_pmf(n))
    below = int(np.searchsorted(cdf, alpha, side="right"))   # values 0..below-1 have cdf <= alpha
    return max(1, below)
