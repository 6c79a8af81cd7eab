"""The export pipeline end to end: artifacts, manifest, parity gate, atomicity, cache."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from seaformer_deploy.export import manifest as mf
from seaformer_deploy.export import onnx_export, pte_export
from seaformer_deploy.export.layouts import from_layout, to_layout
from seaformer_deploy.export.parity import THRESHOLDS, compare
from seaformer_deploy.export.pipeline import ExportOptions, ParityError, export
from seaformer_deploy.export.runtimes import run_onnx, run_pte
from seaformer_deploy.export.samples import sample_batch
from seaformer_deploy.export.weights import synthetic_model
from seaformer_deploy.models.layers import Conv2d_BN

from helpers import SMALL
UNITS = ("model", "stem", "context", "spatial", "head")


def _artifacts(result, **match):
    return [a for a in result.manifest.to_dict()["artifacts"]
            if all(a[k] == v for k, v in match.items())]


def test_every_artifact_is_written_and_described(small_export):
    manifest = small_export.manifest.to_dict()
    mf.validate(manifest)
    assert json.loads((small_export.folder / "manifest.json").read_text()) == manifest
    combos = {(a["unit"], a["format"], a["precision"]) for a in manifest["artifacts"]}
    assert combos == {(u, f, p) for u in UNITS for f in ("onnx", "pte") for p in ("fp32", "fp16")}
    for art in manifest["artifacts"]:
        path = small_export.folder / art["path"]
        assert path.stat().st_size == art["bytes"] and mf.sha256_path(path) == art["sha256"]
    assert manifest["weights"]["source"] == "synthetic"
    assert manifest["parity_passed"]


def test_no_batchnorm_in_any_graph(small_export):
    for art in _artifacts(small_export, format="onnx"):
        graph = onnx.load(str(small_export.folder / art["path"])).graph
        assert not [n for n in graph.node if n.op_type == "BatchNormalization"], art["path"]
    for art in _artifacts(small_export, format="pte"):
        assert not [op for op in art["operators"] if "batch_norm" in op], art["path"]


def test_batchnorm_check_sees_unfolded_graphs():
    """Negative control: the same checks do find BN when nothing was folded."""
    block = Conv2d_BN(3, 8, 3, 1, 1).eval()
    _, stats = pte_export.export_pte(block, [torch.zeros(1, 3, 16, 16)])
    assert any("batch_norm" in op for op in pte_export.operator_histogram(stats))
    program = torch.onnx.export(block, (torch.zeros(1, 3, 16, 16),), dynamo=True, optimize=False)
    assert any(n.op_type == "BatchNormalization" for n in program.model_proto.graph.node)


def test_onnx_graphs_are_static_clean_and_mobile(small_export):
    for art in _artifacts(small_export, format="onnx"):
        model = onnx.load(str(small_export.folder / art["path"]))
        onnx_export.validate(model, art["path"])                 # checker, shapes, no float64
        assert art["onnx"]["opset"] >= 17
        assert set(art["operators"]) <= onnx_export.MOBILE_OPS
        assert art["operators"] == onnx_export.operator_histogram(model)


def test_each_format_gets_its_runtime_form(small_export):
    """ONNX graphs resize by matrix products, .pte programs keep XNNPACK's resize and pad the
    classifier; the manifest says which rewrite went where."""
    runtime = small_export.manifest.to_dict()["deploy_form"]["runtime_rewrites"]
    assert runtime == {"onnx": [{"name": "matmul_upsampling", "modules": 2}],
                       "pte": [{"name": "aligned_classifier", "modules": 1}]}
    for art in _artifacts(small_export, format="onnx"):
        assert "Resize" not in art["operators"], art["path"]
    by_path = {a["path"]: a["operators"] for a in _artifacts(small_export, format="pte")}
    assert by_path["model.fp32.pte"].get("aten_upsample_bilinear2d_vec") == 2
    assert by_path["spatial.fp32.pte"].get("aten_upsample_bilinear2d_vec") == 2
    assert "aten_slice_copy_tensor" in by_path["head.fp32.pte"]     # the padded classes cut off


def test_delegation_is_recorded(small_export):
    for art in _artifacts(small_export, format="pte"):
        et = art["executorch"]
        assert et["delegated_nodes"] > 0
        assert et["partitions"] == 1 and et["non_delegated_ops"] == {}, art["path"]
    # At 256x256 the only warning is the layout one: `shared` is 32 x 32 x 32 (C == H == W).
    assert [w.split(" has ")[0] for w in small_export.warnings] == ["shared [1, 32, 32, 32]"]
    assert "stem.fp32.pte" in small_export.warnings[0]
    assert "model.fp32.pte" not in small_export.warnings[0]


def test_fp16_artifacts_pass_their_thresholds(small_export):
    fp16 = _artifacts(small_export, precision="fp16")
    assert len(fp16) == 10
    for art in fp16:
        assert art["inputs"][0]["dtype"] == "float16"
        worst = art["parity"]["worst"]
        assert art["parity"]["passed"] and worst["psnr_db"] >= THRESHOLDS["fp16"]["psnr_db"]
        if worst["label_agreement"] is not None:
            assert worst["label_agreement"] >= THRESHOLDS["fp16"]["label_agreement"]


@pytest.mark.parametrize("fmt", ["onnx", "pte"])
def test_components_chain_to_the_whole_model(small_export, fmt):
    """Run the four FP32 component artifacts in sequence ourselves: the logits match PyTorch."""
    images = sample_batch(*SMALL)
    reference = synthetic_model("seaformer-t", SMALL)(images).detach().numpy()
    run = {"onnx": run_onnx, "pte": run_pte}[fmt]
    folder = small_export.folder
    arts = {a["path"]: a for a in small_export.manifest.to_dict()["artifacts"]}
    layout = arts[f"model.fp32.{fmt}"]["inputs"][0]["layout"]        # the components' too
    env = {"image": [to_layout(images[i:i + 1].numpy(), layout) for i in range(len(images))]}
    for comp in small_export.manifest.to_dict()["components"]:
        art = arts[f"{comp['name']}.fp32.{fmt}"]
        outs, _ = run(folder / art["path"],
                      [[env[t["name"]][i] for t in comp["inputs"]] for i in range(len(images))],
                      [t["layout"] for t in art["inputs"]])
        for j, tensor in enumerate(comp["outputs"]):
            env[tensor["name"]] = [o[j] for o in outs]
    chained = from_layout(np.concatenate(env["logits"]), layout)
    metrics = compare(reference, chained, "logits")
    assert metrics.psnr_db >= THRESHOLDS["fp32"]["psnr_db"]
    assert metrics.label_agreement >= THRESHOLDS["fp32"]["label_agreement"]
    whole_art = arts[f"model.fp32.{fmt}"]
    outs, _ = run(folder / whole_art["path"], [[x] for x in env["image"]],
                  [t["layout"] for t in whole_art["inputs"]])
    whole = from_layout(np.concatenate([o[0] for o in outs]), layout)
    assert compare(whole, chained, "logits").psnr_db >= THRESHOLDS["fp32"]["psnr_db"]


def test_manifest_records_the_chains(small_export):
    chains = {(c["format"], c["precision"]): c for c in small_export.manifest.to_dict()["chains"]}
    assert set(chains) == {(f, p) for f in ("onnx", "pte") for p in ("fp32", "fp16")}
    assert all(c["parity"]["passed"] for c in chains.values())


def test_second_run_is_a_cache_hit(small_export):
    started = time.perf_counter()
    again = export(ExportOptions(model="seaformer-t", input_size=SMALL,
                                 out_root=small_export.folder.parent))
    assert again.cached and time.perf_counter() - started < 10
    assert again.manifest == small_export.manifest


def _quick(out, **kw):
    """A fast configuration: whole model only, ONNX FP32."""
    return ExportOptions(model="seaformer-t", input_size=SMALL, out_root=out, formats=("onnx",),
                         precisions=("fp32",), components=False, **kw)


def test_corrupted_weights_fail_the_export(tmp_path, monkeypatch):
    real = onnx_export.simplify

    def corrupt(model):
        model = real(model)
        biggest = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
        array = onnx.numpy_helper.to_array(biggest) * 1.5
        biggest.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.float32), biggest.name))
        return model

    monkeypatch.setattr(onnx_export, "simplify", corrupt)
    with pytest.raises(ParityError) as err:
        export(_quick(tmp_path))
    bad = err.value.manifest.to_dict()["artifacts"][0]["parity"]
    assert not bad["passed"] and bad["failures"]
    assert list(tmp_path.iterdir()) == []               # nothing handed over, no staging left
    report = export(_quick(tmp_path, parity_gate=False))
    assert not report.manifest.to_dict()["parity_passed"]           # --no-parity-gate: written, flagged


def test_interrupted_export_leaves_nothing_half_written(tmp_path, monkeypatch):
    first = export(_quick(tmp_path))

    def contents():
        return {p.relative_to(first.folder): p.read_bytes()
                for p in first.folder.rglob("*") if p.is_file()}

    before = contents()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_export, "to_fp16", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(replace(_quick(tmp_path), precisions=("fp32", "fp16"), force=True))
    assert [p.name for p in tmp_path.iterdir()] == [first.folder.name]
    assert contents() == before


def test_stale_staging_folders_are_swept(tmp_path):
    stale = tmp_path / ".staging-seaformer-t_256x256_logits-999999-1"
    stale.mkdir()
    (stale / "model.fp32.onnx").write_bytes(b"half")
    export(_quick(tmp_path))
    assert not stale.exists()


def test_smallest_input_size_exports_every_component(tiny_pte_export):
    """At 64x64 the 1/64 context is one pixel. Channels-last dim orders failed there in
    ExecuTorch 1.5.1; logical NHWC tensors (contiguous) do not, so every unit takes them."""
    result = tiny_pte_export
    assert result.manifest.to_dict()["parity_passed"]
    layouts = {a["unit"]: (a["inputs"][0]["layout"], a["inputs"][0]["dim_order"])
               for a in result.manifest.to_dict()["artifacts"]}
    assert layouts == {u: ("NHWC", [0, 1, 2, 3]) for u in UNITS}


def test_labels_output(tmp_path):
    result = export(ExportOptions(model="seaformer-t", input_size=SMALL, out_root=tmp_path,
                                  precisions=("fp32",), components=False, output="labels"))
    for art in result.manifest.to_dict()["artifacts"]:
        assert art["outputs"] == [{"name": "labels", "shape": [1, 256, 256], "dtype": "int64",
                                   "kind": "labels", "layout": "NHW", "dim_order": [0, 1, 2],
                                   "file": "tensors/labels.int64.bin"}]
        assert art["parity"]["passed"]
        assert art["parity"]["worst"]["label_agreement"] >= THRESHOLDS["fp32"]["label_agreement"]
    assert "ArgMax" in result.manifest.to_dict()["artifacts"][0]["operators"]


def test_each_artifact_form_gets_its_own_folder(tmp_path):
    """Non-default forms sit beside the default export instead of replacing it."""
    def name(**kw):
        return ExportOptions(model="seaformer-t", out_root=tmp_path, **kw).folder((64, 64)).name
    assert name() == "seaformer-t_64x64_logits"
    assert name(pte_layout="nchw") == "seaformer-t_64x64_logits_nchw"
    assert name(pte_layout="nchw", formats=("onnx",)) == name(formats=("onnx",))
    assert name(rewrites=False, pte_layout="nchw") == "seaformer-t_64x64_logits_naive_nchw"
