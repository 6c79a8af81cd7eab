"""INT8 artifacts: static quantization calibrated on each unit's true inputs, checked like the
others, lowered to one XNNPACK partition, and benched by the native runner."""

from __future__ import annotations

import hashlib

import onnx
import pytest

from seaformer_deploy.bench.run import BenchOptions, bench
from seaformer_deploy.export.pipeline import ExportOptions, export
from seaformer_deploy.export.precision import Precision
from seaformer_deploy.export.samples import sample_batch
from seaformer_deploy.export.units import reference_tensors
from seaformer_deploy.export.weights import synthetic_model
from seaformer_deploy.reports import build
from seaformer_deploy.runners.plan import Protocol

SIZE = (128, 128)
UNITS = ("model", "stem", "context", "spatial", "head")


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    return export(ExportOptions(model="seaformer-t", input_size=SIZE, precisions=("int8",),
                                out_root=tmp_path_factory.mktemp("int8")))


def _by_path(result) -> dict:
    return {a.path: a for a in result.manifest.artifacts}


def test_every_unit_is_exported_and_passes_the_int8_gate(int8_export):
    arts = _by_path(int8_export)
    assert set(arts) == {f"{u}.int8.{f}" for u in UNITS for f in ("onnx", "pte")}
    assert int8_export.manifest.parity_passed
    for art in arts.values():
        assert art.parity.thresholds == Precision.INT8.thresholds
        assert [t.dtype for t in art.inputs] == ["float32"] * len(art.inputs)   # FP32 edges
    assert {(c.format, c.precision) for c in int8_export.manifest.chains} == {
        ("onnx", "int8"), ("pte", "int8")}


def test_the_pte_is_one_xnnpack_partition_with_int8_weights(int8_export):
    params = int8_export.manifest.model.params
    art = _by_path(int8_export)["model.int8.pte"]
    assert art.executorch["partitions"] == 1 and art.non_delegated_ops() == {}
    # FP32 weights alone would take 4 bytes per parameter; every weight is INT8.
    assert art.bytes < 1.6 * params
    assert art.quantization["fp32_modules"] == []


def test_the_onnx_is_qdq_classifier_included(int8_export):
    art = _by_path(int8_export)["model.int8.onnx"]
    assert art.operators["QuantizeLinear"] > 0 and art.operators["DequantizeLinear"] > 0
    graph = onnx.load(int8_export.folder / art.path).graph
    zero_points = {i.name: i.data_type for i in graph.initializer}
    activations = {zero_points[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"}
    assert activations == {onnx.TensorProto.UINT8}          # U8S8: ORT's fast x86 kernels
    producer = {o: n for n in graph.node for o in n.output}
    last = producer[graph.output[0].name]
    while last.op_type != "Conv":
        last = producer[last.input[0]]
    assert producer[last.input[1]].op_type == "DequantizeLinear"      # INT8 weights too


def test_each_component_is_calibrated_on_its_true_inputs(int8_export):
    """The context branch saw the stem's FP32 outputs for the sample images (not images): the
    recorded hash is that of those tensors, recomputed here from the model."""
    model = synthetic_model("seaformer-t", SIZE)
    env = reference_tensors(model, sample_batch(*SIZE, count=4), "logits", SIZE)
    arts = _by_path(int8_export)
    inputs = {c.name: [t.name for t in c.inputs] for c in int8_export.manifest.components}
    inputs["model"] = ["image"]
    assert inputs["context"] == ["shared"]
    for unit, names in inputs.items():
        digest = hashlib.sha256()
        for i in range(4):
            for name in names:
                digest.update(env[name][i:i + 1].contiguous().numpy().tobytes())
        calibration = arts[f"{unit}.int8.onnx"].quantization["calibration"]
        assert calibration["samples"] == 4 and calibration["sha256"] == digest.hexdigest(), unit


def test_int8_is_not_a_default_precision():
    assert ExportOptions("seaformer-t").precisions == ("fp32", "fp16")
    assert "int8" in Precision.names()


def test_the_native_runner_benches_int8_with_device_parity(int8_export):
    quick = Protocol(warmup_iterations=1, warmup_seconds=0.0, iterations=3, min_seconds=0.0,
                     rounds=1)
    report = build(bench(BenchOptions(int8_export.folder, formats=("pte",),
                                      precisions=("int8",), protocol=quick,
                                      precision=0.0)))
    assert {a.path for a in report.artifacts} == {f"{u}.int8.pte" for u in UNITS}
    assert all(a.parity is not None and a.parity.passed for a in report.artifacts)
    assert [c.precision for c in report.components] == ["int8"]


def test_the_ort_format_of_int8_is_the_quantized_graph(tmp_path):
    result = export(ExportOptions(model="seaformer-t", input_size=(64, 64), formats=("ort",),
                                  precisions=("fp32", "int8"), components=False,
                                  out_root=tmp_path))
    arts = _by_path(result)
    ops = arts["model.int8.ort"].operators        # ONNX Runtime may fuse QDQ into QLinear ops
    assert any("QuantizeLinear" in op or op.startswith("QLinear") for op in ops), ops
    assert arts["model.int8.ort"].bytes < 0.6 * arts["model.fp32.ort"].bytes
    assert arts["model.int8.ort"].quantization["calibration"]["samples"] == 4


def test_int8_edges_cost_no_transposes(int8_export):
    """Each INT8 .pte input's NHWC -> NCHW transpose, its quantize and XNNPACK's NCHW -> NHWC
    transpose: the pair around the quantize is removed, as at FP32 edges."""
    for art in _by_path(int8_export).values():
        if art.format == "pte":
            assert art.executorch["cancelled_transposes"] == [
                len(art.inputs) + len(art.outputs)], art.path


def test_convolution_and_relu6_are_quantized_as_one_operator():
    """No quantize / dequantize pair between a convolution and its ReLU6: the clamp's output is
    observed (a range within [0, 6], not the convolution's signed one) and XNNPACK fuses the
    clamp into the convolution."""
    import torch
    from torch import nn

    from seaformer_deploy.export.quantize import HARDTANH, pt2e_quantized

    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 4, 1),
                         nn.ReLU6(inplace=True)).eval()
    example = [torch.randn(1, 3, 16, 16) * 4]
    graph = pt2e_quantized(body, example, [example]).graph
    clamps = [n for n in graph.nodes if n.op == "call_function" and n.target in HARDTANH]
    assert len(clamps) == 2
    for clamp in clamps:
        assert "conv" in str(clamp.args[0].target), clamp.args[0].target
        (user,) = clamp.users
        assert user.target == torch.ops.quantized_decomposed.quantize_per_tensor.default
        scale, zero_point = user.args[1:3]
        assert zero_point == -128 and scale <= 6 / 255 * 1.001      # within [0, 6]
