"""Interleaved A/B gating on this machine: the host smoke the project's CI runs (an artifact
against itself passes; against a deliberately >= 2x slower one the gate exits 1)."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from helpers import SMALL
from seaformer_deploy.cli import app
from seaformer_deploy.export.pipeline import ExportOptions, export

# Identity convolutions on SeaFormer-T's 256x256 logits: 300 made it 6.3x slower here, so 100
# keeps a wide margin above 2x.
SLOW_EXTRA_WORK = 100


@pytest.fixture(scope="module")
def slow_export(small_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("slow")
    return export(ExportOptions(model="seaformer-t", input_size=SMALL, formats=("pte",),
                                precisions=("fp32",), components=False,
                                extra_work=SLOW_EXTRA_WORK, out_root=out))


QUICK = ("--blocks", "2", "--rounds", "6")     # enough for 2x effects, not for 5 % ones


def ab(tmp_path, baseline, candidate, *extra: str):
    verdict = tmp_path / "verdict.json"
    result = CliRunner().invoke(app, [
        "gate", "--ab", "--baseline-artifacts", str(baseline), "--candidate-artifacts",
        str(candidate), "--precisions", "fp32", "--out", str(tmp_path / "gate"),
        "--json", str(verdict), *extra])
    return result, (json.loads(verdict.read_text()) if verdict.exists() else None)


def test_slow_export_is_marked_and_exact(slow_export):
    m = slow_export.manifest.to_dict()
    assert slow_export.folder.name.endswith("_extra100")
    assert m["deploy_form"]["extra_work"] == SLOW_EXTRA_WORK and m["parity_passed"]
    [art] = m["artifacts"]
    assert art["parity"]["worst"]["max_abs_err"] < 1e-3     # identity work: outputs unchanged


def test_artifact_against_itself_passes(tmp_path, small_export):
    result, doc = ab(tmp_path, small_export.folder, small_export.folder, "--units", "model")
    assert result.exit_code == 0, result.output
    assert {r["artifact"]: r["verdict"] for r in doc["rows"]} == {"model.fp32.pte": "PASS"}
    samples = doc["measurements"]["samples"]["model.fp32.pte"]
    assert len(samples["pairs_ms"]["A"]) == len(samples["pairs_ms"]["B"]) == 32   # 4 x 8
    assert len(samples["A"]["samples_ms"]) == 32 * 5
    blocks = doc["measurements"]["blocks"]
    assert [b["first"] for b in blocks] == ["A", "B", "A", "B"]
    assert all(b["pinned"] for b in blocks)
    assert doc["measurements"]["device"]["fingerprint"]["digest"]
    assert doc["baseline"]["artifacts"]["model.fp32.pte"] == \
        doc["candidate"]["artifacts"]["model.fp32.pte"]


def test_twice_slower_artifact_exits_1(tmp_path, small_export, slow_export):
    result, doc = ab(tmp_path, small_export.folder, slow_export.folder, "--units", "model",
                     *QUICK)
    assert result.exit_code == 1, result.output
    [row] = doc["rows"]
    assert row["verdict"] == "REGRESSION" and row["shift"]["ratio"] >= 2.0


def test_artifacts_missing_from_one_side_are_incomparable(tmp_path, small_export, slow_export):
    result, doc = ab(tmp_path, slow_export.folder, small_export.folder, *QUICK)
    verdicts = {r["artifact"]: r["verdict"] for r in doc["rows"]}
    assert verdicts["model.fp32.pte"] == "IMPROVEMENT"
    assert verdicts["stem.fp32.pte"] == "INCOMPARABLE" and result.exit_code == 2


def test_different_workloads_are_refused_before_measuring(tmp_path, small_export):
    other = tmp_path / "other"
    shutil.copytree(small_export.folder, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["input"]["size"] = [512, 512]
    (other / "manifest.json").write_text(json.dumps(manifest))
    result, doc = ab(tmp_path, small_export.folder, other)
    assert result.exit_code == 2 and doc is None
    assert "different workloads" in result.output and "input size" in result.output


def test_ab_needs_two_export_folders(tmp_path, small_export):
    result, _ = ab(tmp_path, small_export.folder, tmp_path / "nowhere")
    assert result.exit_code == 2 and "holds no valid export" in result.output
    result = CliRunner().invoke(app, ["gate", "--ab", "--baseline-artifacts",
                                      str(small_export.folder)])
    assert result.exit_code == 2 and "--candidate-artifacts" in result.output


def test_modes_do_not_mix(tmp_path, small_export):
    folder = str(small_export.folder)
    result = CliRunner().invoke(app, ["gate", "--ab", "--baseline-artifacts", folder,
                                      "--candidate-artifacts", folder, "--candidate", folder])
    assert result.exit_code == 2 and "one mode or the other" in result.output
    result = CliRunner().invoke(app, ["gate", "--baseline-artifacts", folder,
                                      "--candidate-artifacts", folder])
    assert result.exit_code == 2 and "need --ab" in result.output


def test_teardown_failures_are_recorded_and_never_replace_a_ctrl_c():
    """A cleanup step that fails after a Ctrl-C (a link left mid-packet) must neither replace the
    KeyboardInterrupt (the CLI's exit 130) nor skip the steps after it (the device lock)."""
    from seaformer_deploy.gate import ab

    released, events = [], []

    def kill_session() -> None:
        raise OSError("link gone")

    with pytest.raises(KeyboardInterrupt):
        try:
            raise KeyboardInterrupt
        finally:
            ab._teardown(events, kill_session, lambda: released.append(True))
    assert released == [True]
    assert events == ["cleanup: kill_session failed: link gone"]
