"""Host runtimes that execute artifacts for the parity gate: ONNX Runtime for ONNX Runtime's
formats, ExecuTorch's runtime for .pte (each format names its own in ``formats``).

Each takes and returns contiguous arrays in the artifact's own layout (see ``layouts``); the
caller converts from and to PyTorch's order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..quiet import native_stderr_captured
from .layouts import NCHW, NHWC, program_shape

Orders = list[list[int]]


class InputShapeError(UserError):
    """An input whose shape is not the program's: most often the other layout (NCHW / NHWC)."""


def run_onnx(path: Path, batches: Sequence[Sequence[np.ndarray]],
             layouts: Sequence[str] | None = None) -> tuple[list[list[np.ndarray]], Orders]:
    """Run each input list through an ONNX Runtime CPU session (ONNX tensors are always NCHW)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    results = [session.run(None, dict(zip(names, inputs))) for inputs in batches]
    return results, [list(range(o.ndim)) for o in results[0]]


def run_pte(path: Path, batches: Sequence[Sequence[np.ndarray]],
            layouts: Sequence[str] | None = None) -> tuple[list[list[np.ndarray]], Orders]:
    """Run each input list through ExecuTorch's runtime (XNNPACK delegate on this CPU).

    Inputs must have the program's shapes (``layouts``: each input's layout, for the error);
    ExecuTorch itself only reports a bare error code. Outputs come back contiguous in the
    program's shapes, with the dim order the program produced them in."""
    from executorch.runtime import Runtime

    with native_stderr_captured():
        method = Runtime.get().load_program(Path(path)).load_method("forward")
    meta = method.metadata
    expected = [list(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())]
    results, out_orders = [], []
    for inputs in batches:
        check_shapes(Path(path).name, [list(a.shape) for a in inputs], expected, layouts)
        outputs = method.execute([torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
        out_orders = [list(o.dim_order()) for o in outputs]
        results.append([np.ascontiguousarray(o.numpy()) for o in outputs])
    return results, out_orders


def check_shapes(program: str, shapes: list[list[int]], expected: list[list[int]],
                 layouts: Sequence[str] | None) -> None:
    """Raise InputShapeError unless ``shapes`` are the program's ``expected`` input shapes."""
    if len(shapes) != len(expected):
        raise InputShapeError(f"{program} takes {len(expected)} inputs, got {len(shapes)}.")
    for i, (shape, want) in enumerate(zip(shapes, expected, strict=True)):
        if shape == want:
            continue
        layout = layouts[i] if layouts else _guess(shape, want)
        named = f" in {layout} layout" if layout else ""
        hint = _HINTS.get(layout, "")
        raise InputShapeError(f"{program} input {i} has shape {tuple(shape)}: the program "
                              f"takes {tuple(want)}{named} (contiguous){hint}. The manifest's "
                              f"inputs give each one's shape, layout and file.")


_HINTS = {NHWC: "; an (N, C, H, W) array becomes (N, H, W, C) with array.transpose(0, 2, 3, 1)",
          NCHW: "; an (N, H, W, C) array becomes (N, C, H, W) with array.transpose(0, 3, 1, 2)"}


def _guess(shape: list[int], want: list[int]) -> str | None:
    """The layout ``want`` is in when ``shape`` is the same tensor in the other layout."""
    if len(want) != 4:
        return None
    if program_shape(shape, NHWC) == want:
        return NHWC
    return NCHW if program_shape(want, NHWC) == shape else None
