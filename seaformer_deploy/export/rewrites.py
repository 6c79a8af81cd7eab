"""Deploy-form rewrites: exact reformulations that mobile runtimes execute faster.

Applied at export time to a copy of the BatchNorm-folded model, for one static input size, and
proven by the parity gate like everything else. What each one removes, measured on SeaFormer-T
512x512 with ExecuTorch 1.5.1 / XNNPACK (naive export: 13 delegate partitions, 48 layout copies,
32 gather and 24 mean operators in portable kernels):

* ``positional_embeddings``: the axial positional embeddings are interpolated to the export
  resolution once and stored as constants. Removes the interpolation's arange / clamp / index /
  add operators, which XNNPACK does not take and which split the graph.
* ``axial_squeeze_pooling``: the axial squeeze (a mean over one axis) becomes an average pooling
  with a (1, W) or (H, 1) window, which XNNPACK runs in NHWC; ``mean.dim`` over one axis it
  does not.
* ``batched_axial_attention``: the per-head axial attention is written with 3-D batch matmuls
  instead of 4-D ``matmul``, which lowers to ``expand_copy`` operators outside the delegate.
* ``fixed_pyramid_pooling`` (TopFormer): adaptive average pooling at a size that divides the
  input exactly is a fixed-kernel average pooling, which XNNPACK runs.
* ``batched_token_attention`` (TopFormer): the global attention with 3-D batch matmuls, for the
  same reason as the axial one.
* ``sliced_channel_split`` (TopFormer): the split of the global semantics into pyramid levels
  as slices; ``split_with_sizes`` stays outside the delegate.
* ``adaptive_squeeze_4d`` and ``adaptive_squeeze_pooling`` (SeaFormer++): the adaptive
  squeeze's weighted sums without 5-D tensors or ``sum`` (see ``PooledWeightedSum``).
* ``fused_qkv``: the q, k and v projections of an attention as one 1x1 convolution; its output
  is already the concatenation the detail-enhancement branch needs.
* ``constant_hsigmoid``, ``constant_expand_gate``: the hard sigmoids' constants as buffers (see
  ``ConstantHSigmoid``), so that FP16 programs have no constant casts outside the delegate.

The first ones leave one XNNPACK partition and no operator outside it; the fusion then trims
the work inside it. Tried and not kept:
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

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import HSigmoid, InvertedResidual, Resize
from ..models.seaformer import AxialAttention, AxialMean, SqueezeAxialPositionalEmbedding
from ..models.seaformer_pp import AxialSoftmax, ExpandGate, WeightedAxialSum
from ..models.topformer import ChannelSplit, PyramidPoolAgg, TokenAttention
from . import formats as fmts


class FrozenPositionalEmbedding(nn.Module):
    """x + a constant: the positional embedding already interpolated to the axis length."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("value", value.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.value


class AxialAvgPool(nn.Module):
    """The axial mean as average pooling over a one-row / one-column window."""

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = t.shape
        rows = F.avg_pool2d(t, (1, w)).reshape(b, c, h)
        cols = F.avg_pool2d(t, (h, 1)).reshape(b, c, w)
        return rows, cols


class ConstantHSigmoid(nn.Module):
    """relu6(x + 3) / 6 with its constants as buffers, which follow the model's dtype: Python
    scalars become FP32 constants that an FP16 program casts outside the delegate."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("three", torch.tensor([3.0]))
        self.register_buffer("six", torch.tensor([6.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + self.three) / self.six


class ConstantExpandGate(ConstantHSigmoid):
    """SeaFormer++'s 2 * h_sigmoid gate with buffer constants (see ``ConstantHSigmoid``)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("two", torch.tensor([2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.two * super().forward(x)


class BatchedAxialAttention(nn.Module):
    """Axial multi-head attention with 3-D batch matmuls (batch = batch x heads); the scale is a
    buffer, for the same reason as in ``ConstantHSigmoid``."""

    def __init__(self, num_heads: int, scale: float, dh: int) -> None:
        super().__init__()
        self.num_heads, self.dh = num_heads, dh
        self.register_buffer("scale", torch.tensor([scale]))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, _, n = q.shape
        heads = b * self.num_heads
        q = q.reshape(heads, -1, n).transpose(1, 2)
        k = k.reshape(heads, -1, n)
        v = v.reshape(heads, -1, n).transpose(1, 2)
        attn = (torch.bmm(q, k) * self.scale).softmax(dim=-1)
        return torch.bmm(attn, v).transpose(1, 2).reshape(b, self.dh, n)


class FixedPyramidPool(nn.Module):
    """TopFormer's pyramid pooling with the fixed kernels that the export size implies."""

    def __init__(self, kernels: list[tuple[int, int]]) -> None:
        super().__init__()
        self.kernels = kernels

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([F.avg_pool2d(t, k) for t, k in zip(inputs, self.kernels, strict=True)],
                         dim=1)


