"""ONNX artifacts: torch.export-based exporter, checked, shape-inferred, simplified; FP16, INT8.

The TorchScript exporter the official code uses (opset 11) leaves shape arithmetic (Shape,
Gather, Unsqueeze, Concat) and per-call Resize of the positional embeddings in the graph. The
torch.export-based exporter sees static shapes and constant-folds them, and onnxsim removes what
is left. Opset 18 is the exporter's native opset (its down-conversion to 17 fails on ReduceMean's
axes input), and ONNX Runtime Mobile runs it.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from onnx import TensorProto

from ..quiet import exporters_quieted
from .formats import ExportJob
from .quantize import QDQ_METHOD, calibration_record, qdq_quantized, within
from .units import Unit

OPSET = 18

# Operators ONNX Runtime Mobile, MNN, ncnn, TNN and the TFLite converters all implement; anything
# else in an artifact fails the export (the manifest lists each artifact's operators).
MOBILE_OPS = frozenset({
    "Add", "ArgMax", "AveragePool", "Cast", "Clip", "Concat", "Constant", "Conv", "Div",
    "Flatten", "Gemm", "GlobalAveragePool", "HardSigmoid", "HardSwish", "MatMul", "MaxPool",
    "Mul", "Pad", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Sigmoid", "Slice",
    "Softmax", "Split", "Squeeze", "Sub", "Transpose", "Unsqueeze",
    "QuantizeLinear", "DequantizeLinear",       # INT8 in QDQ form, which they all read
})


def export_artifact(job: ExportJob) -> tuple[bytes, dict]:
    """The ONNX format's exporter (see ``formats``): the graph's bytes and manifest details."""
    proto = graph(job)
    return proto.SerializeToString(), {"onnx": describe(proto),
                                       "operators": operator_histogram(proto),
                                       **quantization_details(job)}


def graph(job: ExportJob) -> onnx.ModelProto:
    """The job's graph: the unit's FP32 graph, its FP16 conversion, or its INT8 QDQ form. The
    FP32 graph is traced once per export for all formats that share a runtime form
    (``job.shared``)."""
    key = ("onnx-fp32", job.unit.name, job.fmt.runtime_rewrites)
    if key not in job.shared:
        job.shared[key] = export_onnx(job.unit, job.example, scopes := {})
        job.shared[key + ("scopes",)] = scopes
    proto = job.shared[key]
    if job.precision == "fp16":
        return to_fp16(proto, keep_io_fp32=job.fp32_io)
    if job.precision == "int8":
        return int8_graph(proto, job, job.shared[key + ("scopes",)])
    return proto


def int8_graph(fp32: onnx.ModelProto, job: ExportJob, scopes: dict[str, str]
               ) -> onnx.ModelProto:
    """``fp32`` in QDQ form, calibrated on the unit's own inputs (quantize.py). The nodes
    traced from ``job.unit.fp32_modules`` (``scopes``: node -> module) stay FP32."""
    keep = [node for node, module in scopes.items() if within(module, job.unit.fp32_modules)]
    data = qdq_quantized(fp32.SerializeToString(), job.unit.input_names, job.calibration,
                         sorted(set(keep)))
    proto = onnx.load_from_string(data)
    validate(proto, f"{job.unit.name} int8")
    return proto


def quantization_details(job: ExportJob) -> dict:
    """The record's ``quantization`` block of an INT8 graph (none otherwise)."""
    if job.precision != "int8":
        return {}
    import onnxruntime

    return {"quantization": calibration_record(
        job.calibration, f"onnxruntime.quantization.quantize_static, QDQ "
                         f"(onnxruntime {onnxruntime.__version__})", QDQ_METHOD,
        job.calibration_source, list(job.unit.fp32_modules))}


def export_onnx(unit: Unit, example: Sequence[torch.Tensor],
                scopes: dict[str, str] | None = None) -> onnx.ModelProto:
    """Trace ``unit`` with static shapes and return a checked, simplified FP32 graph. Fills
    ``scopes`` with each node's module (its name inside ``unit.module``)."""
    with exporters_quieted():
        program = torch.onnx.export(capture(unit.module, example), (), dynamo=True,
                                    opset_version=OPSET, input_names=list(unit.input_names),
                                    output_names=list(unit.output_names), optimize=True,
                                    external_data=False, verbose=False)
    if scopes is not None:
        scopes.update(node_modules(program.model_proto))
    model = simplify(program.model_proto)
    validate(model, unit.name)
    return model


