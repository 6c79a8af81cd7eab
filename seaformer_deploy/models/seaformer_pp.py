"""SeaFormer++ (IJCV 2025, §3.2.1): adaptive squeeze and adaptive expand; and its KD student.

No public code exists; this is our design from the paper text. Choices and their reasons:

Adaptive squeeze (``squeeze_mask``)
  * A ``Conv2d_BN(dim -> 2 * heads)`` on the layer input ``x`` gives mask logits ``A``. The first
    ``heads`` channels weight the tokens of each row, the last ``heads`` those of each column: the
    two axes look for different things, and the cost of a second set is negligible.
  * One mask per head, shared by that head's q, k and v ("a mask computed from x ... for q, k and
    v"): q, k and v of a head then summarise the same tokens, so their axial attention stays
    consistent.
  * The logits are normalised with a softmax along the squeezed axis, so squeezing is a convex
    weighted mean: the same scale as the mean pooling it replaces, whatever the image size.
  * The BN weight starts at 0, so ``A`` is constant and the weighted mean *is* the mean: a ++ model
    initialised from a SeaFormer checkpoint starts out computing exactly SeaFormer.

Adaptive expand (``expand_mask``)
  * A ``Conv2d_BN(dim -> dh)`` on ``x`` gives a per-channel, per-pixel gate ``2 * h_sigmoid(M)`` in
    [0, 2] that modulates the broadcast sum of the row and column results before it is added to
    ``v``: ``v + gate * (row + column)``. The hard sigmoid keeps it to ops every mobile runtime
    has; the factor 2 with BN weight 0 at init makes the gate exactly 1, i.e. plain broadcasting.
  * Per channel rather than per head, because the paper's cost figures for T (+0.1M parameters,
    +0.01 GFLOPs) match a ``dim -> dh`` 1x1 conv per layer (+0.10M, +0.012 GMACs at 512x512) and
    not a per-head mask (+0.005M).

Resulting parameter counts (150 classes) against the paper's: T 1.77M (1.8M), S 4.26M (4.1M),
B 9.23M (8.7M), L 14.76M (14.1M); T++ classifier 1.88M (1.9M). The paper's "+0.1M" for every
variant cannot come from one per-layer design (S, B and L have more and wider layers than T); we
match T, the variant whose costs the paper states, and document the rest.
``tests/models/test_seaformer_pp.py`` pins these numbers.

KD student (§3.3-3.4)
  * The input is halved by 2x2 average pooling and runs through the SeaFormer++ backbone.
  * Each feature the light head consumes is brought to the teacher's resolution by an
    ``UpsampleModule``: weights ``sigmoid(Conv-BN(high))`` from the student feature one stage
    earlier (exactly twice the resolution), the low-resolution feature through an MV2 block and a
    bilinear upsample, multiplied, refined by a second MV2 block.
  * The light head is the teacher's (same keys under ``decode_head``), so a teacher head can be
    loaded into a student. The upsample modules live under ``upsample.<i>``.
  * MV2 expand ratio 3 gives T++(KD) 2.33M parameters (paper: 2.3M).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
import torch.nn.functional as F

from .base import InputContract, SegmentationModel
from .components import IMAGE, Component
from .deploy import register_rewrite
from .layers import Conv2d_BN, InvertedResidual, Resize
from .registry import ModelSpec, PaperFigures, register_model
from .seaformer import (SEAFORMER_CONFIGS, LightHead, LightHeadClassifier, SeaAttention,
                        SeaFormerBackbone, SeaFormerCls, SeaFormerConfig, SeaFormerSeg)

KD_EXPAND_RATIO = 3

KD_CONTRACT = InputContract(
    multiple=64, minimum=128,
    reason="the student halves the input, then downsamples by 2 five times")


class AxialSoftmax(nn.Module):
    """Mask logits (B, 2 x heads, H, W) -> row and column token weights, (B, heads, 1, H, W)."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads

    def weights(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = logits.shape
        n = self.num_heads
        # Softmax over 3-D views: ExecuTorch 1.5.1's XNNPACK delegate computes a softmax on a
        # 4-D conv output over the wrong axis (it runs in NHWC), which the parity gate caught.
        rows = logits[:, :n].reshape(b, n * h, w).softmax(dim=-1).reshape(b, n, h, w)
        cols = logits[:, n:].transpose(-1, -2).reshape(b, n * w, h).softmax(dim=-1)
        return rows, cols.reshape(b, n, w, h).transpose(-1, -2)

    def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = self.weights(logits)
        return rows.unsqueeze(2), cols.unsqueeze(2)


class WeightedAxialSum(nn.Module):
    """Each head's row (column) tokens as the weighted sum of its row (column) of pixels."""

    def __init__(self, num_heads: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.widths = widths          # the channel counts it squeezes (q and k, v): for export

    def forward(self, t: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = weights
        b, c, h, w = t.shape
        t = t.reshape(b, self.num_heads, c // self.num_heads, h, w)
        return (t * rows).sum(-1).reshape(b, c, h), (t * cols).sum(-2).reshape(b, c, w)


class ExpandGate(nn.Module):
    """2 * h_sigmoid(m): the adaptive expand's per-pixel, per-channel gate in [0, 2]."""

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return 2.0 * (F.relu6(m + 3.0) / 6.0)


class AdaptiveSeaAttention(SeaAttention):
    """SEA attention with adaptive squeeze and adaptive expand (see the module docstring)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int = 2) -> None:
        super().__init__(dim, key_dim, num_heads, attn_ratio)
        self.squeeze_mask = Conv2d_BN(dim, 2 * num_heads, bn_weight_init=0)
        self.expand_mask = Conv2d_BN(dim, self.dh, bn_weight_init=0)
        # Weightless steps, so that export can swap in deploy forms (below).
        self.axial_weights = AxialSoftmax(num_heads)
        self.weighted_squeeze = WeightedAxialSum(num_heads, (self.nh_kd, self.dh))
        self.gate = ExpandGate()

    def squeeze_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.axial_weights(self.squeeze_mask(x))

    def squeeze(self, t: torch.Tensor, weights: object) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weighted_squeeze(t, weights)

    def expand(self, x: torch.Tensor, v: torch.Tensor, row: torch.Tensor,
               column: torch.Tensor) -> torch.Tensor:
        return v.add(self.gate(self.expand_mask(x)) * row.add(column))


class UpsampleModule(nn.Module):
    """MobileNetV2-based upsample module of the KD student (§3.4)."""

    def __init__(self, high_ch: int, low_ch: int, expand_ratio: int = KD_EXPAND_RATIO) -> None:
        super().__init__()
        self.weight = Conv2d_BN(high_ch, low_ch)
        self.low = InvertedResidual(low_ch, low_ch, 3, 1, expand_ratio)
        self.refine = InvertedResidual(low_ch, low_ch, 3, 1, expand_ratio)
        self.resize = Resize()

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        weight = torch.sigmoid(self.weight(high))
        return self.refine(self.resize(self.low(low), high.shape[-2:]) * weight)


def _pyramid_names(first: int, stop: int) -> tuple[str, ...]:
    return tuple(f"pyramid{i + 1}" for i in range(first, stop))


class KDStudentStem(Component):
    def __init__(self, backbone: SeaFormerBackbone) -> None:
        super().__init__("stem", (IMAGE,), _pyramid_names(0, 2))
        self.smb1, self.smb2 = backbone.smb1, backbone.smb2

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p1 = self.smb1(F.avg_pool2d(image, 2))
        return p1, self.smb2(p1)


class KDStudentContext(Component):
    def __init__(self, backbone: SeaFormerBackbone) -> None:
        n = backbone.num_stacks
        super().__init__("context", ("pyramid2",), _pyramid_names(2, n))
        self.stacks = nn.ModuleList(getattr(backbone, f"smb{i + 1}") for i in range(2, n))
        self.trans = nn.ModuleList(backbone.trans_after(i) or nn.Identity() for i in range(2, n))

    def forward(self, p2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, outputs = p2, []
        for stack, trans in zip(self.stacks, self.trans):
            x = trans(stack(x))
            outputs.append(x)
        return tuple(outputs)


class KDStudentSpatial(Component):
    def __init__(self, model: "SeaFormerKDStudent") -> None:
        super().__init__("spatial", _pyramid_names(0, model.backbone.num_stacks), ("fused",))
        self.levels = model.head_levels
        self.upsample = model.upsample
        head = model.decode_head
        self.fuse = nn.ModuleList(getattr(head, f"fuse{i + 1}") for i in range(head.num_fuse))

    def forward(self, *pyramid: torch.Tensor) -> tuple[torch.Tensor]:
        feats = [up(pyramid[i - 1], pyramid[i]) for up, i in zip(self.upsample, self.levels)]
        x = feats[0]
        for fuse, context in zip(self.fuse, feats[1:]):
            x = fuse(x, context)
        return (x,)


class SeaFormerKDStudent(SegmentationModel):
    """SeaFormer++ student for knowledge distillation: half-resolution input, upsample modules."""

    contract = KD_CONTRACT

    def __init__(self, cfg: SeaFormerConfig, num_classes: int = 150) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = SeaFormerBackbone(cfg, AdaptiveSeaAttention)
        n = self.backbone.num_stacks
        # Pyramid levels the head consumes: the 1/8 shared feature and every SeaFormer stage.
        self.head_levels = [1] + [i for i in range(2, n)
                                  if self.backbone.trans_after(i) is not None]
        widths = [getattr(self.backbone, f"smb{i + 1}").out_channels for i in range(n)]
        self.upsample = nn.ModuleList(UpsampleModule(widths[i - 1], widths[i])
                                      for i in self.head_levels)
        self.decode_head = LightHead(cfg.head_in_channels, cfg.head_embed_dims, cfg.head_channels,
                                     num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyramid = self.backbone.pyramid(F.avg_pool2d(x, 2))
        feats = [up(pyramid[i - 1], pyramid[i]) for up, i in zip(self.upsample, self.head_levels)]
        return self.decode_head(feats)

    def components(self) -> list[Component]:
        return [KDStudentStem(self.backbone), KDStudentContext(self.backbone),
                KDStudentSpatial(self), LightHeadClassifier(self.decode_head)]


# Deploy forms (registered below; ``export/rewrites.py`` applies them), each exact:
#   adaptive_squeeze_4d, adaptive_squeeze_pooling: the adaptive squeeze's weighted sums without
#     5-D tensors or ``sum`` (see ``PooledWeightedSum``); they agree on the weights' layout.
#   constant_expand_gate: the gate's constants as buffers (see ``ConstantExpandGate``).

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


class ConstantExpandGate(nn.Module):
    """The 2 * h_sigmoid gate with its constants as buffers, which follow the model's dtype:
    Python scalars become FP32 constants that an FP16 program casts outside the delegate."""

    def __init__(self) -> None:
        super().__init__()
        for name, value in (("three", 3.0), ("six", 6.0), ("two", 2.0)):
            self.register_buffer(name, torch.tensor([value]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.two * (F.relu6(x + self.three) / self.six)


def _pooled_sum(name: str, m: WeightedAxialSum, args: tuple) -> nn.Module:
    return PooledWeightedSum(m.num_heads, m.widths, *args[0].shape[-2:])


# The SeaFormer++ paper's figures: segmenters, the KD student (T only), classifiers.
PAPER = {
    "T": PaperFigures(1.8, 0.6, 41, 23, 36.8), "S": PaperFigures(4.1, 1.1, 68, 37, 39.7),
    "B": PaperFigures(8.7, 1.8, 107, 56, 41.4), "L": PaperFigures(14.1, 6.5, 369, 187, 43.8)}
KD_PAPER = {"T": PaperFigures(2.3, 0.3, 22)}
CLS_PAPER = {
    "T": PaperFigures(1.9, latency_ms=7, top1=69.8),
    "S": PaperFigures(4.2, latency_ms=12, top1=74.5),
    "B": PaperFigures(8.8, latency_ms=20, top1=77.0),
    "L": PaperFigures(14.1, latency_ms=61, top1=80.6)}


def _register() -> None:
    adaptive = {"attention": AdaptiveSeaAttention}
    for v, cfg in SEAFORMER_CONFIGS.items():
        register_model(ModelSpec(f"seaformer-{v.lower()}++", "seaformer++", v, "segmentation",
                                 partial(SeaFormerSeg, cfg, **adaptive), 150, None, PAPER[v]))
    for v, cfg in SEAFORMER_CONFIGS.items():
        register_model(ModelSpec(f"seaformer-{v.lower()}++-kd", "seaformer++-kd", v,
                                 "segmentation", partial(SeaFormerKDStudent, cfg), 150, None,
                                 KD_PAPER.get(v)))
    for v, cfg in SEAFORMER_CONFIGS.items():
        register_model(ModelSpec(f"seaformer-{v.lower()}++-cls", "seaformer++", v,
                                 "classification", partial(SeaFormerCls, cfg, **adaptive), 1000,
                                 None, CLS_PAPER[v]))
    register_rewrite("constant_expand_gate", ExpandGate, lambda name, m, args: ConstantExpandGate())
    register_rewrite("adaptive_squeeze_4d", AxialSoftmax, lambda name, m, args: AxialSoftmax4D(
        m.num_heads))
    register_rewrite("adaptive_squeeze_pooling", WeightedAxialSum, _pooled_sum)


_register()
