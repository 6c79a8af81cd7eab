"""The export's tensor files (``tensors/``) and the tensor records of its manifest.

Every named tensor of the first sample is written raw, little-endian and contiguous: the
device-side inputs of each artifact (the image, or the true intermediate tensors for
components) and the references its outputs are checked against on the device. Artifacts with
NHWC edges (``--pte-layout nhwc``) read and write their 4-D tensors as (N, H, W, C), so those
are written in that layout too (``*.nhwc.bin``). Each record gives the shape as stored and its
``layout`` (see ``layouts``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.components import IMAGE
from . import manifest as mf
from .layouts import NCHW, NHWC, layout_of, program_shape, to_layout
from .records import Tensor, TensorFile
from .units import Unit

TENSORS = "tensors"


def write_tensors(staging: Path, env: dict, dtypes: set[str], nhwc: bool) -> list[TensorFile]:
    """Write ``env``'s tensors (first sample) in each floating ``dtype``, 4-D ones in NHWC too
    when ``nhwc``; return their manifest records."""
    folder = staging / TENSORS
    folder.mkdir()
    records = []
    for name, tensor in env.items():
        array = tensor[:1].numpy()
        layouts = [NCHW, NHWC] if nhwc and array.ndim == 4 else [layout_of(array.ndim, False)]
        for dtype in sorted(dtypes) if array.dtype.kind == "f" else [str(array.dtype)]:
            for layout in layouts:
                data = to_layout(array.astype(np.dtype(dtype).newbyteorder("<")), layout)
                path = folder / tensor_file(name, dtype, layout)
                path.write_bytes(data.tobytes())
                records.append(TensorFile(name, dtype, list(data.shape),
                                          list(range(data.ndim)), layout,
                                          f"{TENSORS}/{path.name}",
                                          mf.sha256_bytes(data.tobytes())))
    return records


def tensor_file(name: str, dtype: str, layout: str) -> str:
    return f"{name}.{dtype}{'.nhwc' if layout == NHWC else ''}.bin"


def describe(names: tuple[str, ...], env: dict, unit: Unit, float_dtype: str,
             nhwc: bool | None = None, inputs: bool = False) -> list[Tensor]:
    """Records of a unit's tensors (PyTorch's shapes and layout). An artifact's (``nhwc`` given:
    whether its 4-D tensors are NHWC) have the program's shapes, and name the file to feed
    (inputs) or the FP32 reference to check against (outputs), in the program's layout."""
    out = []
    for name in names:
        ref = env[name]
        kind = "image" if name == IMAGE else unit.output_kind(name)
        dtype = "int64" if not ref.is_floating_point() else float_dtype
        layout = layout_of(ref.dim(), bool(nhwc))
        entry = Tensor(name=name, shape=program_shape([1, *ref.shape[1:]], layout), dtype=dtype,
                       kind=kind, layout=layout)
        if nhwc is not None:
            entry.dim_order = list(range(ref.dim()))
            file_dtype = dtype if inputs or dtype == "int64" else "float32"
            entry.file = f"{TENSORS}/{tensor_file(name, file_dtype, layout)}"
        out.append(entry)
    return out


def as_dtype(tensor: torch.Tensor, dtype: str) -> np.ndarray:
    """The tensor as an array; floating ones in ``dtype``."""
    array = tensor.numpy()
    return array.astype(dtype) if array.dtype.kind == "f" else array
