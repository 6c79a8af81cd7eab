"""The format registry: every stage reads it, the schemas agree with it, and a format registered
here (a copy of ONNX under another name) is exported, checked and benched with no other edit."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from seaformer_deploy.bench.run import BenchOptions, bench, block_plan
from seaformer_deploy.devices import LocalDevice
from seaformer_deploy.errors import UserError
from seaformer_deploy.export import formats as fmts
from seaformer_deploy.export import manifest as mf
from seaformer_deploy.export import pte_export, rewrites
from seaformer_deploy.export.pipeline import ExportOptions, export
from seaformer_deploy.gate.compare import artifact_order
from seaformer_deploy.reports import files as report_files
from seaformer_deploy.runners.plan import Protocol

PACKAGE = Path(fmts.__file__).resolve().parents[1]
QUICK = Protocol(warmup_iterations=1, warmup_seconds=0.0, iterations=4, min_seconds=0.0,
                 rounds=2)


@pytest.fixture
def onnx_copy():
    """ONNX under another name and suffix, registered for one test only."""
    fmt = fmts.register(replace(fmts.ONNX, name="onnx2", suffix=".onnx2", default=False,
                                rank=9, ort_forms=False))
    yield fmt
    fmts.unregister(fmt.name)


def _unlisted(schema: dict) -> set[str]:
    """Registered formats a schema's format definition does not list."""
    return set(fmts.names()) - set(schema["$defs"]["format"].get("enum", []))


def _format_enums(node: object) -> list[list]:
    """Every enum in a schema that names a registered format, wherever it is."""
    if isinstance(node, dict):
        found = [node["enum"]] if set(node.get("enum", [])) & set(fmts.names()) else []
        return found + [e for v in node.values() for e in _format_enums(v)]
    if isinstance(node, list):
        return [e for v in node for e in _format_enums(v)]
    return []


@pytest.mark.parametrize("schema", [mf.schema, report_files.schema], ids=["manifest", "report"])
def test_schemas_list_exactly_the_registered_formats(schema):
    loaded = schema()
    assert _unlisted(loaded) == set()
    assert _format_enums(loaded) == [list(fmts.names())]    # one definition, every use refers


def test_a_registered_format_needs_no_schema_edit(onnx_copy):
    """Both schemas take their format enum from the registry when loaded, and their files name
    no format, so a newly registered format cannot be missing from either."""
    assert _unlisted(mf.schema()) == set() and _unlisted(report_files.schema()) == set()
    for name in ("export/manifest.schema.json", "reports/report.schema.json"):
        raw = json.loads((PACKAGE / name).read_text())
        assert _format_enums(raw) == [], f"{name} lists formats itself"


def test_runtime_rewrites_are_declared_by_the_formats_and_defined_once():
    declared = {n for f in fmts.names() for n in fmts.get(f).runtime_rewrites}
    assert declared == set(rewrites.RUNTIME_REPLACEMENTS) | set(rewrites.RUNTIME_FUSIONS)
    assert not set(rewrites.RUNTIME_REPLACEMENTS) & set(rewrites.RUNTIME_FUSIONS)


def test_an_unknown_format_is_a_user_error_everywhere():
    with pytest.raises(UserError, match="unknown format 'tflite': the registered formats are "
                                        "onnx, pte"):
        rewrites.runtime_form(torch.nn.Identity(), torch.zeros(1), "tflite")
    with pytest.raises(UserError, match="unknown format"):
        fmts.unregister("tflite")


def test_names_and_suffixes_are_unique():
    with pytest.raises(ValueError, match="clashes with the registered onnx"):
        fmts.register(replace(fmts.ONNX, name="onnx3"))
    with pytest.raises(ValueError, match="clashes with the registered pte"):
        fmts.register(replace(fmts.PTE, suffix=".other"))


def test_defaults_and_table_order():
    assert fmts.export_defaults() == ("onnx", "pte") == ExportOptions("seaformer-t").formats
    assert fmts.bench_defaults() == ("pte", "onnx") == BenchOptions(Path(".")).formats
    assert fmts.by_rank({"onnx", "pte", "nothing"}) == ("pte", "onnx", "nothing")
    assert sorted(["model.fp32.onnx", "stem.fp16.pte", "model.fp32.pte"],
                  key=artifact_order) == ["model.fp32.pte", "stem.fp16.pte", "model.fp32.onnx"]


