"""The shift estimates, intervals and p-values the gate decides on."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from seaformer_deploy.gate.stats import (paired_shift, signed_rank_pmf, unpaired_shift,
                                         _signed_rank_critical)


def test_signed_rank_distribution_matches_enumeration():
    n = 9
    sums = [sum(r for r, keep in zip(range(1, n + 1), signs, strict=True) if keep)
            for signs in itertools.product((0, 1), repeat=n)]
    expected = np.bincount(sums) / 2 ** n
    assert np.allclose(signed_rank_pmf(n), expected)


def test_signed_rank_critical_value_matches_tables():
    # Published two-sided 5 % critical values of T (reject when T <= c): n=10 -> 8, n=20 -> 52.
    assert _signed_rank_critical(10, 0.025) - 1 == 8
    assert _signed_rank_critical(20, 0.025) - 1 == 52


def _lognormal(rng, n, sigma, scale=1.0):
    return scale * np.exp(rng.normal(0, sigma, n))


@pytest.mark.parametrize("design", ["paired", "unpaired"])
def test_interval_covers_the_true_ratio_at_its_confidence(design):
    rng = np.random.default_rng(0)
    true, trials, covered = 1.07, 300, 0
    for _ in range(trials):
        drift = _lognormal(rng, 24, 0.10)            # shared by both sides when paired
        a = drift * _lognormal(rng, 24, 0.03)
        b = (drift if design == "paired" else _lognormal(rng, 24, 0.10)) \
            * _lognormal(rng, 24, 0.03, true)
        s = (paired_shift if design == "paired" else unpaired_shift)(a, b, 0.9)
        covered += s.ci_low <= true <= s.ci_high
    assert 0.85 <= covered / trials <= 0.96


def test_paired_design_removes_shared_drift():
    rng = np.random.default_rng(1)
    drift = _lognormal(rng, 32, 0.2)                 # 20 % round-to-round drift
    a = drift * _lognormal(rng, 32, 0.01)
    b = drift * _lognormal(rng, 32, 0.01, 1.05)
    s = paired_shift(a, b, 0.98)
    assert s.ratio == pytest.approx(1.05, abs=0.01)
    assert 1.0 < s.ci_low < 1.05 < s.ci_high < 1.1
    assert s.p_slower < 1e-6 and s.p_faster > 0.99
    assert unpaired_shift(a, b, 0.98).ci_low < 1.0  # the same data unpaired cannot see it


def test_unpaired_shift_on_large_samples_is_thinned_but_right():
    rng = np.random.default_rng(2)
    a, b = _lognormal(rng, 6000, 0.05), _lognormal(rng, 5000, 0.05, 0.9)
    s = unpaired_shift(a, b, 0.98)
    assert s.ratio == pytest.approx(0.9, rel=0.005) and s.ci_high < 1
    assert s.n_baseline == 6000 and s.p_faster < 1e-10


def test_identical_samples_give_ratio_one_and_no_evidence():
    x = np.array([2.0, 2.1, 2.05, 1.98, 2.2, 2.01, 2.03, 2.08])
    s = paired_shift(x, x.copy(), 0.98)
    assert s.ratio == 1 and s.ci_low == 1 and s.ci_high == 1 and s.p_slower == 1


@pytest.mark.parametrize("bad", [[1.0, -1.0, 2.0], [1.0, np.nan, 2.0], [[1.0, 2.0]]])
def test_bad_samples_are_rejected(bad):
    with pytest.raises(ValueError):
        unpaired_shift(np.array(bad), np.array([1.0, 2.0, 3.0]), 0.98)
