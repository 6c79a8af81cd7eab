"""ExecuTorch artifacts: torch.export -> edge -> XNNPACK partitioner -> .pte, FP32 and FP16."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from .onnx_export import _quiet

# Rows of ExecuTorch's delegation table that are bookkeeping, not operators.
_NOT_OPERATORS = {"getitem", "Total"}


class CastIO(nn.Module):
    """FP16 body with FP32 inputs and floating outputs (the ``--fp32-io`` option)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self.body(*(t.half() for t in inputs))
        return tuple(o.float() if o.is_floating_point() else o for o in outs)


def half_module(module: nn.Module, keep_io_fp32: bool) -> nn.Module:
    body = copy.deepcopy(module).half().eval()
    return CastIO(body).eval() if keep_io_fp32 else body


def export_pte(module: nn.Module, example: Sequence[torch.Tensor]) -> tuple[bytes, dict]:
    """Lower ``module`` to XNNPACK; return the program bytes and its delegation statistics."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    with _quiet():
        exported = torch.export.export(module, tuple(example), strict=False)
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        info = get_delegation_info(edge.exported_program().graph_module)
        program = edge.to_executorch()
    table = info.get_operator_delegation_dataframe()
    rows = table[~table.op_type.isin(_NOT_OPERATORS)]
    delegated = rows[rows.occurrences_in_delegated_graphs > 0]
    outside = rows[rows.occurrences_in_non_delegated_graphs > 0]
    stats = {
        "backend": "XnnpackBackend",
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
