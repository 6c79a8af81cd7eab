"""The decision rule and the exit codes."""

from __future__ import annotations

import pytest

from seaformer_deploy.gate.stats import Shift
from seaformer_deploy.gate.verdict import (IMPROVEMENT, INCOMPARABLE, PASS, REGRESSION, UNSTABLE,
                                           Rule, decide, exit_code)

RULE = Rule(alpha=0.01, min_effect=0.05)


def shift(ratio, low, high, n=32, design="paired"):
    return Shift(design, n, n, ratio, low, high, RULE.confidence, 0.5, 0.5, 1.0, ratio)


@pytest.mark.parametrize("ratio,low,high,verdict", [
    (1.05, 1.03, 1.07, REGRESSION),     # a true 5 % slowdown: caught although not above 1.05
    (1.30, 1.20, 1.40, REGRESSION),
    (1.02, 1.01, 1.03, PASS),           # significant, but shown to be below 5 %
    (1.00, 0.99, 1.01, PASS),
    (0.99, 0.96, 1.02, PASS),
    (0.90, 0.88, 0.92, IMPROVEMENT),
    (0.98, 0.97, 0.99, PASS),           # significantly faster, but less than 5 %
    (1.01, 0.97, 1.06, UNSTABLE),       # a 5 % slowdown can be neither shown nor ruled out
    (1.10, 0.99, 1.25, UNSTABLE),
])
def test_rule(ratio, low, high, verdict):
    assert decide(shift(ratio, low, high), RULE)[0] == verdict


def test_too_few_samples_is_unstable_whatever_the_estimate():
    assert decide(shift(2.0, 1.9, 2.1, n=5), RULE) == (
        UNSTABLE, "5 paired rounds, fewer than the 8 needed to decide")
    assert decide(shift(2.0, 1.9, 2.1, n=19, design="unpaired"), RULE)[0] == UNSTABLE
    assert decide(shift(2.0, 1.9, 2.1, n=20, design="unpaired"), RULE)[0] == REGRESSION


def test_min_effect_is_configurable():
    s = shift(1.05, 1.03, 1.07)
    assert decide(s, Rule(min_effect=0.10))[0] == PASS
    assert decide(s, Rule(min_effect=0.02))[0] == REGRESSION


def test_reason_states_change_and_interval():
    verdict, reason = decide(shift(1.05, 1.03, 1.07), RULE)
    assert reason.startswith("slower by +5.0 % (+3.0 % .. +7.0 %)")


@pytest.mark.parametrize("verdicts,code", [
    ([PASS, IMPROVEMENT], 0), ([PASS, REGRESSION, UNSTABLE, INCOMPARABLE], 1),
    ([PASS, INCOMPARABLE, UNSTABLE], 2), ([PASS, UNSTABLE], 3), ([], 2)])
def test_exit_codes_and_precedence(verdicts, code):
    assert exit_code(verdicts) == code


def test_unstable_can_be_a_failure():
    assert exit_code([PASS, UNSTABLE], unstable_is_failure=True) == 1


@pytest.mark.parametrize("kwargs", [{"alpha": 0}, {"alpha": 0.6}, {"min_effect": 0},
                                    {"min_effect": 1.5}])
def test_rule_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        Rule(**kwargs)
