"""The export's tensor files (``tensors/``) and the tensor records of its manifest.

Every named tensor of the first sample is written raw, little-endian: the device-side inputs of
each artifact (the image, or the true intermediate tensors for components) and the references
its outputs are checked against on the device. Channels-last artifacts get their 4-D inputs in
that memory order too (``*.nhwc.bin``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.components import IMAGE
from . import manifest as mf
from .formats import Format
from .records import Tensor, TensorFile
from .units import Unit

TENSORS = "tensors"
NCHW, NHWC = [0, 1, 2, 3], [0, 2, 3, 1]


def write_tensors(staging: Path, env: dict, dtypes: set[str], nhwc: bool) -> list[TensorFile]:
    """Write ``env``'s tensors (first sample) in each floating ``dtype``, and in NHWC order too
    when ``nhwc``; return their manifest records."""
    folder = staging / TENSORS
    folder.mkdir()
    records = []
    for name, tensor in env.items():
        array = tensor[:1].numpy()
        orders = [NCHW, NHWC] if nhwc and array.ndim == 4 else [list(range(array.ndim))]
        for dtype in sorted(dtypes) if array.dtype.kind == "f" else [str(array.dtype)]:
            for order in orders:
                data = np.ascontiguousarray(
                    array.astype(np.dtype(dtype).newbyteorder("<")).transpose(order))
                path = folder / tensor_file(name, dtype, order)
                path.write_bytes(data.tobytes())
                records.append(TensorFile(name, dtype, list(array.shape), order,
                                          f"{TENSORS}/{path.name}",
                                          mf.sha256_bytes(data.tobytes())))
    return records


def tensor_file(name: str, dtype: str, order: list[int]) -> str:
    return f"{name}.{dtype}{'.nhwc' if order == NHWC else ''}.bin"


def input_orders(fmt: Format, unit: Unit, env: dict, pte_layout: str) -> list[list[int]]:
    """Each input's memory order in ``fmt``'s artifact of ``unit``."""
    channels_last = (fmt.channels_last(pte_layout)
                     and not any(_single_pixel(env[n]) for n in (*unit.input_names,
                                                                 *unit.output_names)))
    return [NHWC if channels_last and env[n].dim() == 4 else list(range(env[n].dim()))
            for n in unit.input_names]


def _single_pixel(tensor: torch.Tensor) -> bool:
    """A 4-D tensor with 1x1 spatial size: its NCHW and NHWC strides coincide, and a program
    traced channels-last then disagrees with XNNPACK on that tensor's order (ExecuTorch 1.5.1
    fails to resize the output: SeaFormer's 1/64 context at 64x64). Such units stay NCHW."""
    return tensor.dim() == 4 and tuple(tensor.shape[-2:]) == (1, 1)


def describe(names: tuple[str, ...], env: dict, unit: Unit, float_dtype: str,
             orders: list[list[int]] | None = None, inputs: bool = False) -> list[Tensor]:
    """Records of a unit's tensors; an artifact's also name their files and memory order."""
    out = []
    for i, name in enumerate(names):
        ref = env[name]
        kind = "image" if name == IMAGE else unit.output_kind(name)
        dtype = "int64" if not ref.is_floating_point() else float_dtype
        entry = Tensor(name=name, shape=[1, *ref.shape[1:]], dtype=dtype, kind=kind)
        if orders is not None:       # inputs: the file to feed; outputs: the FP32 reference
            entry.dim_order = orders[i]
            file = (tensor_file(name, dtype, orders[i]) if inputs else
                    tensor_file(name, "int64" if dtype == "int64" else "float32",
                                list(range(ref.dim()))))
            entry.file = f"{TENSORS}/{file}"
        out.append(entry)
    return out


def as_dtype(tensor: torch.Tensor, dtype: str) -> np.ndarray:
    """The tensor as an array; floating ones in ``dtype``."""
    array = tensor.numpy()
    return array.astype(dtype) if array.dtype.kind == "f" else array
