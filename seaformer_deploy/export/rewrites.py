"""Deploy-form rewrites: exact reformulations that mobile runtimes execute faster.

Applied at export time to a copy of the BatchNorm-folded model, for one static input size, and
proven by the parity gate like everything else. What each one removes, measured on SeaFormer-T
512x512 with ExecuTorch 1.5.1 / XNNPACK (naive export: 13 delegate partitions, 48 layout copies,
32 gather and 24 mean operators in portable kernels):

* the families' own rewrites, registered beside their modules (``models/deploy.py``): the
  axial positional embeddings as constants, the axial squeeze as pooling and the axial attention
  as batch matmuls (SeaFormer, ``models/axial.py``); fixed-kernel pyramid pooling, batched token
  attention and the channel split as slices (TopFormer, ``models/topformer_deploy.py``); the
  adaptive squeeze without 5-D tensors and the expand gate's constants (SeaFormer++,
  ``models/seaformer_pp.py``). Each module states what its forms remove.
* ``fused_qkv``: the q, k and v projections of an attention as one 1x1 convolution; its output
  is already the concatenation the detail-enhancement branch needs.
* ``constant_hsigmoid``: the hard sigmoid's constants as buffers (see ``ConstantHSigmoid``), so
  that FP16 programs have no constant casts outside the delegate.

They apply in a fixed order: the families' rewrites in registration order (the order in which
``models/__init__.py`` imports the families, each family's in the order it registers them),
then the generic replacements, then the fusions; the manifest lists them in that order. Each
replacement swaps the leaf modules of one class and reads the call arguments recorded before
any rewrite, so the order changes no result. The replacements leave one XNNPACK partition and
no operator outside it; the fusion then trims the work inside it. Tried and not kept:
``F.hardsigmoid`` in place of relu6(x + 3) / 6 (XNNPACK in ExecuTorch 1.5.1 does not take it,
which re-split the graph), and folding the attention scale into the query projection (the same
queries also feed the detail-enhancement branch, so the scale would have to be undone there, to
save one multiply on an H x H tensor).

Two more are specific to one runtime, applied to that format's copy only (``runtime_form``):

* ``matmul_upsampling`` (ONNX): each bilinear resize as two matrix products with its fixed
  interpolation matrices (rows, then columns). ONNX Runtime's CPU ``Resize`` was 1.1 of 18 ms of
  SeaFormer-T 512x512; the products take 0.3. XNNPACK runs its own resize well and would need
  ``expand_copy`` outside the delegate for the broadcast products, so the .pte keeps the resize.
* ``aligned_classifier`` (.pte): the classifier's output channels padded to a multiple of 16 with
  zero filters and sliced back. XNNPACK's x86 GEMM ran 96 -> 150 channels at 64x64 in 3.1 ms and
  96 -> 160 in 1.7 (the slice costs 0.15); ONNX Runtime gains nothing from it.
* ``aligned_expansion`` (.pte): the hidden channels of inverted residuals widened to a multiple
  of 16 with zero filters, for the same GEMM path; no slice needed (see ``align_expansion``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.deploy import REWRITES, Rewrite
from ..models.layers import HSigmoid, InvertedResidual, Resize
from . import formats as fmts


class ConstantHSigmoid(nn.Module):
    """relu6(x + 3) / 6 with its constants as buffers, which follow the model's dtype: Python
    scalars become FP32 constants that an FP16 program casts outside the delegate."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("three", torch.tensor([3.0]))
        self.register_buffer("six", torch.tensor([6.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + self.three) / self.six


def interpolation_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """The (size_out, size_in) matrix of 1-D linear interpolation with align_corners=False:
    PyTorch's own resize of each unit impulse, so the coordinates and edge clamping are its."""
    impulses = torch.eye(size_in).reshape(size_in, 1, size_in)
    rows = F.interpolate(impulses, size=size_out, mode="linear", align_corners=False)
    return rows.reshape(size_in, size_out).t().contiguous()


class MatmulResize(nn.Module):
    """Bilinear resize to a fixed size as A_rows @ x @ A_cols^T (bilinear is separable)."""

    def __init__(self, size_in: tuple[int, int], size_out: tuple[int, int]) -> None:
        super().__init__()
        self.size_in = tuple(size_in)
        self.register_buffer("rows", interpolation_matrix(size_in[0], size_out[0]))
        self.register_buffer("cols_t", interpolation_matrix(size_in[1], size_out[1]).t())

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.size_in:          # static shapes: checked while tracing
            raise ValueError(f"MatmulResize built for {self.size_in}, got {tuple(x.shape[-2:])}")
        return torch.matmul(self.rows, torch.matmul(x, self.cols_t))


def widened(conv: nn.Conv2d, out_channels: int, in_channels: int | None = None) -> nn.Conv2d:
    """A copy of ``conv`` with zero filters added up to ``out_channels`` and zero weights for
    inputs up to ``in_channels``; a depthwise convolution widens its groups with it."""
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    if conv.groups > 1 and not depthwise:
        raise ValueError("only plain and depthwise convolutions can be widened")
    in_channels = out_channels if depthwise else (in_channels or conv.in_channels)
    wide = nn.Conv2d(in_channels, out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, groups=out_channels if depthwise else 1,
                     bias=conv.bias is not None)
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:conv.out_channels, :conv.weight.shape[1]] = conv.weight
        if conv.bias is not None:
            wide.bias.zero_()
            wide.bias[:conv.out_channels] = conv.bias
    return wide


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class PaddedConv(nn.Module):
    """A 1x1 convolution computed with zero filters added up to ``multiple`` output channels, the
    extra channels sliced off. Exact: the real channels' dot products are unchanged."""

    def __init__(self, conv: nn.Conv2d, multiple: int) -> None:
        super().__init__()
        self.out_channels = conv.out_channels
        self.conv = widened(conv, _round_up(conv.out_channels, multiple))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)[:, :self.out_channels]


