"""Static INT8: per-channel symmetric INT8 weights, per-tensor INT8 activations, calibrated on
the unit's true input tensors.

Each unit is calibrated on what it sees inside the model: the context branch on the stem's FP32
outputs for the sample images, not on images, so the quantized components chain like the FP32
ones. Neither tool is given more than the export's samples. Activation ranges: the
XNNPACKQuantizer's histogram observer for the .pte, min/max for the .onnx (each tool's
default); weights: per-channel min/max in both.

Every convolution is quantized, the classifier (every family's ``conv_seg``) too, unless named
in ``--keep-fp32``: kept FP32 it was a constant 1.4 of 13 ms of seeded SeaFormer-T 512x512's
INT8 .pte on an AVX-512 Xeon (its FP32 GEMM and the 160 -> 150 channel slice), and rounding
the logits to 256 levels changed the label agreement by less than its noise (86.63 -> 86.67 %
at 512, 93.1 -> 93.1 % at 256; PSNR 51.1 -> 50.7 dB).

- ``.pte``: PT2E (torchao's ``prepare_pt2e`` / ``convert_pt2e``) with ExecuTorch's
  ``XNNPACKQuantizer``; the quantize / dequantize pairs lower into the XNNPACK delegate, which
  runs the convolutions and matmuls in INT8.
- ``.onnx``: ONNX Runtime's ``quantize_static`` on the unit's FP32 graph, in QDQ form (what ONNX
  Runtime Mobile and NNAPI / QNN execution providers take), per-channel int8 weights, uint8
  activations (U8S8).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..quiet import exporters_quieted

Batches = Sequence[Sequence[torch.Tensor]]   # one list of the unit's inputs per sample
PT2E_METHOD = "activations: histogram observer; weights: min/max per channel"
QDQ_METHOD = "activations: min/max, uint8 asymmetric; weights: min/max per channel, int8"


def calibration_record(batches: Batches, tool: str, method: str, source: str,
                       fp32_modules: Sequence[str]) -> dict:
    """What the manifest records of a quantization: the scheme, the tool, the calibration set
    (its size, and a hash of the exact tensors the observers saw) and the modules left FP32
    (names inside the unit)."""
    digest = hashlib.sha256()
    for batch in batches:
        for t in batch:
            digest.update(t.detach().contiguous().numpy().tobytes())
    return {"scheme": "static: INT8 weights per output channel (symmetric), INT8 activations "
                      "per tensor", "tool": tool,
            "calibration": {"samples": len(batches), "sha256": digest.hexdigest(),
                            "source": source, "method": method},
            "fp32_modules": list(fp32_modules)}


def pt2e_quantized(module: nn.Module, example: Sequence[torch.Tensor], batches: Batches,
                   keep_fp32: Sequence[str] = (), only: str | None = None,
                   traced: nn.Module | None = None) -> nn.Module:
    """``module`` with INT8 quantize / dequantize pairs, calibrated on ``batches``, ready for
    torch.export and the XNNPACK partitioner. The modules named in ``keep_fp32`` (names
    inside ``module``) stay FP32; with ``only``, nothing but that module
    is quantized (the sensitivity analysis; weights and graph inputs carry no module and are
    left to the operators that use them). ``traced``: ``module`` already captured by
    ``capture`` (it is copied, not changed), to trace once for many quantizations."""
    import copy

    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    keep = list(keep_fp32)
    quantizer = _filtered_quantizer(
        lambda node: not _inside(node, keep) and (only is None or _inside(node, [only])
                                                    or not node.meta.get("nn_module_stack")))
    with exporters_quieted():
        graph = copy.deepcopy(traced) if traced is not None else capture(module, example)
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for batch in batches:
                prepared(*batch)
        return convert_pt2e(prepared)


def _filtered_quantizer(keep: Callable[[object], bool]):
    """ExecuTorch's XNNPACKQuantizer (per-channel symmetric weights, static activations) that
    annotates only the nodes ``keep`` accepts. Its filter function alone is not enough: in
    executorch 1.5.1 the concatenation annotator ignores it, so a block meant to stay FP32
    still got INT8 quantize / dequantize pairs around every torch.cat."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)

    class Filtered(XNNPACKQuantizer):
        def annotate(self, model):
            _annotate_conv_clamp(model, self.global_config, keep)
            model = super().annotate(model)
            for node in model.graph.nodes:
                if node.target == torch.ops.aten.cat.default and not keep(node):
                    node.meta.pop("quantization_annotation", None)
            return model

    quantizer = Filtered().set_global(get_symmetric_quantization_config(is_per_channel=True))
    quantizer.set_filter_function(keep)
    return quantizer


