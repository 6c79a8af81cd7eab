"""`seaformer-deploy gate` on two reports, and `baseline update`: every verdict, exit code and
output, on a real report whose samples are replaced by controlled draws."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from seaformer_deploy.bench.run import BenchOptions, bench
from seaformer_deploy.cli import app
from seaformer_deploy.gate import baselines
from seaformer_deploy.reports import build_report
from seaformer_deploy.reports.files import validate
from seaformer_deploy.runners.plan import Protocol

QUICK = Protocol(warmup_iterations=2, warmup_seconds=0.0, iterations=8, min_seconds=0.0,
                 rounds=4)
MODEL = "model.fp32.pte"


@pytest.fixture(scope="module")
def real_report(small_export):
    run = bench(BenchOptions(small_export.folder, formats=("pte",), precisions=("fp32",),
                             protocol=QUICK, blocks=1, parity=False))
    return build_report(run)


def draws(seed: int, n: int = 200, scale: float = 1.0, sigma: float = 0.02) -> np.ndarray:
    return scale * 2.0 * np.exp(np.random.default_rng(seed).normal(0, sigma, n))


def with_samples(report: dict, seed: int, scale: dict | None = None, n: int = 200,
                 sigma: float = 0.02) -> dict:
    """A copy of ``report`` whose artifacts have fresh samples (``scale`` per artifact path)."""
    out = copy.deepcopy(report)
    for i, a in enumerate(out["artifacts"]):
        x = draws(seed * 100 + i, n, (scale or {}).get(a["path"], 1.0), sigma)
        a["samples_ms"] = [float(v) for v in x]
        a["cpus"] = [a["cpus"][0]] * n
        a["blocks"] = [0] * n
        a["rounds"] = [k * 4 // n for k in range(n)]
    validate(out)
    return out


def save(report: dict, folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report))
    return str(folder)


def gate(tmp_path, baseline: dict | None, candidate: dict, *extra: str, env=None):
    args = ["gate", "--candidate", save(candidate, tmp_path / "cand"), "--out",
            str(tmp_path / "gate"), "--json", str(tmp_path / "verdict.json"),
            "--baselines", str(tmp_path / "baselines"), *extra]
    if baseline is not None:
        args += ["--baseline", save(baseline, tmp_path / "base")]
    result = CliRunner().invoke(app, args, env=env)
    verdict = (json.loads((tmp_path / "verdict.json").read_text())
               if (tmp_path / "verdict.json").exists() else None)
    return result, verdict


def verdicts(doc: dict) -> dict:
    return {r["artifact"]: r["verdict"] for r in doc["rows"]}


def test_same_distribution_passes(tmp_path, real_report):
    result, doc = gate(tmp_path, with_samples(real_report, 1), with_samples(real_report, 2))
    assert result.exit_code == 0, result.output
    assert set(verdicts(doc).values()) == {"PASS"} and len(doc["rows"]) == 5
    assert doc["outcome"] == "PASS" and doc["mode"] == "reports"


def test_slower_artifact_is_a_regression_and_the_outputs_say_so(tmp_path, real_report,
                                                                 monkeypatch):
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    result, doc = gate(tmp_path, with_samples(real_report, 1),
                       with_samples(real_report, 2, {MODEL: 1.10}),
                       env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 1, result.output
    assert verdicts(doc)[MODEL] == "REGRESSION"
    assert {v for p, v in verdicts(doc).items() if p != MODEL} == {"PASS"}
    row = next(r for r in doc["rows"] if r["artifact"] == MODEL)
    assert row["shift"]["ratio"] == pytest.approx(1.10, abs=0.01)
    assert row["shift"]["p_slower"] < 0.01 and doc["exit_code"] == 1
    assert doc["rule"]["min_effect"] == 0.05 and doc["baseline"]["fingerprint"]["digest"]
    table = "| artifact | baseline ms | candidate ms | change |"
    assert table in result.output and "**REGRESSION**" in result.output
    text = summary.read_text()
    assert text.startswith("earlier step\n") and table in text
    folders = list((tmp_path / "gate").iterdir())
    assert len(folders) == 1 and (folders[0] / "summary.md").read_text().count("REGRESSION")


def test_faster_artifact_is_an_improvement_and_passes(tmp_path, real_report):
    result, doc = gate(tmp_path, with_samples(real_report, 1),
                       with_samples(real_report, 2, {MODEL: 0.85}))
    assert result.exit_code == 0 and verdicts(doc)[MODEL] == "IMPROVEMENT"


def test_noisy_candidate_is_unstable(tmp_path, real_report):
    noisy = with_samples(real_report, 2, n=25, sigma=0.4)
    result, doc = gate(tmp_path, with_samples(real_report, 1), noisy, "--units", "model")
    assert result.exit_code == 3, result.output
    assert verdicts(doc) == {MODEL: "UNSTABLE"}
    result, _ = gate(tmp_path, with_samples(real_report, 1), noisy, "--units", "model",
                     "--unstable-is-failure")
    assert result.exit_code == 1


def test_min_effect_and_alpha_are_options(tmp_path, real_report):
    base, cand = with_samples(real_report, 1), with_samples(real_report, 2, {MODEL: 1.10})
    result, doc = gate(tmp_path, base, cand, "--min-effect", "0.2")
    assert result.exit_code == 0 and verdicts(doc)[MODEL] == "PASS"
    result, _ = gate(tmp_path, base, cand, "--alpha", "0.7")
    assert result.exit_code == 2 and "alpha" in result.output


@pytest.mark.parametrize("field", ["governor", "runtimes", "cpu_model"])
def test_other_device_fingerprint_is_incomparable(tmp_path, real_report, field):
    cand = with_samples(real_report, 2)
    cand["device"]["fingerprint"]["fields"][field] = "something else"
    cand["device"]["fingerprint"]["digest"] = "0" * 16
    result, doc = gate(tmp_path, with_samples(real_report, 1), cand)
    assert result.exit_code == 2
    assert set(verdicts(doc).values()) == {"INCOMPARABLE"}
    assert f"device {field}" in doc["rows"][0]["reason"]


def test_other_input_size_is_incomparable(tmp_path, real_report):
    cand = with_samples(real_report, 2)
    cand["export"]["input"]["size"] = [512, 512]
    result, doc = gate(tmp_path, with_samples(real_report, 1), cand)
    assert result.exit_code == 2 and "input size" in doc["rows"][0]["reason"]


def test_artifact_missing_from_the_candidate_is_incomparable(tmp_path, real_report):
    cand = with_samples(real_report, 2)
    cand["artifacts"] = [a for a in cand["artifacts"] if a["path"] != "head.fp32.pte"]
    result, doc = gate(tmp_path, with_samples(real_report, 1), cand)
    assert result.exit_code == 2
    assert verdicts(doc)["head.fp32.pte"] == "INCOMPARABLE"
    assert "not measured in the candidate" in result.output


def test_interrupted_report_is_an_error(tmp_path, real_report):
    cand = with_samples(real_report, 2)
    cand["status"] = "interrupted"
    result, doc = gate(tmp_path, with_samples(real_report, 1), cand)
    assert result.exit_code == 2 and doc is None
    assert "interrupted, not complete" in result.output


def test_missing_baseline_is_an_error_that_says_what_to_do(tmp_path, real_report):
    result, doc = gate(tmp_path, None, with_samples(real_report, 2))
    assert result.exit_code == 2 and doc is None
    assert "no baseline at" in result.output and "baseline update" in result.output


def test_corrupt_baseline_is_an_error(tmp_path, real_report):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "report.json").write_text('{"schema": "seaformer-deploy/bench-rep')
    result = CliRunner().invoke(app, ["gate", "--baseline", str(bad), "--candidate",
                                      save(with_samples(real_report, 2), tmp_path / "cand"),
                                      "--out", str(tmp_path / "gate")])
    assert result.exit_code == 2 and "is not a readable report" in result.output
    assert not (tmp_path / "gate").exists()


def test_baseline_update_then_gate_finds_it(tmp_path, real_report):
    root = tmp_path / "baselines"
    ref = save(with_samples(real_report, 1), tmp_path / "ref")
    result = CliRunner().invoke(app, ["baseline", "update", ref, "--baselines", str(root)])
    assert result.exit_code == 0, result.output
    [path] = root.glob("*/*_256x256_logits.json")
    assert path.parent.name.endswith(real_report["device"]["fingerprint"]["digest"])
    assert json.loads((path.parent / baselines.FINGERPRINT).read_text())["fields"] == \
        real_report["device"]["fingerprint"]["fields"]
    result, doc = gate(tmp_path, None, with_samples(real_report, 2, {MODEL: 1.2}))
    assert result.exit_code == 1 and doc["baseline"]["source"] == str(path)


def test_baseline_update_refuses_an_incomplete_run(tmp_path, real_report):
    bad = with_samples(real_report, 1)
    bad["status"] = "interrupted"
    result = CliRunner().invoke(app, ["baseline", "update", save(bad, tmp_path / "r"),
                                      "--baselines", str(tmp_path / "b")])
    assert result.exit_code == 2 and "must be complete" in result.output
    assert not (tmp_path / "b").exists()
