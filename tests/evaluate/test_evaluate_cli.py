"""``seaformer-deploy evaluate``: the flags reach api.evaluate, the table and folder print, and
refusals are one ``error:`` line naming the flag."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from seaformer_deploy.cli import app

runner = CliRunner()


def test_cityscapes_with_a_limit_and_a_pattern(eval_export, cityscapes, tmp_path):
    out = tmp_path / "o"
    result = runner.invoke(app, ["evaluate", "--artifacts", str(eval_export.folder), "--data",
                                 str(cityscapes), "--limit", "2", "--artifact", "model.*.pte",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "seaformer-t on cityscapes (2 images)" in result.stdout
    assert "model.fp32.pte" in result.stdout and "model.fp32.onnx" not in result.stdout
    assert result.stdout.rstrip().endswith(f"evaluation: {out}")
    doc = json.loads((out / "evaluation.json").read_text())
    assert (doc["dataset"]["count"], doc["dataset"]["found"]) == (2, 3)
    assert [r["name"] for r in doc["results"]] == ["pytorch.fp32", "model.fp32.pte"]
    assert doc["options"] == {"artifact": ["model.*.pte"], "limit": 2, "checkpoint": None}


@pytest.mark.parametrize("extra, message", [
    (["--limit", "0"], "--limit 0: must be at least 1 image."),
    (["--artifact", "stem.*"], "--artifact stem.* matches no whole-model artifact"),
    (["--labels", "x"], "--data and --labels both name the dataset"),
])
def test_refusals_name_the_flag(eval_export, ade, extra, message):
    result = runner.invoke(app, ["evaluate", "--artifacts", str(eval_export.folder),
                                 "--data", str(ade), *extra])
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.startswith(f"error: {message}"), result.stderr


def test_a_folder_in_no_layout_names_the_flags(eval_export, tmp_path):
    result = runner.invoke(app, ["evaluate", "--artifacts", str(eval_export.folder),
                                 "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --data {tmp_path} is in no layout evaluate knows")
    assert "pass --images DIR --labels DIR instead." in result.stderr