class BatchedTokenAttention(nn.Module):
    """TopFormer's token attention with 3-D batch matmuls (batch = batch x heads)."""

    def __init__(self, num_heads: int, key_dim: int, d: int) -> None:
        super().__init__()
        self.num_heads, self.key_dim, self.d = num_heads, key_dim, d

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, _, h, w = q.shape
        heads = b * self.num_heads
        q = q.reshape(heads, self.key_dim, h * w).transpose(1, 2)
        k = k.reshape(heads, self.key_dim, h * w)
        v = v.reshape(heads, self.d, h * w).transpose(1, 2)
        attn = torch.bmm(q, k).softmax(dim=-1)
        return torch.bmm(attn, v).transpose(1, 2).reshape(b, self.d * self.num_heads, h, w)


class SlicedSplit(nn.Module):
    """A channel split as slices, which XNNPACK takes (``split_with_sizes`` it does not)."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.bounds = [(sum(widths[:i]), sum(widths[:i + 1])) for i in range(len(widths))]

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t[:, a:b] for a, b in self.bounds)


class AxialSoftmax4D(AxialSoftmax):
    """The adaptive squeeze's token weights as 4-D (B, heads, H, W) tensors, no 5-D views."""

    def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weights(logits)


class PooledWeightedSum(nn.Module):
    """The adaptive squeeze's weighted sums as delegate-friendly operations.

    Each head's weights are spread over its channels by a 1x1 convolution with a fixed matrix,
    multiplied with the tokens, and summed by average pooling over the row (column). The matrix
    holds the row (column) length instead of 1, so that the pooling's mean is the sum; exact when
    the length is a power of two. The reference form's 5-D broadcasts and ``sum`` reductions
    stay outside XNNPACK.
    """

    def __init__(self, num_heads: int, widths: tuple[int, ...], height: int, width: int) -> None:
        super().__init__()
        # Convolution modules, not buffers: their weights become constants the delegate packs
        # ahead of time (a functional conv on a buffer left layout conversions outside it).
        self.rows, self.cols = nn.ModuleDict(), nn.ModuleDict()
        for c in sorted(set(widths)):
            self.rows[str(c)] = self._spread(num_heads, c, float(width))
            self.cols[str(c)] = self._spread(num_heads, c, float(height))

    @staticmethod
    def _spread(heads: int, channels: int, value: float) -> nn.Conv2d:
        conv = nn.Conv2d(heads, channels, 1, bias=False).requires_grad_(False)
        conv.weight.zero_()
        conv.weight[torch.arange(channels), torch.arange(channels) // (channels // heads)] = value
        return conv

    def forward(self, t: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = weights
        b, c, h, w = t.shape
        row = F.avg_pool2d(t * self.rows[str(c)](rows), (1, w)).reshape(b, c, h)
        col = F.avg_pool2d(t * self.cols[str(c)](cols), (h, 1)).reshape(b, c, w)
        return row, col


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


Rewrite = Callable[[str, nn.Module, tuple], nn.Module]
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


def _frozen_embedding(name: str, m: SqueezeAxialPositionalEmbedding, args: tuple) -> nn.Module:
    length = args[0].shape[-1]
    return FrozenPositionalEmbedding(
        F.interpolate(m.pos_embed, size=length, mode="linear", align_corners=False))


def _fixed_pool(name: str, m: PyramidPoolAgg, args: tuple) -> nn.Module:
    levels = args[0]
    h, w = levels[-1].shape[-2:]
    out = ((h - 1) // m.stride + 1, (w - 1) // m.stride + 1)
    kernels = []
    for t in levels:
        th, tw = t.shape[-2:]
        if th % out[0] or tw % out[1]:
            raise ValueError(f"{name}: pyramid level {th}x{tw} is not a multiple of {out}")
        kernels.append((th // out[0], tw // out[1]))
    return FixedPyramidPool(kernels)


# name -> (module type it replaces, how to build the replacement)
REPLACEMENTS: dict[str, tuple[type, Rewrite]] = {
    "positional_embeddings": (SqueezeAxialPositionalEmbedding, _frozen_embedding),
    "axial_squeeze_pooling": (AxialMean, lambda name, m, args: AxialAvgPool()),
    "batched_axial_attention": (AxialAttention, lambda name, m, args: BatchedAxialAttention(
        m.num_heads, float(m.scale), m.dh)),
    "fixed_pyramid_pooling": (PyramidPoolAgg, _fixed_pool),
    "batched_token_attention": (TokenAttention, lambda name, m, args: BatchedTokenAttention(
        m.num_heads, m.key_dim, m.d)),
    "sliced_channel_split": (ChannelSplit, lambda name, m, args: SlicedSplit(m.widths)),
    "constant_hsigmoid": (HSigmoid, lambda name, m, args: ConstantHSigmoid()),
    "constant_expand_gate": (ExpandGate, lambda name, m, args: ConstantExpandGate()),
    "adaptive_squeeze_4d": (AxialSoftmax, lambda name, m, args: AxialSoftmax4D(m.num_heads)),
    "adaptive_squeeze_pooling": (WeightedAxialSum, lambda name, m, args: PooledWeightedSum(
        m.num_heads, m.widths, *args[0].shape[-2:])),
}
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
