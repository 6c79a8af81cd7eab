"""The Python API: cheap to import, named like the option dataclasses, errors that name the
argument at fault (the command line names the flag), and the README's example, run as it is."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import seaformer_deploy as sd
from seaformer_deploy import api
from seaformer_deploy.cli import user_errors
from seaformer_deploy.errors import OptionError, UserError, option

ROOT = Path(__file__).resolve().parents[1]
REPORT = Path(__file__).resolve().parent / "reports" / "data" / "report.json"


def test_importing_the_package_loads_no_torch_and_keeps_the_subpackages():
    code = ("import sys, seaformer_deploy as sd\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules\n"
            "import seaformer_deploy.export.manifest\n"
            "assert callable(sd.export) and sd.export.manifest.MANIFEST == 'manifest.json'\n"
            "print(sd.list_models('topformer-*'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['topformer-t', 'topformer-s', 'topformer-b']"


@pytest.mark.parametrize("function, options", [
    (api.export, "seaformer_deploy.export.pipeline:ExportOptions"),
    (api.bench, "seaformer_deploy.bench.run:BenchOptions"),
    (api.gate, "seaformer_deploy.gate.run:GateOptions"),
    (api.evaluate, "seaformer_deploy.evaluate.run:EvaluateOptions"),
])
def test_docstrings_name_every_option(function, options):
    module, name = options.split(":")
    cls = getattr(__import__(module, fromlist=[name]), name)
    doc = function.__doc__
    for section in ("Args:", "Returns:", "Raises:"):
        assert section in doc, section
    missing = [f.name for f in dataclasses.fields(cls) if not re.search(rf"\b{f.name}\b", doc)]
    assert missing == [], f"{function.__name__}'s docstring lacks {missing}"


def test_an_error_names_the_argument_and_the_command_line_names_the_flag():
    error = OptionError(f"{option('json_out')} {Path('/tmp/[x]{y}')} is a folder; see "
                        f"{option('input_size')}.")
    assert error.field == "json_out" and error.fields() == ["json_out", "input_size"]
    assert str(error) == "json_out /tmp/[x]{y} is a folder; see input_size."
    probe = typer.Typer()

    @probe.command()
    @user_errors
    def fail() -> None:
        raise error

    result = CliRunner().invoke(probe, [])
    assert result.exit_code == 2
    assert result.stderr == "error: --json /tmp/[x]{y} is a folder; see --input-size.\n"
    with pytest.raises(ValueError):
        option("--formats")


def test_unknown_keywords_and_bad_sizes_name_the_argument(tmp_path):
    with pytest.raises(OptionError, match="formatz is not an option here") as caught:
        api.export("seaformer-t", formatz=("onnx",), out_root=tmp_path)
    assert caught.value.field == "formatz" and "precisions" in str(caught.value)
    with pytest.raises(OptionError, match="input_size 'big' is not HEIGHTxWIDTH") as caught:
        api.export("seaformer-t", input_size="big", out_root=tmp_path)
    assert caught.value.field == "input_size"
    assert list(tmp_path.iterdir()) == []


def test_bench_refuses_a_checkpoint_with_artifacts(tmp_path):
    with pytest.raises(OptionError) as caught:
        api.bench(tmp_path, checkpoint="x.pth")
    assert caught.value.field == "checkpoint"
    assert str(caught.value).startswith("checkpoint is for the export; with artifacts the ")


@pytest.mark.parametrize("arguments, field, says", [
    ({"ab": True, "candidate": REPORT}, "ab", "ab measures two export folders now; baseline "
                                              "and candidate take reports"),
    ({"ab": True}, "ab", "ab needs baseline_artifacts DIR and candidate_artifacts DIR"),
    ({"baseline_artifacts": REPORT.parent}, "baseline_artifacts", "need ab."),
    ({}, "candidate", "pass candidate REPORT"),
    ({"candidate": REPORT, "alpha": 0.7}, "alpha", "see alpha and min_effect"),
    ({"candidate": REPORT, "json_out": "v.json"}, "json_out", "pass out too"),
])
def test_gate_mode_rules_name_the_arguments(arguments, field, says):
    with pytest.raises(UserError) as caught:
        sd.gate(**arguments)
    assert caught.value.field == field and says in str(caught.value), str(caught.value)


def test_gate_two_reports_from_python(tmp_path):
    outcome = sd.gate(candidate=REPORT, baseline=str(REPORT), units="model,head",
                      out=tmp_path / "gate", json_out=tmp_path / "v.json")
    assert outcome.exit_code == 0 and outcome.result.mode == "reports"
    assert {row.unit for row in outcome.result.rows} == {"model", "head"}
    assert {row.verdict for row in outcome.result.rows} == {"PASS"}
    verdict = json.loads((outcome.folder / "verdict.json").read_text())
    assert verdict == json.loads((tmp_path / "v.json").read_text())
    assert sd.gate(candidate=REPORT, baseline=REPORT).folder is None      # nothing written


def test_devices_reports_an_unreachable_phone_as_its_record(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))         # no server there either
    listing = sd.devices(direct=[f"127.0.0.1:{port}"])
    assert listing.server == {"address": f"127.0.0.1:{port}", "running": False}
    (phone,) = listing.devices
    assert listing.failed and phone["state"] == "unreachable"
    assert f"cannot reach 127.0.0.1:{port}" in phone["error"]


def test_create_model_and_list_models():
    assert "seaformer-t++-kd" in sd.list_models("seaformer-*++-kd")
    assert sd.list_models(task="classification") == sd.list_models("*-cls")
    model = sd.create_model("seaformer-t", num_classes=19)
    assert model.name == "seaformer-t" and sum(1 for _ in model.components()) == 4


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_the_readme_example_runs_as_it_is(tmp_path, monkeypatch, capsys):
    """Export, bench and gate from Python: the README's code, in a fresh folder."""
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "parity passed: True" in printed
    assert re.search(r"model\.fp32\.pte \d+\.\d\d ms", printed), printed
    rows, code = printed.splitlines()[-1].rsplit(" ", 1)
    verdicts = dict(ast.literal_eval(rows))      # a report against itself cannot regress
    assert set(verdicts) == {"model.fp32.onnx", "model.fp32.pte"}, printed
    assert set(verdicts.values()) <= {"PASS", "UNSTABLE"} and code in ("0", "3"), printed
    [report] = (tmp_path / "reports").glob("*/report.json")
    assert json.loads(report.read_text())["export"]["input"]["size"] == [128, 128]
