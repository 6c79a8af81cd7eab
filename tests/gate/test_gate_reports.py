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
                             protocol=QUICK, blocks=1, parity=False, precision=0.0))
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


def wandering(report: dict, seed: int, level: float) -> dict:
    """``report`` with the model's iterations from a machine whose speed wanders: 8 stretches
    of 50 at levels 3 % apart (SD) around ``level``, with 2 % iteration noise."""
    out = with_samples(report, seed, n=400)
    art = next(a for a in out["artifacts"] if a["path"] == MODEL)
    stretches = level * (1 + 0.03 * np.array([1.5, -1, 0.5, -1.5, 1, -0.5, 0.2, -0.2]))
    art["samples_ms"] = [float(v) for v in np.repeat(stretches, 50) * np.asarray(
        art["samples_ms"])]
    validate(out)
    return out


def test_a_wandering_machine_makes_a_shift_between_runs_undecided_not_a_regression(
        tmp_path, real_report):
    """The same artifact, its second run's speed 7 % higher: the iterations' test alone would
    call it a regression; the runs' wander is in the interval, so it cannot be decided."""
    base, cand = wandering(real_report, 1, 1.0), wandering(real_report, 2, 1.07)
    result, doc = gate(tmp_path, base, cand, "--units", "model")
    assert result.exit_code == 3, result.output
    row = doc["rows"][0]
    assert row["verdict"] == "UNSTABLE" and row["shift"]["session_sd"] > 0.03
    assert "speed wandered within the runs" in row["reason"] and "gate --ab" in row["reason"]
    steady = with_samples(real_report, 2, {MODEL: 1.07}, n=400)
    _, doc = gate(tmp_path / "steady", with_samples(real_report, 1, n=400), steady,
                  "--units", "model")
    assert doc["rows"][0]["verdict"] == "REGRESSION"             # no wander: decided
    assert doc["rows"][0]["shift"]["session_sd"] == 0.0
    _, doc = gate(tmp_path / "far", base, wandering(real_report, 2, 1.5), "--units", "model")
    assert doc["rows"][0]["verdict"] == "REGRESSION"             # far beyond the wander


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


# --- Bad input gets a clear error (#3, #9) and per-format runtimes (#10) ---------------------

def refused(result) -> str:
    """The one-line error of a refused command: exit 2, no traceback. Returns the line."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception    # not a crash
    assert "Traceback" not in result.output
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    return line


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 0.0])
@pytest.mark.parametrize("side", ["baseline", "candidate"])
def test_samples_that_are_not_latencies_are_an_error_not_a_regression(tmp_path, real_report,
                                                                        side, value):
    """#3: NaN, inf, 0 or negative samples used to crash the statistics (exit 1, "regression")."""
    bad = with_samples(real_report, 1)
    bad["artifacts"][1]["samples_ms"][7] = value          # json.dumps writes NaN / Infinity
    good = with_samples(real_report, 2)
    base, cand = (bad, good) if side == "baseline" else (good, bad)
    result, doc = gate(tmp_path, base, cand)
    line = refused(result)
    path = bad["artifacts"][1]["path"]
    assert f"artifacts[1].samples_ms[7] ({path})" in line
    assert str(tmp_path / ("base" if side == "baseline" else "cand")) in line
    assert "re-run the benchmark" in line and doc is None
    assert not (tmp_path / "gate").exists()


@pytest.fixture(scope="module")
def full_report(small_export):
    """A bench of .pte and .onnx (a desktop run) on the same machine as ``real_report``."""
    run = bench(BenchOptions(small_export.folder, formats=("pte", "onnx"), precisions=("fp32",),
                             protocol=QUICK, blocks=1, parity=False, precision=0.0))
    return build_report(run)


def test_pte_only_report_gates_against_a_pte_and_onnx_baseline(tmp_path, real_report,
                                                               full_report):
    """#10: the fingerprint lists every runner's runtime; a phone bench (only .pte) has no ONNX
    Runtime, which made every row INCOMPARABLE. A .pte row needs only the .pte runtime."""
    runtimes = lambda r: r["device"]["fingerprint"]["fields"]["runtimes"]  # noqa: E731
    assert set(runtimes(full_report)) == {"pte", "onnx"} and set(runtimes(real_report)) == {"pte"}
    base, cand = with_samples(full_report, 1), with_samples(real_report, 2)
    result, doc = gate(tmp_path, base, cand, "--formats", "pte")
    assert result.exit_code == 0, result.output
    assert set(verdicts(doc).values()) == {"PASS"} and len(doc["rows"]) == 5
    result, doc = gate(tmp_path, base, cand)           # the .onnx rows: measured on one side
    assert result.exit_code == 2
    rows = {r["artifact"]: r for r in doc["rows"]}
    assert {p: r["verdict"] for p, r in rows.items() if p.endswith(".pte")} == \
        dict.fromkeys((p for p in rows if p.endswith(".pte")), "PASS")
    assert rows["model.fp32.onnx"]["verdict"] == "INCOMPARABLE"
    assert "no .onnx artifact: pass --formats pte" in rows["model.fp32.onnx"]["reason"]


