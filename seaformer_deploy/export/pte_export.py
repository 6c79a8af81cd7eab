"""ExecuTorch artifacts: torch.export -> edge -> the format's partitioners (XNNPACK by default)
-> .pte, FP32, FP16 and INT8."""

from __future__ import annotations

import contextlib
import copy
import importlib
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import UserError
from ..quiet import exporters_quieted
from .formats import ExportJob
from .pte_layout import NHWCInterface, inverse_transposes_cancelled, to_nhwc
from .quantize import PT2E_METHOD, calibration_record, pt2e_quantized, torchao_version

# Rows of ExecuTorch's delegation table that are bookkeeping, not operators.
_NOT_OPERATORS = {"getitem", "Total"}
# ExecuTorch backends a format can list in its partitioners: the partitioner's module and
# class, and the backend's name in the delegation statistics.
BACKENDS = {"xnnpack": ("executorch.backends.xnnpack.partition.xnnpack_partitioner",
                        "XnnpackPartitioner", "XnnpackBackend")}


class CastIO(nn.Module):
    """FP16 body with FP32 inputs and floating outputs (the ``--fp32-io`` option)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self.body(*(t.half() for t in inputs))
        # Contiguous: a cast keeps its input's strides, and an NHWC output is a permuted view
        # whose order (0, 3, 1, 2) ExecuTorch cannot express as a memory format.
        return tuple(o.to(torch.float32, memory_format=torch.contiguous_format)
                     if o.is_floating_point() else o for o in outs)


def half_module(module: nn.Module, keep_io_fp32: bool) -> nn.Module:
    body = copy.deepcopy(module).half().eval()
    return CastIO(body).eval() if keep_io_fp32 else body


def export_artifact(job: ExportJob) -> tuple[bytes, dict]:
    """The .pte format's exporter (see ``formats``): the program's bytes and manifest details.

    With ``job.nhwc`` the program takes and returns its 4-D tensors as (N, H, W, C) (see
    ``pte_layout``): XNNPACK computes in NHWC, so its edges need no layout transposes, and an
    NCHW tensor fed by mistake fails on shape. ``--fp32-io``'s casts wrap that interface: casts
    between the permutes and the body would split the XNNPACK graph in three."""
    module, example = job.unit.module, list(job.example)
    batches = [list(b) for b in job.calibration]
    if job.nhwc:
        module, example = NHWCInterface(module).eval(), [to_nhwc(e) for e in example]
        batches = [[to_nhwc(t) for t in b] for b in batches]
    details = {}
    if job.precision == "fp16":
        module = half_module(module, keep_io_fp32=job.fp32_io)
        example = [e.half() if job.io_dtype == "float16" else e for e in example]
    elif job.precision == "int8":
        module = pt2e_quantized(module, example, batches, job.unit.fp32_modules)
        details["quantization"] = calibration_record(
            batches, f"PT2E + XNNPACKQuantizer (torchao {torchao_version()})", PT2E_METHOD,
            job.calibration_source, list(job.unit.fp32_modules))
    with inverse_transposes_cancelled() if job.nhwc else contextlib.nullcontext() as removed:
        data, stats = export_pte(module, example, job.fmt.partitioners)
    if job.nhwc:
        stats["cancelled_transposes"] = removed      # per partition; [] if the hook missed
    return data, {"executorch": {"version": executorch_version(), **stats},
                  "operators": operator_histogram(stats), **details}


def partitioners(backends: Sequence[str]) -> list:
    """A partitioner for each backend named, in order."""
    if unknown := [b for b in backends if b not in BACKENDS]:
        raise UserError(f"unknown ExecuTorch backend {', '.join(unknown)} in a format's "
                        f"partitioners: export/pte_export.py knows {', '.join(BACKENDS)}.")
    return [getattr(importlib.import_module(BACKENDS[b][0]), BACKENDS[b][1])()
            for b in backends]


def export_pte(module: nn.Module, example: Sequence[torch.Tensor],
               backends: Sequence[str] = ("xnnpack",)) -> tuple[bytes, dict]:
    """Lower ``module`` to ``backends``; return the program bytes and its delegation
    statistics. No backend leaves every operator to ExecuTorch's portable kernels."""
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    with exporters_quieted():
        exported = torch.export.export(module, tuple(example), strict=False)
        edge = to_edge_transform_and_lower(exported, partitioner=partitioners(backends))
        info = get_delegation_info(edge.exported_program().graph_module)
        program = edge.to_executorch()
    table = info.get_operator_delegation_dataframe()
    rows = table[~table.op_type.isin(_NOT_OPERATORS)]
    delegated = rows[rows.occurrences_in_delegated_graphs > 0]
    outside = rows[rows.occurrences_in_non_delegated_graphs > 0]
    stats = {
        "backend": " + ".join(BACKENDS[b][2] for b in backends) or "none",
        "partitions": int(info.num_delegated_subgraphs),
        "delegated_nodes": int(info.num_delegated_nodes),
        "non_delegated_nodes": int(info.num_non_delegated_nodes),
        "delegated_ops": {r.op_type: int(r.occurrences_in_delegated_graphs)
                          for r in delegated.itertuples()},
        "non_delegated_ops": {r.op_type: int(r.occurrences_in_non_delegated_graphs)
                              for r in outside.itertuples()},
    }
    return program.buffer, stats


def operator_histogram(stats: dict) -> dict[str, int]:
    merged: dict[str, int] = {}
    for table in (stats["delegated_ops"], stats["non_delegated_ops"]):
        for op, n in table.items():
            merged[op] = merged.get(op, 0) + n
    return dict(sorted(merged.items()))


def executorch_version() -> str:
    from executorch.version import __version__

    return __version__
