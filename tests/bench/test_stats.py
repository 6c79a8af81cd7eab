"""Latency statistics against known samples."""

from __future__ import annotations

import numpy as np
import pytest

from seaformer_deploy.bench.stats import median_ci, summarize


def test_known_samples():
    s = summarize(np.arange(1, 101, dtype=float))
    assert (s.n, s.min, s.median, s.mean) == (100, 1.0, 50.5, 50.5)
    assert s.trimmed_mean == pytest.approx(50.5)           # mean of 11..90
    assert s.p90 == pytest.approx(90.1) and s.p99 == pytest.approx(99.01)
    assert s.iqr == pytest.approx(49.5)
    assert s.std == pytest.approx(29.011491975882016)
    assert s.cv == pytest.approx(29.011491975882016 / 50.5)
    assert s.median_ci95 == (40.0, 61.0)                    # order statistics 40 and 61 of 100
    assert not s.unstable                 # a high CV alone is no instability (precision.py)


def test_trimmed_mean_ignores_outliers():
    x = np.r_[np.full(90, 10.0), np.full(10, 1000.0)]
    s = summarize(x)
    assert s.median == 10.0 and s.trimmed_mean == pytest.approx(10.0) and s.mean > 100


def test_too_few_samples_to_judge():
    s = summarize(np.full(4, 10.0))
    assert s.unstable and s.why == "only 4 samples, too few to judge"


def test_median_ci_covers_the_true_median():
    rng = np.random.default_rng(1)
    true_median = np.log(2) * 3                              # exponential(scale 3): skewed
    covered = 0
    for _ in range(2000):
        lo, hi = median_ci(np.sort(rng.exponential(3, 41)))
        covered += lo <= true_median <= hi
    assert 0.94 <= covered / 2000 <= 0.985                   # conservative by construction


def test_median_ci_small_samples():
    assert median_ci(np.array([1.0, 2.0, 3.0])) == (1.0, 3.0)
