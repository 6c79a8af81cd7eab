"""Samples no artifact can have (NaN, inf, 0, negative) are an error with a place, never a
ValueError traceback that CI reads as a regression (#3). No export or measurement needed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from seaformer_deploy.errors import UserError
from seaformer_deploy.gate.ab import ABOptions, Sides, gate_ab
from seaformer_deploy.gate.compare import GateError, Selection, compare_reports
from seaformer_deploy.gate.stats import paired_shift, unpaired_shift
from seaformer_deploy.gate.verdict import Rule

REPORT = Path(__file__).resolve().parents[1] / "reports" / "data" / "report.json"
BAD = [float("nan"), float("inf"), -float("inf"), 0.0, -2.5]


@pytest.fixture
def report() -> dict:
    return json.loads(REPORT.read_text())


@pytest.mark.parametrize("value", BAD)
def test_latency_problem_says_which_value(value):
    from seaformer_deploy.gate.stats import latency_problem

    x = [1.0, 2.0, value, 3.0]
    assert f"[2] = {value!r}" in latency_problem(x)
    assert latency_problem([1.0, 2.0]) == ""
    assert "not a list of numbers" in latency_problem(["fast"])


@pytest.mark.parametrize("value", BAD)
def test_the_tests_raise_an_error_the_command_line_prints(value):
    bad = np.array([1.0, value, 2.0])
    for shift in (paired_shift, unpaired_shift):
        with pytest.raises(UserError, match="positive finite"):     # and still a ValueError
            shift(bad, np.array([1.0, 2.0, 3.0]), 0.98)


@pytest.mark.parametrize("value", BAD)
def test_compare_names_the_report_and_the_field(report, value):
    bad = copy.deepcopy(report)
    bad["artifacts"][2]["samples_ms"][4] = value
    with pytest.raises(GateError) as caught:
        compare_reports(report, bad, Rule(), Selection(), ("base.json", "cand.json"))
    text = str(caught.value)
    assert "the candidate report cand.json: artifacts[2].samples_ms (model.fp32.onnx)" in text
    assert "Re-run the benchmark" in text


def test_one_sample_per_side_is_unstable_not_a_crash(report):
    one = copy.deepcopy(report)
    for a in one["artifacts"]:
        a["samples_ms"] = a["samples_ms"][:1]
    result = compare_reports(report, one, Rule(), Selection())
    assert {r.verdict for r in result.rows} == {"UNSTABLE"}
    assert "1 iteration(s) per side" in result.rows[0].reason


def ab_run(a: np.ndarray, b: np.ndarray) -> SimpleNamespace:
    """Just what gate_ab reads of an A/B run: one artifact, one block of paired rounds."""
    sides = Sides({"path": "model.fp32.pte", "unit": "model", "format": "pte",
                   "precision": "fp32"})
    sides.samples = {"A": [a], "B": [b]}
    sides.rounds = {"A": [np.arange(len(a))], "B": [np.arange(len(b))]}
    return SimpleNamespace(sides={"model.fp32.pte": sides}, missing={})


@pytest.mark.parametrize("value", BAD)
def test_ab_refuses_latencies_a_runner_cannot_measure(value):
    good = np.linspace(2.0, 2.2, 12)
    bad = good.copy()
    bad[5] = value
    with pytest.raises(GateError) as caught:
        gate_ab(ab_run(good, bad), Rule())
    assert "model.fp32.pte: the candidate side's per-round medians" in str(caught.value)
    assert "runner build --force" in str(caught.value)


@pytest.mark.parametrize("field, value", [("blocks", 0), ("rounds", 0), ("iterations", 0),
                                          ("warmup_iterations", -1),
                                          ("wait_seconds", float("nan"))])
def test_ab_counts_that_cannot_give_a_verdict_are_refused_up_front(field, value):
    with pytest.raises(GateError, match="an A/B run needs at least"):
        ABOptions(Path("a"), Path("b"), **{field: value})
