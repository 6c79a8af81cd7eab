"""The command line: exit codes and one actionable message for bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from seaformer_deploy.cli import app
from seaformer_deploy.models.registry import build

runner = CliRunner()


def test_info_json_reports_components():
    result = runner.invoke(app, ["info", "--variant", "T", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["total"]["params"] == 1_667_318
    assert list(info["components"]) == ["stem", "context", "spatial", "head"]
    assert info["components"]["stem"]["outputs"] == {"shared": [1, 32, 64, 64]}
    assert info["paper"]["gmacs"] == 0.6


def test_info_table_prints_paper_figures():
    result = runner.invoke(app, ["info", "--model", "topformer-b", "--input-size", "512x512"])
    assert result.exit_code == 0, result.output
    assert "topformer-b at 512x512" in result.stdout and "paper" in result.stdout


def test_unknown_variant_lists_valid_names():
    result = runner.invoke(app, ["info", "--variant", "XL"])
    assert result.exit_code == 2
    assert "unknown variant 'XL'" in result.stderr and "topformer-b" in result.stderr
    assert "Traceback" not in result.output


def test_unknown_model_lists_valid_names():
    result = runner.invoke(app, ["info", "--model", "seaformer-xl"])
    assert result.exit_code == 2 and "seaformer-t++-kd" in result.stderr


def test_unsupported_input_size():
    result = runner.invoke(app, ["info", "--model", "topformer-t", "--input-size", "500x512"])
    assert result.exit_code == 2
    assert "multiples of 64" in result.stderr and "Try 512x512" in result.stderr
    result = runner.invoke(app, ["info", "--variant", "T", "--input-size", "big"])
    assert result.exit_code == 2 and "HEIGHTxWIDTH" in result.stderr


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "t.pth"
    torch.save({"state_dict": build("seaformer-t").state_dict()}, path)
    path.write_bytes(path.read_bytes()[:1000])
    result = runner.invoke(app, ["info", "--variant", "T", "--checkpoint", str(path)])
    assert result.exit_code == 2 and "truncated" in result.stderr


def test_models_lists_the_registry():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    for name in ("seaformer-t", "seaformer-t++", "seaformer-t++-kd", "seaformer-t-cls",
                 "topformer-b"):
        assert name in result.stdout


@pytest.mark.parametrize("args, says", [
    (["models", "--bogus"], "No such option: --bogus"),
    (["info", "--num-classes", "many"], "Invalid value for '--num-classes'"),
    (["info", "--input-size"], "Option '--input-size' requires an argument"),
    (["report", "show"], "Missing argument 'folder'"),
    (["expor"], "No such command 'expor'. Did you mean 'export'"),
])
def test_usage_errors_are_one_error_line(args, says):
    """Click's own refusals print like every other: one `error:` line, exit 2, no panel."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.stdout == "", result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and says in line and "╭" not in line, line


@pytest.mark.parametrize("args, message", [
    (["gate", "--ab", "--candidate", "r"],
     "--ab measures two export folders now; --baseline and --candidate take reports: use one "
     "mode or the other."),
    (["gate", "--baseline-artifacts", "a"], "--baseline-artifacts and --candidate-artifacts "
                                            "need --ab."),
    (["info", "--input-size", "big"], "--input-size 'big' is not HEIGHTxWIDTH (e.g. 512x512 or "
                                      "512x1024)."),
])
def test_library_errors_name_the_flags(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.stderr == f"error: {message}\n", result.output


def test_export_prints_the_folder_as_it_is(small_export, tmp_path):
    """A folder whose name reads as Rich markup prints literally (here a cached export)."""
    root = tmp_path / "[bold]x[/bold]"
    shutil.copytree(small_export.folder, root / small_export.folder.name)
    size = "x".join(map(str, small_export.manifest.to_dict()["input"]["size"]))
    result = runner.invoke(app, ["export", "--variant", "T", "--input-size", size,
                                 "--out", str(root)])
    assert result.exit_code == 0, result.output
    assert (f"20 artifacts and manifest.json in {root / small_export.folder.name} "
            f"(up to date (cached))") in " ".join(result.stdout.split()), result.stdout