# The output-channel multiple at which XNNPACK's x86 (FMA3) f32 GEMM ran at full speed in our
# measurements; also a multiple of the 8-wide tiles of its ARM NEON kernels.
GEMM_TILE = 16


def align_classifier(model: nn.Module, calls: dict[str, tuple]) -> int:
    """Pad every ``conv_seg`` (the heads' classifier) whose class count is off the GEMM tile."""
    count = 0
    for name, module in list(model.named_modules()):
        if (name.rpartition(".")[2] == "conv_seg" and name in calls
                and isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)
                and module.groups == 1 and module.out_channels % GEMM_TILE):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, PaddedConv(module, GEMM_TILE))
            count += 1
    return count


def align_expansion(model: nn.Module, calls: dict[str, tuple]) -> int:
    """Widen the hidden channels of inverted residuals to the GEMM tile: the expansion gets zero
    filters, the depthwise conv zero filters, the projection zero weights for them. Exact: the
    projection ignores the extra channels whatever the activation makes of them, and nothing
    outside the block sees them. SeaFormer-S's 24 -> 72 -> 24 block at 128x128 went from 4.1 to
    3.4 ms in XNNPACK (72 output channels take its slow GEMM path; 80 do not)."""
    count = 0
    for name, module in model.named_modules():
        if not (isinstance(module, InvertedResidual) and name in calls and len(module.conv) == 5):
            continue
        expand, depthwise, project = (module.conv[i].c for i in (0, 2, 4))
        hidden = _round_up(expand.out_channels, GEMM_TILE)
        if hidden == expand.out_channels:
            continue
        module.conv[0].c = widened(expand, hidden)
        module.conv[2].c = widened(depthwise, hidden)
        module.conv[4].c = widened(project, project.out_channels, hidden)
        count += 1
    return count


@dataclass
class Applied:
    name: str
    modules: int


def call_arguments(model: nn.Module, example: torch.Tensor) -> dict[str, tuple]:
    """The positional arguments each submodule received when ``model`` ran on ``example``
    (modules that exist but never run, such as SeaFormer++'s unused plain squeeze, are absent)."""
    seen: dict[str, tuple] = {}

    def record(name: str) -> Callable:
        def hook(_module: nn.Module, args: tuple) -> None:    # must return None: a returned
            seen.setdefault(name, args)                       # value would replace the input
        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in model.named_modules()
             if name]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return seen


Fusion = Callable[[nn.Module, dict[str, tuple]], int]


def _replace(model: nn.Module, calls: dict[str, tuple], match: type, make: Rewrite) -> int:
    count = 0
    for name, module in list(model.named_modules()):
        if type(module) is match and name in calls:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr,
                    make(name, module, calls[name]))
            count += 1
    return count