HARDTANH = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)


def _annotate_conv_clamp(graph, config, keep: Callable[[object], bool]) -> None:
    """Quantize convolution + ReLU6 (``hardtanh``) as one operator, as the quantizer already
    does convolution + ReLU: the clamp's output, not the convolution's, gets the observer.

    ExecuTorch 1.5.1's XNNPACKQuantizer fuses only ReLU; after any other convolution it puts a
    quantize / dequantize pair between the convolution and the clamp, which the XNNPACK
    delegate then runs as a separate INT8 clamp, one more pass over the tensor, and the observer
    sees the convolution's signed range, so the levels below zero are spent on values the clamp
    discards. Annotated this way the delegate fuses the clamp into the convolution (its
    partitioner takes conv -> hardtanh -> quantize), and the range lies within [0, 6]. (In
    SeaFormer the stems use ReLU; ReLU6 follows the attention's detail convolutions.)"""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        _is_annotated, _is_conv_node, _mark_nodes_as_annotated)
    from torchao.quantization.pt2e.quantizer import (
        QuantizationAnnotation, get_bias_qspec, get_input_act_qspec, get_output_act_qspec,
        get_weight_qspec)
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    for clamp in graph.graph.nodes:
        if clamp.op != "call_function" or clamp.target not in HARDTANH:
            continue
        conv = clamp.args[0]
        if not _is_conv_node(conv) or len(conv.users) > 1:
            continue
        weight, bias = conv.args[1], (conv.args[2] if len(conv.args) > 2 else None)
        inputs = {conv.args[0]: get_input_act_qspec(config), weight: get_weight_qspec(config)}
        partition = [clamp, conv, weight]
        if isinstance(bias, torch.fx.Node):
            inputs[bias] = get_bias_qspec(config)
            partition.append(bias)
        if _is_annotated(partition) or not all(keep(n) for n in partition):
            continue
        conv.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=inputs,
                                                             _annotated=True)
        clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
            output_qspec=get_output_act_qspec(config), _annotated=True)
        _mark_nodes_as_annotated(partition)


def capture(module: nn.Module, example: Sequence[torch.Tensor]) -> nn.Module:
    """The graph PT2E quantizes: ``module`` traced by torch.export (non-strict)."""
    with exporters_quieted():
        return torch.export.export(module, tuple(example), strict=False).module()


def classifiers(module: nn.Module) -> list[str]:
    """The module names of the classifiers in ``module`` (the logits' last convolution)."""
    return [name for name, _ in module.named_modules() if name.rpartition(".")[2] == "conv_seg"]


def _inside(node, names: list[str]) -> bool:
    """Whether a traced node comes from one of the modules ``names`` (or their children). A
    name matches anywhere in a module path, on dot boundaries: the exporters wrap the unit
    (NHWC interface, casts), which prefixes every path."""
    paths = [path for path, _ in (node.meta.get("nn_module_stack") or {}).values()]
    return any(within(p, names) for p in paths)


def within(path: str, names: Sequence[str]) -> bool:
    """Whether module ``path`` lies in one of the modules ``names``, matched on dot boundaries
    anywhere in the path (both exporters prefix their wrappers' names)."""
    return any(f".{n}." in f".{path}." for n in names)


def torchao_version() -> str:
    import torchao

    return torchao.__version__


def qdq_quantized(fp32: bytes, input_names: Sequence[str], batches: Batches,
                  keep_fp32: Sequence[str] = ()) -> bytes:
    """The FP32 ONNX graph ``fp32`` statically quantized to QDQ by ONNX Runtime; the nodes
    named in ``keep_fp32`` stay FP32."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{n: t.numpy().astype(np.float32) for n, t in zip(input_names, b)}
                               for b in batches])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory(prefix="seaformer-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(fp32)
        with exporters_quieted():
            quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                            # U8S8: on an AVX-512 VNNI Xeon, ONNX Runtime ran SeaFormer-T
                            # 512x512 1.74x faster than with int8 activations (S8S8), at the
                            # same label agreement; uint8 activations are also what the QNN
                            # and NNAPI execution providers take.
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=list(keep_fp32),
                            extra_options={"ActivationSymmetric": False,
                                           "WeightSymmetric": True})
        return target.read_bytes()
