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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import HSigmoid
from ..models.seaformer import AxialAttention, AxialMean, SqueezeAxialPositionalEmbedding
from ..models.seaformer_pp import AxialSoftmax, ExpandGate, WeightedAxialSum
from ..models.topformer import ChannelSplit, PyramidPoolAgg, TokenAttention


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


@dataclass
class Applied:
    name: str
    modules: int


def _calls(model: nn.Module, example: torch.Tensor) -> dict[str, tuple]:
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
FUSIONS: dict[str, Callable[[nn.Module, dict[str, tuple]], int]] = {"fused_qkv": fuse_qkv}


def deploy_form(model: nn.Module, example: torch.Tensor) -> list[Applied]:
    """Apply, in place, every rewrite that finds modules to rewrite; say what was done."""
    calls = _calls(model, example)
    applied = []
    for name, (match, make) in REPLACEMENTS.items():
        count = _replace(model, calls, match, make)
        if count:
            applied.append(Applied(name, count))
    for name, fusion in FUSIONS.items():
        count = fusion(model, calls)
        if count:
            applied.append(Applied(name, count))
    return applied