def fuse_qkv(model: nn.Module, calls: dict[str, tuple]) -> int:
    """One 1x1 convolution for q, k and v where three read the same input (BN already folded).

    Exact: each output channel is the same dot product as before. Fewer, larger GEMMs run better
    at the 1/32 and 1/64 resolutions where the attention lives (1.5 % on SeaFormer-T).
    """
    count = 0
    for name, module in list(model.named_modules()):
        convs = [getattr(module, f"to_{p}", None) for p in "qkv"]
        if name not in calls or any(c is None for c in convs):
            continue
        convs = [c.c for c in convs]
        if any(c.kernel_size != (1, 1) or c.groups != 1 or c.bias is None for c in convs):
            continue                                   # only folded, plain 1x1 projections
        fused = nn.Conv2d(convs[0].in_channels, sum(c.out_channels for c in convs), 1)
        with torch.no_grad():
            fused.weight.copy_(torch.cat([c.weight for c in convs]))
            fused.bias.copy_(torch.cat([c.bias for c in convs]))
        q_end = convs[0].out_channels
        module.fused_qkv, module.qkv_split = fused, (q_end, q_end + convs[1].out_channels)
        del module.to_q, module.to_k, module.to_v
        count += 1
    return count


# name -> (module type it replaces, how to build the replacement), for modules of every family
GENERIC_REPLACEMENTS: dict[str, tuple[type, Rewrite]] = {
    "constant_hsigmoid": (HSigmoid, lambda name, m, args: ConstantHSigmoid()),
}


class _Replacements(Mapping[str, tuple[type, Rewrite]]):
    """The families' rewrites (``models/deploy.py``) in registration order, then the generic
    ones. Read at each use, so that a family registered after this import takes part."""

    def _table(self) -> dict[str, tuple[type, Rewrite]]:
        taken = sorted(REWRITES.keys() & GENERIC_REPLACEMENTS.keys())
        if taken:
            raise ValueError(f"family deploy rewrites {taken} reuse generic rewrite names; "
                             f"register them under names of their own")
        family = {r.name: (r.match, r.make) for r in REWRITES.values()}
        return family | GENERIC_REPLACEMENTS

    def __getitem__(self, name: str) -> tuple[type, Rewrite]:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


# name -> (module type it replaces, how to build the replacement)
REPLACEMENTS: Mapping[str, tuple[type, Rewrite]] = _Replacements()
# name -> rewrite working on the whole model
FUSIONS: dict[str, Fusion] = {"fused_qkv": fuse_qkv}


# Rewrites for one runtime only, in the same two kinds; each format names the ones its copy of
# the model gets (``Format.runtime_rewrites`` in export/formats.py).
RUNTIME_REPLACEMENTS: dict[str, tuple[type, Rewrite]] = {
    "matmul_upsampling": (Resize, lambda name, m, args: MatmulResize(
        args[0].shape[-2:], tuple(args[1]))),
}
RUNTIME_FUSIONS: dict[str, Fusion] = {
    "aligned_classifier": align_classifier, "aligned_expansion": align_expansion,
}


def deploy_form(model: nn.Module, example: torch.Tensor) -> list[Applied]:
    """Apply, in place, every rewrite that finds modules to rewrite; say what was done."""
    return _apply(model, example, REPLACEMENTS, FUSIONS)


def runtime_form(model: nn.Module, example: torch.Tensor, fmt: str) -> list[Applied]:
    """Apply, in place, the runtime rewrites format ``fmt`` declares (after ``deploy_form``)."""
    wanted = fmts.get(fmt).runtime_rewrites
    return _apply(model, example, {k: v for k, v in RUNTIME_REPLACEMENTS.items() if k in wanted},
                  {k: v for k, v in RUNTIME_FUSIONS.items() if k in wanted})


def _apply(model: nn.Module, example: torch.Tensor,
           replacements: dict[str, tuple[type, Rewrite]],
           fusions: dict[str, Fusion]) -> list[Applied]:
    calls = call_arguments(model, example)
    applied = []
    for name, (match, make) in replacements.items():
        count = _replace(model, calls, match, make)
        if count:
            applied.append(Applied(name, count))
    for name, fusion in fusions.items():
        count = fusion(model, calls)
        if count:
            applied.append(Applied(name, count))
    return applied
