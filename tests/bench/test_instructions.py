"""Instruction mode end to end: the real runners under the real callgrind, the report, and the
gate's verdict on counts, on a machine kept busy by another process."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from types import SimpleNamespace

import pytest

from seaformer_deploy.bench.run import BenchError, BenchOptions, bench
from seaformer_deploy.gate.compare import Selection, compare_reports
from seaformer_deploy.gate.run import GateOptions, run_gate
from seaformer_deploy.gate.verdict import INSTRUCTION_EFFECT, Rule
from seaformer_deploy.reports import build_report
from seaformer_deploy.reports.files import validate
from seaformer_deploy.reports.records import Report
from seaformer_deploy.reports.summary import markdown
from seaformer_deploy.runners.plan import Protocol

pytestmark = pytest.mark.skipif(
    not shutil.which("valgrind") and not os.environ.get("SEAFORMER_REQUIRE_VALGRIND"),
    reason="valgrind is not installed (CI installs it and sets SEAFORMER_REQUIRE_VALGRIND)")

RULE = Rule(min_effect=INSTRUCTION_EFFECT)


def counted(folder, **kw) -> dict:
    opts = BenchOptions(folder, formats=("pte",), precisions=("fp32",), metric="instructions",
                        **kw)
    return build_report(bench(opts))


@pytest.fixture(scope="module")
def extra_export(tmp_path_factory):
    """The tiny export's whole model with one identity depthwise convolution more on the
    logits (the tests compare whole models only: no components to export and count)."""
    from seaformer_deploy.export.pipeline import ExportOptions, export

    out = tmp_path_factory.mktemp("extra")
    return export(ExportOptions(model="seaformer-t", input_size=(64, 64), out_root=out,
                                formats=("pte",), precisions=("fp32",), components=False,
                                extra_work=1))


def _spin(stop) -> None:
    while not stop.is_set():
        pass


@pytest.fixture(scope="module")
def busy_machine():
    """A second process spinning on every core but one for the module's tests."""
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
                for _ in range(max(1, (os.cpu_count() or 2) - 1))]
    for p in spinners:
        p.start()
    yield
    stop.set()
    for p in spinners:
        p.join(5)


@pytest.fixture(scope="module")
def counts_twice(tiny_pte_export, extra_export, busy_machine):
    # extra_export first: exported before the spinner takes a core
    return [counted(tiny_pte_export.folder) for _ in range(2)]


def test_the_report_holds_counts_per_iteration(counts_twice):
    report = counts_twice[0]
    validate(report)
    assert report["metric"] == "instructions" and report["protocol"]["counted_iterations"] == 3
    assert {a["path"] for a in report["artifacts"]} == {
        f"{u}.fp32.pte" for u in ("model", "stem", "context", "spatial", "head")}
    for a in report["artifacts"]:
        assert len(a["counts"]["Ir"]) == 3 and min(a["counts"]["Ir"]) > 100_000
        assert a["parity"]["passed"]              # outputs of the counted run, checked
    assert report["components"] == []             # no latency breakdown of valgrind's timings
    text = markdown(Report.from_dict(report))
    assert "Instructions per iteration (callgrind)" in text and "not a latency" in text


def test_the_same_artifact_counts_the_same_within_a_tenth_of_a_percent(counts_twice):
    first, second = ({a["path"]: a["counts"]["Ir"] for a in r["artifacts"]}
                     for r in counts_twice)
    for path, counts in first.items():
        spread = (max(counts + second[path]) - min(counts + second[path])) / min(counts)
        assert spread <= 0.001, (path, counts, second[path])
    verdict = compare_reports(*counts_twice, RULE, Selection())
    assert {r.verdict for r in verdict.rows} == {"PASS"} and verdict.exit_code == 0


def test_extra_work_is_a_regression_in_one_run(counts_twice, extra_export, busy_machine):
    candidate = counted(extra_export.folder)
    verdict = compare_reports(counts_twice[0], candidate, RULE, Selection(units=("model",)))
    (row,) = verdict.rows
    assert row.verdict == "REGRESSION", row.reason
    assert 1 + INSTRUCTION_EFFECT <= row.shift.ratio < 1.2


def test_the_gate_refuses_to_compare_across_metrics(counts_twice, tmp_path):
    quick = Protocol(warmup_iterations=1, warmup_seconds=0, iterations=3, min_seconds=0,
                     rounds=1)
    latency = build_report(bench(BenchOptions(counts_twice[0]["export"]["folder"],
                                              formats=("pte",), precisions=("fp32",),
                                              precision=0.0, protocol=quick, blocks=1)))
    verdict = compare_reports(latency, counts_twice[0], RULE, Selection())
    assert {r.verdict for r in verdict.rows} == {"INCOMPARABLE"}
    assert "metric: latency vs instructions" in verdict.rows[0].reason


def test_counted_ab_gate(tiny_pte_export, extra_export, tmp_path):
    outcome = run_gate(GateOptions(ab=True, metric="instructions",
                                   baseline_artifacts=tiny_pte_export.folder,
                                   candidate_artifacts=extra_export.folder,
                                   formats=("pte",), precisions=("fp32",), units=("model",),
                                   iterations=2, out=tmp_path))
    (row,) = outcome.result.rows
    assert row.verdict == "REGRESSION" and outcome.exit_code == 1
    assert outcome.result.metric == "instructions"


def test_instructions_on_a_phone_are_refused_before_anything_runs(tiny_pte_export):
    phone = SimpleNamespace(kind="adb", name="R5CT1234")    # touched only for its kind
    with pytest.raises(BenchError, match="valgrind does not run"):
        bench(BenchOptions(tiny_pte_export.folder, metric="instructions"), device=phone)
