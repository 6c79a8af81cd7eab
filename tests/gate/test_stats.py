"""The shift estimates, intervals and p-values the gate decides on."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from seaformer_deploy.bench.noise import Wander, wander
from seaformer_deploy.gate.stats import (paired_shift, signed_rank_pmf, unpaired_shift,
                                         with_session_noise, _signed_rank_critical)
from seaformer_deploy.gate.verdict import REGRESSION, Rule, decide


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


# --- Two reports from a machine whose speed wanders (a shared VM). ---

def _session(rng, n=400, wander_sd=0.03, scale=1.0):
    """One run's iterations in time order: a session level, 8 stretch levels around it (both
    with SD ``wander_sd``, as measured on a Xeon VM) and 5 % iteration noise."""
    level = np.exp(rng.normal(0, wander_sd) + np.repeat(rng.normal(0, wander_sd, 8), n // 8))
    return scale * level * np.exp(rng.normal(0, 0.05, n))


def _gated(a, b, rule=Rule()):
    shift = with_session_noise(unpaired_shift(a, b, rule.confidence), wander(a), wander(b))
    return shift, decide(shift, rule)[0]


def test_without_wander_the_shift_is_unchanged():
    rng = np.random.default_rng(7)
    s = unpaired_shift(_lognormal(rng, 200, 0.05), _lognormal(rng, 200, 0.05), 0.98)
    still = Wander(0.0, 0.01, 8)
    assert with_session_noise(s, still, still) is s and s.session_sd == 0.0


def test_wander_widens_the_interval_around_the_same_estimate():
    rng = np.random.default_rng(8)
    s = unpaired_shift(_lognormal(rng, 400, 0.05), _lognormal(rng, 400, 0.05, 1.03), 0.98)
    w = with_session_noise(s, Wander(0.03, 0.01, 8), Wander(0.04, 0.01, 8))
    assert w.ratio == s.ratio and w.session_sd == pytest.approx(0.05)
    assert w.ci_low < s.ci_low and w.ci_high > s.ci_high
    # Student's t, not z: each wander comes from 8 stretch medians (about 13 df together).
    assert np.exp(2 * 2.3263 * 0.05) < w.ci_high / w.ci_low < np.exp(2 * 2.7 * 0.052)
    assert w.p_slower > s.p_slower and w.p_slower + w.p_faster == pytest.approx(1.0)


def test_separate_runs_of_a_wandering_machine_raise_no_false_alarm():
    rng = np.random.default_rng(9)
    pairs = [(_session(rng), _session(rng)) for _ in range(200)]
    raw = sum(decide(unpaired_shift(a, b, 0.98), Rule())[0] == REGRESSION for a, b in pairs)
    gated = sum(_gated(a, b)[1] == REGRESSION for a, b in pairs)
    assert raw >= 30            # the iterations' test alone is fooled (about 1 pair in 5) ...
    assert gated <= 6           # ... the session variance keeps false alarms near alpha (1 %)


def test_a_large_slowdown_is_still_caught_on_a_wandering_machine():
    rng = np.random.default_rng(10)
    caught = sum(_gated(_session(rng), _session(rng, scale=1.4))[1] == REGRESSION
                 for _ in range(100))
    assert caught >= 95
