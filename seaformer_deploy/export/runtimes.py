"""Host runtimes that execute artifacts: ONNX Runtime for .onnx, ExecuTorch's runtime for .pte."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..quiet import native_stderr_captured


def run_onnx(path: Path, batches: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
    """Run each input list through an ONNX Runtime CPU session; return each output list."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return [session.run(None, dict(zip(names, inputs))) for inputs in batches]


def run_pte(path: Path, batches: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
    """Run each input list through ExecuTorch's runtime (XNNPACK delegate on this CPU)."""
    from executorch.runtime import Runtime

    with native_stderr_captured():
        method = Runtime.get().load_program(Path(path)).load_method("forward")
    results = []
    for inputs in batches:
        outputs = method.execute([torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
        results.append([o.numpy().copy() for o in outputs])
    return results


RUNNERS = {"onnx": run_onnx, "pte": run_pte}
