"""The gate's rule: from a shift estimate to PASS, REGRESSION, IMPROVEMENT or UNSTABLE.

With ``r`` the candidate/baseline latency ratio, ``[lo, hi]`` its two-sided ``1 - 2 alpha``
confidence interval (so ``lo > 1`` exactly when the one-sided test says "slower" at level
``alpha``) and ``delta`` the minimum effect:

* REGRESSION   ``lo > 1`` and ``hi >= 1 + delta``: significantly slower, and a slowdown of at
  least ``delta`` is consistent with the data. (Requiring the *estimate* to exceed ``1 + delta``
  would catch a true ``delta`` slowdown only half the time.)
* IMPROVEMENT  ``hi < 1`` and ``lo <= 1 / (1 + delta)``: the mirror image.
* UNSTABLE     not significantly slower, but ``hi >= 1 + delta``: a slowdown of ``delta`` can be
  neither shown nor ruled out (too noisy or too few samples); also when there are fewer samples
  than ``min_samples``.
* PASS         otherwise: any slowdown is shown to be smaller than ``delta`` (a significant but
  smaller one is noted).

INCOMPARABLE is decided before any statistics (see ``compare.py``).

Instruction counts (``bench --metric instructions``) need no statistics: callgrind counts the
same work the same way, so ``decide_counts`` compares the medians directly, against a smaller
minimum effect (``INSTRUCTION_EFFECT``), and calls a result UNSTABLE only when the counted
iterations themselves disagree by more than a quarter of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .stats import Shift

PASS, REGRESSION, IMPROVEMENT, UNSTABLE, INCOMPARABLE = (
    "PASS", "REGRESSION", "IMPROVEMENT", "UNSTABLE", "INCOMPARABLE")
VERDICTS = (PASS, REGRESSION, IMPROVEMENT, UNSTABLE, INCOMPARABLE)

EXIT_PASS, EXIT_REGRESSION, EXIT_ERROR, EXIT_UNSTABLE = 0, 1, 2, 3
INSTRUCTION_EFFECT = 0.005       # default minimum effect on instruction counts (0.5 %)


@dataclass(frozen=True)
class Rule:
    alpha: float = 0.01          # one-sided significance level of the rank test
    min_effect: float = 0.05     # smallest slowdown that counts as a regression (0.05 = 5 %)
    min_pairs: int = 8           # paired design: fewer rounds than this is UNSTABLE
    min_samples: int = 20        # unpaired design: fewer iterations per side is UNSTABLE

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if not 0 < self.min_effect < 1:
            raise ValueError(f"the minimum effect must be in (0, 1), got {self.min_effect}")

    @property
    def confidence(self) -> float:
        return 1 - 2 * self.alpha

    def to_dict(self) -> dict:
        return {**asdict(self), "confidence": self.confidence}


def decide(shift: Shift, rule: Rule) -> tuple[str, str]:
    """The verdict and a one-line reason."""
    enough = rule.min_pairs if shift.design == "paired" else rule.min_samples
    have = min(shift.n_baseline, shift.n_candidate)
    change = _pct(shift.ratio)
    interval = f"{_pct(shift.ci_low)} .. {_pct(shift.ci_high)}"
    if have < enough:
        unit = "paired rounds" if shift.design == "paired" else "iterations per side"
        return UNSTABLE, f"{have} {unit}, fewer than the {enough} needed to decide"
    up, down = 1 + rule.min_effect, 1 / (1 + rule.min_effect)
    if shift.ci_low > 1 and shift.ci_high >= up:
        return REGRESSION, f"slower by {change} ({interval}), p = {shift.p_slower:.2g}"
    if shift.ci_high < 1 and shift.ci_low <= down:
        return IMPROVEMENT, f"faster: {change} ({interval}), p = {shift.p_faster:.2g}"
    if shift.ci_high >= up:
        return UNSTABLE, f"{change} ({interval}): a {rule.min_effect:.0%} slowdown can be " \
                         f"neither shown nor ruled out"
    if shift.ci_low > 1:
        return PASS, f"slower by {change} ({interval}), below the {rule.min_effect:.0%} minimum"
    return PASS, f"{change} ({interval})"


def decide_counts(baseline: list[int], candidate: list[int], rule: Rule) -> tuple[str, str, Shift]:
    """The verdict on two sides' instructions per iteration: medians compared directly.
    The interval is the range of candidate/baseline over every pair of counted iterations."""
    a, b = np.asarray(baseline, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    ma, mb = float(np.median(a)), float(np.median(b))
    ratio = mb / ma
    low, high = float(b.min() / a.max()), float(b.max() / a.min())
    shift = Shift("counted", len(a), len(b), ratio, low, high, 1.0,
                  0.0 if low > 1 else 1.0, 0.0 if high < 1 else 1.0, ma, mb)
    spread = max(float((x.max() - x.min()) / np.median(x)) for x in (a, b))
    change = _pct(ratio)
    if spread > rule.min_effect / 4:
        return UNSTABLE, (f"counted iterations differ by {100 * spread:.2f} %, too much to "
                          f"resolve a {rule.min_effect:.1%} change"), shift
    up, down = 1 + rule.min_effect, 1 / (1 + rule.min_effect)
    if ratio >= up:
        return REGRESSION, f"{change} instructions per iteration", shift
    if ratio <= down:
        return IMPROVEMENT, f"{change} instructions per iteration", shift
    return PASS, f"{change} instructions, within {rule.min_effect:.1%}", shift


def exit_code(verdicts: list[str], unstable_is_failure: bool = False) -> int:
    """Precedence: regression, then incomparable, then unstable, then pass (or improvement)."""
    if REGRESSION in verdicts:
        return EXIT_REGRESSION
    if INCOMPARABLE in verdicts or not verdicts:
        return EXIT_ERROR
    if UNSTABLE in verdicts:
        return EXIT_REGRESSION if unstable_is_failure else EXIT_UNSTABLE
    return EXIT_PASS


def _pct(ratio: float) -> str:
    """A ratio as a signed percentage change: 1.052 -> '+5.2 %'."""
    return f"{100 * (ratio - 1):+.1f} %"
