"""The axis order of an artifact's tensors, and conversion to and from PyTorch's.

Every tensor an artifact takes or returns is contiguous in its ``shape``; its ``layout`` says
which axis is which. A ``--pte-layout nhwc`` program takes and returns its 4-D tensors as
(N, H, W, C) (``NHWC``), so the wrong layout fails on shape instead of computing garbage; every
other 4-D tensor is ``NCHW``, PyTorch's order, which the parity references use. A labels map
(N, H, W) has no channel axis and keeps its order in every artifact (``NHW``).

numpy only: the reports read device outputs with it without importing torch.
"""

from __future__ import annotations

import numpy as np

NCHW, NHWC, NHW = "NCHW", "NHWC", "NHW"
LAYOUTS = (NCHW, NHWC, NHW)
_TO_NHWC, _TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def layout_of(ndim: int, nhwc: bool) -> str:
    """The layout of a tensor with ``ndim`` axes in an artifact with NHWC edges or not."""
    if ndim == 4:
        return NHWC if nhwc else NCHW
    if ndim == 3:
        return NHW
    raise ValueError(f"no layout for a {ndim}-D tensor: artifacts take and return 4-D "
                     f"feature maps and 3-D label maps")


def to_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """A PyTorch-order array as the contiguous array an artifact with ``layout`` reads."""
    return np.ascontiguousarray(array.transpose(_TO_NHWC)) if layout == NHWC else array


def from_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """An array in ``layout`` in PyTorch's order, as the references are."""
    return np.ascontiguousarray(array.transpose(_TO_NCHW)) if layout == NHWC else array


def program_shape(shape: list[int], layout: str) -> list[int]:
    """The shape in ``layout`` of a tensor of PyTorch-order ``shape``."""
    return [shape[d] for d in _TO_NHWC] if layout == NHWC else list(shape)


def reference_shape(shape: list[int], layout: str) -> list[int]:
    """The PyTorch-order shape of a tensor of ``shape`` in ``layout``."""
    return [shape[d] for d in _TO_NCHW] if layout == NHWC else list(shape)


def ambiguous(shape: list[int], layout: str) -> bool:
    """C == H == W: the tensor has the same shape in both layouts, so a wrong one passes."""
    return layout == NHWC and len(set(shape[1:])) == 1
