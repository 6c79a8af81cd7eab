"""TopFormer's deploy forms: exact replacements for its weightless steps that XNNPACK runs in
one partition (``models/topformer.py`` registers them; ``export/rewrites.py`` applies them).

* ``fixed_pyramid_pooling``: adaptive average pooling at a size that divides the input exactly
  is a fixed-kernel average pooling, which XNNPACK runs.
* ``batched_token_attention``: the global attention with 3-D batch matmuls instead of 4-D
  ``matmul``, which lowers to ``expand_copy`` operators outside the delegate.
* ``sliced_channel_split``: the split of the global semantics into pyramid levels as slices;
  ``split_with_sizes`` stays outside the delegate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


# Factories of the deploy forms: (module name, official module, its call arguments) -> module.

def fixed_pool(name: str, m: nn.Module, args: tuple) -> nn.Module:
    """The kernels of ``PyramidPoolAgg`` ``m`` at the level sizes it received."""
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


def batched_attention(name: str, m: nn.Module, args: tuple) -> nn.Module:
    """``BatchedTokenAttention`` with the shape of ``TokenAttention`` ``m``."""
    return BatchedTokenAttention(m.num_heads, m.key_dim, m.d)


def sliced_split(name: str, m: nn.Module, args: tuple) -> nn.Module:
    """``SlicedSplit`` with the widths of ``ChannelSplit`` ``m``."""
    return SlicedSplit(m.widths)