def test_devices_run_what_their_runners_run(onnx_copy):
    assert LocalDevice().formats == fmts.by_rank() and LocalDevice().formats[-1] == "onnx2"
    assert fmts.runnable_on("adb") == tuple(
        f for f in fmts.by_rank() if fmts.get(f).runner is fmts.RunnerKind.NATIVE) == ("pte",)
    plan = block_plan([SimpleNamespace(format=f) for f in ("onnx2", "onnx", "pte")], 2)
    assert [f for f, _ in plan] == ["pte", "onnx", "onnx2", "onnx2", "onnx", "pte"]


def test_partitioners_are_the_formats_list():
    conv = torch.nn.Conv2d(3, 4, 1).eval()
    _, stats = pte_export.export_pte(conv, [torch.zeros(1, 3, 8, 8)], backends=())
    assert stats["backend"] == "none" and stats["partitions"] == 0
    _, stats = pte_export.export_pte(conv, [torch.zeros(1, 3, 8, 8)], fmts.PTE.partitioners)
    assert stats["backend"] == "XnnpackBackend" and stats["partitions"] == 1
    with pytest.raises(UserError, match="unknown ExecuTorch backend qnn .* knows xnnpack"):
        pte_export.partitioners(["qnn"])


# Format names compared or looked up as strings: what a registry makes unnecessary.
BRANCH = re.compile(r"""(==|!=)\s*["'](pte|onnx|ort)["']|["'](pte|onnx|ort)["']\s*(in\b|==|!=)"""
                    r"""|\[\s*["'](pte|onnx|ort)["']\s*\]""")


def test_no_code_outside_the_registry_branches_on_a_format_name():
    found = [f"{path.relative_to(PACKAGE)}:{i}: {line.strip()}"
             for path in PACKAGE.rglob("*.py") if path.name != "formats.py"
             for i, line in enumerate(path.read_text().splitlines(), 1) if BRANCH.search(line)]
    assert found == []


def test_a_format_registered_here_flows_through_export_and_bench(onnx_copy, tmp_path):
    result = export(ExportOptions(model="seaformer-t", input_size=(64, 64), out_root=tmp_path,
                                  formats=("onnx2",), precisions=("fp32",), components=False))
    (art,) = result.manifest.to_dict()["artifacts"]
    assert art["path"] == "model.fp32.onnx2" and art["format"] == "onnx2"
    assert art["parity"]["passed"] and art["inputs"][0]["dim_order"] == [0, 1, 2, 3]
    assert result.manifest.to_dict()["deploy_form"]["runtime_rewrites"] == {
        "onnx2": [{"name": "matmul_upsampling", "modules": 2}]}
    run = bench(BenchOptions(result.folder, formats=("onnx2",), precisions=("fp32",),
                             protocol=QUICK, blocks=1, precision=0.0))
    (measured,) = run.measurements
    assert run.runners["onnx2"].identity["runtime"] == "onnxruntime"
    assert len(measured.runs[0].samples_ms) >= QUICK.iterations and measured.outputs


@pytest.mark.parametrize("order", [("onnx", "optcopy"), ("optcopy", "onnx")])
def test_an_artifact_and_another_output_may_not_share_a_name(order, tmp_path):
    """A format whose artifacts take the name of ONNX's --ort-forms optimised graph: whichever
    comes second is refused instead of replacing the other."""
    same = fmts.register(replace(fmts.ONNX, name="optcopy", suffix=".optimized.onnx",
                                 default=False, rank=9, ort_forms=False))
    second = "--ort-forms of model.fp32.onnx" if order[0] == "optcopy" else "the optcopy artifact"
    try:
        with pytest.raises(UserError, match=f"model.fp32.optimized.onnx: {second} would replace "
                                            f"a file this export already wrote"):
            export(ExportOptions(model="seaformer-t", input_size=(64, 64), out_root=tmp_path,
                                 formats=order, precisions=("fp32",), components=False,
                                 ort_forms=True))
        assert list(tmp_path.iterdir()) == []
    finally:
        fmts.unregister(same.name)
