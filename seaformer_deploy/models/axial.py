"""The axial steps of SeaFormer's SEA attention, in the official form and in the deploy form that
export swaps in (``models/seaformer.py`` registers the rewrites; ``export/rewrites.py`` applies
them). SeaFormer++ keeps these steps, so its models get the same rewrites.

Deploy forms, each exact, and what it removes from the ExecuTorch / XNNPACK graph:

* ``positional_embeddings``: the axial positional embeddings are interpolated to the export
  resolution once and stored as constants. Removes the interpolation's arange / clamp / index /
  add operators, which XNNPACK does not take and which split the graph.
* ``axial_squeeze_pooling``: the axial squeeze (a mean over one axis) becomes an average pooling
  with a (1, W) or (H, 1) window, which XNNPACK runs in NHWC; ``mean.dim`` over one axis it
  does not.
* ``batched_axial_attention``: the per-head axial attention is written with 3-D batch matmuls
  instead of 4-D ``matmul``, which lowers to ``expand_copy`` operators outside the delegate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeAxialPositionalEmbedding(nn.Module):
    """A learnable (1, dim, 16) embedding, linearly interpolated to the axis length and added."""

    def __init__(self, dim: int, length: int = 16) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, dim, length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        return x + F.interpolate(self.pos_embed, size=n, mode="linear", align_corners=False)


class AxialMean(nn.Module):
    """The official squeeze: (B, C, H, W) -> row tokens (B, C, H), column tokens (B, C, W)."""

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t.mean(-1), t.mean(-2)


class AxialAttention(nn.Module):
    """Multi-head attention along one axis, as the official code writes it (4-D matmuls):
    (B, C, N) q, k and (B, dh, N) v tokens -> (B, dh, N)."""

    def __init__(self, num_heads: int, scale: float, dh: int) -> None:
        super().__init__()
        self.num_heads, self.scale, self.dh = num_heads, scale, dh

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, _, n = q.shape
        q = q.reshape(b, self.num_heads, -1, n).permute(0, 1, 3, 2)
        k = k.reshape(b, self.num_heads, -1, n)
        v = v.reshape(b, self.num_heads, -1, n).permute(0, 1, 3, 2)
        attn = (torch.matmul(q, k) * self.scale).softmax(dim=-1)
        return torch.matmul(attn, v).permute(0, 1, 3, 2).reshape(b, self.dh, n)


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


class BatchedAxialAttention(nn.Module):
    """Axial multi-head attention with 3-D batch matmuls (batch = batch x heads); the scale is a
    buffer, which follows the model's dtype (a Python scalar becomes an FP32 constant that an
    FP16 program casts outside the delegate)."""

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


# Factories of the deploy forms: (module name, official module, its call arguments) -> module.

def frozen_embedding(name: str, m: SqueezeAxialPositionalEmbedding, args: tuple) -> nn.Module:
    length = args[0].shape[-1]
    return FrozenPositionalEmbedding(
        F.interpolate(m.pos_embed, size=length, mode="linear", align_corners=False))


def pooled_squeeze(name: str, m: AxialMean, args: tuple) -> nn.Module:
    return AxialAvgPool()


def batched_attention(name: str, m: AxialAttention, args: tuple) -> nn.Module:
    return BatchedAxialAttention(m.num_heads, float(m.scale), m.dh)
