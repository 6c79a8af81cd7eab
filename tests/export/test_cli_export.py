"""``seaformer-deploy export`` from the command line, at the papers' 512x512."""

from __future__ import annotations

from typer.testing import CliRunner

from seaformer_deploy.cli import app
from seaformer_deploy.export import manifest as mf

runner = CliRunner()


def test_default_export_end_to_end(tmp_path):
    """``export --variant T`` with defaults: 20 artifacts, manifest and a parity table."""
    result = runner.invoke(app, ["export", "--variant", "T", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "seaformer-t_512x512_logits"
    manifest = mf.load(folder)
    assert manifest is not None and manifest.parity_passed
    assert len(manifest.artifacts) == 20 and manifest.input.size == [512, 512]
    assert "parity of seaformer-t 512x512" in result.stdout
    assert "model.fp16.pte" in result.stdout and "chain pte fp16" in result.stdout


def test_bad_options_are_clear_errors(tmp_path):
    cases = {("--formats", "tflite"): "--formats takes",
             ("--precisions", "int4"): "--precisions takes",
             ("--output", "probs"): "--output takes",
             ("--input-size", "100x100"): "multiples of 32"}
    for args, message in cases.items():
        result = runner.invoke(app, ["export", "--variant", "T", "--out", str(tmp_path), *args])
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
    result = runner.invoke(app, ["export", "--model", "seaformer-t-cls", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "classifier" in result.stderr
    assert list(tmp_path.iterdir()) == []
