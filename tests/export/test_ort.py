"""The ORT format (ONNX Runtime Mobile), registered in export/formats.py and nowhere else:
exported with its parity and component chain on ONNX Runtime, benched by the ONNX Runtime runner
on this machine."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from seaformer_deploy.cli import app
from seaformer_deploy.errors import UserError
from seaformer_deploy.export import manifest as mf
from seaformer_deploy.export.pipeline import ExportOptions, export
from seaformer_deploy.reports import load_report

UNITS = ("model", "stem", "context", "spatial", "head")


@pytest.fixture(scope="module")
def ort_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    result = CliRunner().invoke(app, ["export", "--variant", "T", "--input-size", "64x64",
                                      "--formats", "onnx,ort", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (folder,) = out.iterdir()
    return folder, mf.read(folder).to_dict()


def test_ort_artifacts_pass_parity_and_chain(ort_export):
    folder, manifest = ort_export
    ort = {a["path"]: a for a in manifest["artifacts"] if a["format"] == "ort"}
    assert set(ort) == {f"{u}.{p}.ort" for u in UNITS for p in ("fp32", "fp16")}
    onnx = {a["path"]: a for a in manifest["artifacts"] if a["format"] == "onnx"}
    for path, art in ort.items():
        assert (folder / path).read_bytes()[4:8] == b"ORTM"          # ORT's flatbuffer id
        assert art["parity"]["passed"] and art["ort"]["optimization"] == "extended"
        assert all(t["dim_order"] == list(range(len(t["shape"]))) for t in art["inputs"])
        assert art["onnx"] == onnx[path.removesuffix(".ort") + ".onnx"]["onnx"]   # one graph
    chains = {(c["format"], c["precision"]): c["parity"]["passed"] for c in manifest["chains"]}
    assert chains == {(f, p): True for f in ("onnx", "ort") for p in ("fp32", "fp16")}
    assert manifest["deploy_form"]["runtime_rewrites"]["ort"] == [
        {"name": "matmul_upsampling", "modules": 2}]


def test_bench_runs_ort_artifacts_locally(ort_export, tmp_path):
    folder, _ = ort_export
    result = CliRunner().invoke(app, [
        "bench", "--artifacts", str(folder), "--formats", "ort", "--precisions", "fp32",
        "--warmup", "1", "--warmup-seconds", "0", "--iterations", "4", "--min-seconds", "0",
        "--precision", "0",
        "--rounds", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (report_folder,) = tmp_path.iterdir()
    report = load_report(report_folder)
    assert {a["path"] for a in report["artifacts"]} == {f"{u}.fp32.ort" for u in UNITS}
    for art in report["artifacts"]:
        assert len(art["samples_ms"]) >= 4 and art["parity"]["passed"]
    assert {b["format"] for b in report["blocks"]} == {"ort"}
    assert report["runners"]["ort"]["runtime"] == "onnxruntime"


def test_ort_forms_may_not_replace_an_ort_artifact(tmp_path):
    """--ort-forms writes model.fp32.ort next to model.fp32.onnx: with the ort format exported
    first, that would replace its artifact."""
    with pytest.raises(UserError, match=r"model.fp32.ort: --ort-forms of model.fp32.onnx would "
                                        r"replace a file this export already wrote"):
        export(ExportOptions(model="seaformer-t", input_size=(64, 64), out_root=tmp_path,
                             formats=("ort", "onnx"), precisions=("fp32",), components=False,
                             ort_forms=True))
    assert list(tmp_path.iterdir()) == []