def test_pte_rows_still_need_the_same_pte_runtime(tmp_path, real_report, full_report):
    cand = with_samples(real_report, 2)
    cand["device"]["fingerprint"]["fields"]["runtimes"]["pte"] = "9.9.9"
    result, doc = gate(tmp_path, with_samples(full_report, 1), cand, "--formats", "pte")
    assert result.exit_code == 2 and set(verdicts(doc).values()) == {"INCOMPARABLE"}
    assert "device runtimes (pte): '" in doc["rows"][0]["reason"] and "'9.9.9'" in \
        doc["rows"][0]["reason"]


def test_pte_only_candidate_finds_the_committed_pte_and_onnx_baseline(tmp_path, real_report,
                                                                      full_report):
    root = tmp_path / "baselines"
    ref = save(with_samples(full_report, 1), tmp_path / "ref")
    assert CliRunner().invoke(app, ["baseline", "update", ref, "--baselines", str(root)]
                              ).exit_code == 0
    assert real_report["device"]["fingerprint"]["digest"] != \
        full_report["device"]["fingerprint"]["digest"]          # the runtimes differ
    result, doc = gate(tmp_path, None, with_samples(real_report, 2), "--formats", "pte")
    assert result.exit_code == 0, result.output
    assert doc["baseline"]["source"] == str(next(root.glob("*/*_256x256_logits.json")))


def test_other_device_is_still_incomparable_for_a_pte_only_candidate(tmp_path, real_report,
                                                                     full_report):
    cand = with_samples(real_report, 2)
    cand["device"]["fingerprint"]["fields"]["core_max_khz"] = 1
    result, doc = gate(tmp_path, with_samples(full_report, 1), cand, "--formats", "pte")
    assert result.exit_code == 2 and set(verdicts(doc).values()) == {"INCOMPARABLE"}
    assert "device core_max_khz" in doc["rows"][0]["reason"]
    ref = save(with_samples(full_report, 1), tmp_path / "ref")
    assert CliRunner().invoke(app, ["baseline", "update", ref, "--baselines",
                                    str(tmp_path / "baselines")]).exit_code == 0
    result, _ = gate(tmp_path, None, cand, "--formats", "pte")
    assert "no baseline at" in refused(result)


def baseline_update(tmp_path, report: dict):
    root = tmp_path / "b"
    result = CliRunner().invoke(app, ["baseline", "update", save(report, tmp_path / "r"),
                                      "--baselines", str(root)])
    return result, root


def test_baseline_update_refuses_a_report_with_failed_artifacts(tmp_path, real_report):
    """#9: the runner died on head.fp32.pte, so the report has no result for it."""
    bad = with_samples(real_report, 1)
    head = next(a for a in bad["artifacts"] if a["path"] == "head.fp32.pte")
    bad["artifacts"].remove(head)
    bad["failures"] = [{"path": head["path"], "unit": "head", "format": "pte",
                        "precision": "fp32", "block": 0, "reason": "crashed", "runner": "pte",
                        "returncode": -11, "signal": "SIGSEGV", "stderr_tail": "",
                        "samples_ms": []}]
    result, root = baseline_update(tmp_path, bad)
    line = refused(result)
    assert "no result for head.fp32.pte (the runner crashed in block 0)" in line
    assert "at least one measured artifact and no failed or unmeasured one" in line
    assert not root.exists()


def test_baseline_update_refuses_artifacts_the_bench_planned_but_never_measured(tmp_path,
                                                                              real_report):
    bad = with_samples(real_report, 1)
    bad["artifacts"] = [a for a in bad["artifacts"] if a["path"] != "spatial.fp32.pte"]
    result, root = baseline_update(tmp_path, bad)
    assert "spatial.fp32.pte (planned in block 0, never measured)" in refused(result)
    assert not root.exists()


def test_baseline_update_refuses_an_interrupted_run_edited_to_complete(tmp_path, real_report):
    bad = with_samples(real_report, 1)
    bad["artifacts"], bad["blocks"], bad["components"] = [], [], []
    assert bad["status"] == "complete"
    result, root = baseline_update(tmp_path, bad)
    assert "it measured no artifact" in refused(result) and not root.exists()
    result, doc = gate(tmp_path, with_samples(real_report, 2), bad)
    assert "measured no artifact" in refused(result) and doc is None
