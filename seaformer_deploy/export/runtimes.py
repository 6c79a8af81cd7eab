"""Host runtimes that execute artifacts for the parity gate: ONNX Runtime for ONNX Runtime's
formats, ExecuTorch's runtime for .pte (each format names its own in ``formats``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..quiet import native_stderr_captured
from .tensors import NHWC


Orders = list[list[int]]


def run_onnx(path: Path, batches: Sequence[Sequence[np.ndarray]],
             orders: Orders | None = None) -> tuple[list[list[np.ndarray]], Orders]:
    """Run each input list through an ONNX Runtime CPU session (ONNX tensors are always NCHW)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    results = [session.run(None, dict(zip(names, inputs))) for inputs in batches]
    return results, [list(range(o.ndim)) for o in results[0]]


def run_pte(path: Path, batches: Sequence[Sequence[np.ndarray]],
            orders: Orders | None = None) -> tuple[list[list[np.ndarray]], Orders]:
    """Run each input list through ExecuTorch's runtime (XNNPACK delegate on this CPU).

    ``orders`` gives each input's memory order (dim order) as the program expects it; outputs
    come back as logical (N, C, H, W) arrays, with the memory order the program produced them in.
    """
    from executorch.runtime import Runtime

    with native_stderr_captured():
        method = Runtime.get().load_program(Path(path)).load_method("forward")
    results, out_orders = [], []
    for inputs in batches:
        tensors = [_in_order(torch.from_numpy(np.ascontiguousarray(a)), order)
                   for a, order in zip(inputs, orders or [None] * len(inputs), strict=True)]
        outputs = method.execute(tensors)
        out_orders = [list(o.dim_order()) for o in outputs]
        results.append([np.ascontiguousarray(o.numpy()) for o in outputs])
    return results, out_orders


def _in_order(tensor: torch.Tensor, order: list[int] | None) -> torch.Tensor:
    if order == NHWC:
        return tensor.to(memory_format=torch.channels_last)
    return tensor