def node_modules(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> the innermost module it was traced from, read from the exporter's name
    scopes (onnxsim drops the metadata but keeps node names, so it is read before)."""
    found = {}
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        # The scopes run from the root module ('') down to the innermost one, then name
        # the operator itself: ['', 'inner', 'inner.backbone', ..., 'conv2d'].
        if len(scopes := ast.literal_eval(props.get("pkg.torch.onnx.name_scopes", "[]"))) > 1:
            found[node.name] = scopes[-2]
    return found


def capture(module: torch.nn.Module, example: Sequence[torch.Tensor]
            ) -> torch.export.ExportedProgram:
    """The graph, traced by ``torch.export`` (non-strict) ourselves.

    Given a module, ``torch.onnx.export`` tries one capture strategy after another and takes any
    failure of one as a reason to try the next. A Ctrl-C that lands in a capture often surfaces
    as some other exception (cleanup code that fails on the half-done state, a half-imported
    module), so the exporter carried on with the next strategy: the interrupt was lost and the
    export could complete. Handing it an ExportedProgram skips that loop, so an interrupt (or
    any capture failure) propagates, and the graph comes from the strategy that worked anyway.
    """
    return torch.export.export(module, tuple(example), strict=False)


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxsim import simplify as onnxsim_simplify

    simplified, ok = onnxsim_simplify(model)
    if not ok:
        raise RuntimeError("onnxsim could not verify the simplified graph")
    return simplified


def to_fp16(model: onnx.ModelProto, keep_io_fp32: bool) -> onnx.ModelProto:
    """Convert weights and activations to FP16 (ONNX Runtime's converter)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with exporters_quieted():
        half = convert_float_to_float16(model, keep_io_types=keep_io_fp32)
    validate(half, "fp16")
    return half


def validate(model: onnx.ModelProto, what: str) -> None:
    """Checker-clean, fully shape-inferred with static shapes, no float64, mobile operators only."""
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    for value in [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]:
        dims = value.type.tensor_type.shape.dim
        if not dims and value.type.tensor_type.elem_type == 0:
            raise RuntimeError(f"{what}: no inferred type for {value.name}")
        if any(not d.HasField("dim_value") for d in dims):
            raise RuntimeError(f"{what}: {value.name} has a dynamic shape")
    doubles = [t.name for t in model.graph.initializer if t.data_type == TensorProto.DOUBLE]
    doubles += [v.name for v in inferred.graph.value_info
                if v.type.tensor_type.elem_type == TensorProto.DOUBLE]
    if doubles:
        raise RuntimeError(f"{what}: float64 tensors {doubles[:5]}")
    foreign = sorted(set(operator_histogram(model)) - MOBILE_OPS)
    if foreign:
        raise RuntimeError(f"{what}: operators outside the mobile set: {', '.join(foreign)}")


ORT_FORMS = {"optimized_onnx": ".optimized.onnx", "ort_format": ".ort"}


def save_ort_forms(path: Path) -> dict[str, Path]:
    """ONNX Runtime's optimised graph and its ORT format (what ONNX Runtime Mobile loads).

    Extended optimisations only: the 'all' level adds x86-specific layouts (NCHWc) that would not
    run on a phone. Written next to ``path`` by ONNX Runtime itself.
    """
    import onnxruntime as ort

    written = {}
    for kind, suffix in ORT_FORMS.items():
        target = path.with_name(path.name.removesuffix(".onnx") + suffix)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(target)
        if kind == "ort_format":
            options.add_session_config_entry("session.save_model_format", "ORT")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        written[kind] = target
    return written


def operator_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def save(model: onnx.ModelProto, path: Path) -> None:
    onnx.save_model(model, str(path))


def describe(model: onnx.ModelProto) -> dict:
    return {"opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "ir_version": model.ir_version, "operator_set": "mobile",
            "nodes": len(model.graph.node)}
