"""SeaFormer segmentation and classification models, key-compatible with the official checkpoints.

Architecture facts come from ``shared/spec/seaformer.md`` (the official configs and checkpoint key
layout). The segmentation model is mmseg's ``EncoderDecoder``: ``backbone`` (stem conv, five stacks
of inverted residuals ``smb1..smb5`` and SeaFormer layers ``trans1..`` after the last stacks) and
``decode_head`` (the light head: fusion blocks, a depthwise ``linear_fuse`` and ``conv_seg``).

Components (paper Fig. 2 / Fig. 10):
  stem     image -> shared           stem conv, smb1, smb2 (1/8 feature)
  context  shared -> context1..N     smb3..smb5 with their SeaFormer layers (1/32, 1/64; L: +1/16)
  spatial  shared, context1..N -> fused   the fusion blocks
  head     fused -> logits           linear_fuse + conv_seg (logits at 1/8)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from .axial import (AxialAttention, AxialMean, SqueezeAxialPositionalEmbedding, batched_attention,
                    frozen_embedding, pooled_squeeze)
from .base import InputContract, SegmentationModel, ZooModel
from .components import IMAGE, LOGITS, Component
from .deploy import register_rewrite
from .layers import Conv2d_BN, ConvBN, HSigmoid, Mlp, Resize, StackedMV2Block, project_qkv
from .registry import ModelSpec, PaperFigures, register_model

# Strided convs halve (rounding up) five times down to 1/32; the last stage runs at 1/64 and may
# round up. Multiples of 32 keep every shape up to 1/32 exact and match what the official code does
# at such sizes; the positional embeddings interpolate to any length.
SEAFORMER_CONTRACT = InputContract(
    multiple=32, minimum=64,
    reason="the backbone downsamples by 2 five times before its last stage")


@dataclass(frozen=True)
class SeaFormerConfig:
    """One row of the reference-config table (``shared/spec/seaformer.md``)."""

    cfgs: tuple[tuple[tuple[int, int, int, int], ...], ...]
    channels: tuple[int, ...]
    emb_dims: tuple[int, ...]
    key_dims: tuple[int, ...]
    depths: tuple[int, ...]
    num_heads: int
    mlp_ratios: tuple[int, ...]
    head_in_channels: tuple[int, ...]
    head_embed_dims: tuple[int, ...]
    head_channels: int
    attn_ratio: int = 2


SEAFORMER_CONFIGS: dict[str, SeaFormerConfig] = {
    "T": SeaFormerConfig(
        cfgs=(((3, 1, 16, 1), (3, 4, 16, 2), (3, 3, 16, 1)), ((5, 3, 32, 2), (5, 3, 32, 1)),
              ((3, 3, 64, 2), (3, 3, 64, 1)), ((5, 3, 128, 2),), ((3, 6, 160, 2),)),
        channels=(16, 16, 32, 64, 128, 160), emb_dims=(128, 160), key_dims=(16, 24),
        depths=(2, 2), num_heads=4, mlp_ratios=(2, 4),
        head_in_channels=(32, 128, 160), head_embed_dims=(64, 96), head_channels=96),
    "S": SeaFormerConfig(
        cfgs=(((3, 1, 16, 1), (3, 4, 24, 2), (3, 3, 24, 1)), ((5, 3, 48, 2), (5, 3, 48, 1)),
              ((3, 3, 96, 2), (3, 3, 96, 1)), ((5, 4, 160, 2),), ((3, 6, 192, 2),)),
        channels=(16, 24, 48, 96, 160, 192), emb_dims=(160, 192), key_dims=(16, 24),
        depths=(3, 3), num_heads=6, mlp_ratios=(2, 4),
        head_in_channels=(48, 160, 192), head_embed_dims=(96, 128), head_channels=128),
    "B": SeaFormerConfig(
        cfgs=(((3, 1, 16, 1), (3, 4, 32, 2), (3, 3, 32, 1)), ((5, 3, 64, 2), (5, 3, 64, 1)),
              ((3, 3, 128, 2), (3, 3, 128, 1)), ((5, 4, 192, 2),), ((3, 6, 256, 2),)),
        channels=(16, 32, 64, 128, 192, 256), emb_dims=(192, 256), key_dims=(16, 24),
        depths=(4, 4), num_heads=8, mlp_ratios=(2, 4),
        head_in_channels=(64, 192, 256), head_embed_dims=(128, 160), head_channels=160),
    "L": SeaFormerConfig(
        cfgs=(((3, 3, 32, 1), (3, 4, 64, 2), (3, 4, 64, 1)), ((5, 4, 128, 2), (5, 4, 128, 1)),
              ((3, 4, 192, 2), (3, 4, 192, 1)), ((5, 4, 256, 2),), ((3, 6, 320, 2),)),
        channels=(32, 64, 128, 192, 256, 320), emb_dims=(192, 256, 320), key_dims=(16, 20, 24),
        depths=(3, 3, 3), num_heads=8, mlp_ratios=(2, 4, 6),
        head_in_channels=(128, 192, 256, 320), head_embed_dims=(128, 160, 192), head_channels=192),
}


class SeaAttention(nn.Module):
    """Squeeze-enhanced axial attention (official ``Sea_Attention``).

    ``squeeze`` and ``expand`` are the two steps SeaFormer++ makes adaptive; the base class does
    what the official code does: mean over one axis, and broadcast-add of the axial results.
    The squeeze and the axial attention are weightless submodules (``axial_squeeze``,
    ``axial_attention``) so that export can swap in deploy forms (``models/axial.py``).
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int = 2) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        self.key_dim = key_dim
        self.nh_kd = nh_kd = key_dim * num_heads
        self.dh = dh = attn_ratio * key_dim * num_heads
        self.to_q = Conv2d_BN(dim, nh_kd)
        self.to_k = Conv2d_BN(dim, nh_kd)
        self.to_v = Conv2d_BN(dim, dh)
        self.proj = nn.Sequential(nn.ReLU6(), Conv2d_BN(dh, dim, bn_weight_init=0))
        self.proj_encode_row = nn.Sequential(nn.ReLU6(), Conv2d_BN(dh, dh, bn_weight_init=0))
        self.pos_emb_rowq = SqueezeAxialPositionalEmbedding(nh_kd)
        self.pos_emb_rowk = SqueezeAxialPositionalEmbedding(nh_kd)
        self.proj_encode_column = nn.Sequential(nn.ReLU6(), Conv2d_BN(dh, dh, bn_weight_init=0))
        self.pos_emb_columnq = SqueezeAxialPositionalEmbedding(nh_kd)
        self.pos_emb_columnk = SqueezeAxialPositionalEmbedding(nh_kd)
        qkv = 2 * nh_kd + dh
        self.dwconv = Conv2d_BN(qkv, qkv, 3, 1, 1, groups=qkv)
        self.act = nn.ReLU6()
        self.pwconv = Conv2d_BN(qkv, dim)
        self.sigmoid = HSigmoid()
        self.axial_squeeze = AxialMean()
        self.axial_attention = AxialAttention(num_heads, self.scale, dh)

    def squeeze_weights(self, x: torch.Tensor) -> object:
        """Whatever ``squeeze`` needs from the layer input; plain mean pooling needs nothing."""
        return None

    def squeeze(self, t: torch.Tensor, weights: object) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> row tokens (B, C, H) and column tokens (B, C, W)."""
        return self.axial_squeeze(t)

    def expand(self, x: torch.Tensor, v: torch.Tensor, row: torch.Tensor,
               column: torch.Tensor) -> torch.Tensor:
        """Bring the (B, dh, H, 1) and (B, dh, 1, W) axial results back to H x W, added to v."""
        return v.add(row.add(column))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = project_qkv(self, x)
        detail = self.pwconv(self.act(self.dwconv(torch.cat([q, k, v], dim=1))))
        weights = self.squeeze_weights(x)
        q_row, q_col = self.squeeze(q, weights)
        k_row, k_col = self.squeeze(k, weights)
        v_row, v_col = self.squeeze(v, weights)
        row = self.axial_attention(self.pos_emb_rowq(q_row), self.pos_emb_rowk(k_row), v_row)
        row = self.proj_encode_row(row.reshape(b, self.dh, h, 1))
        col = self.axial_attention(self.pos_emb_columnq(q_col), self.pos_emb_columnk(k_col),
                                   v_col)
        col = self.proj_encode_column(col.reshape(b, self.dh, 1, w))
        xx = self.proj(self.expand(x, v, row, col))
        return self.sigmoid(xx) * detail


class Block(nn.Module):
    """SeaFormer layer: x + attn(x), then x + mlp(x) (drop-path only matters in training)."""

    def __init__(self, attn: nn.Module, dim: int, mlp_ratio: int) -> None:
        super().__init__()
        self.attn = attn
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """A stack of layers under ``transformer_blocks`` (the official key prefix)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.transformer_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.transformer_blocks:
            x = block(x)
        return x


class SeaFormerBody(nn.Module):
    """Stem + ``smb1..smb5`` with SeaFormer layers ``trans1..`` after the last stacks.

    Shared by the segmentation backbone and the classifier, whose official keys differ only by
    the ``backbone.`` prefix.
    """

    def _build_body(self, cfg: SeaFormerConfig, attention: type[SeaAttention]) -> None:
        self.cfg = cfg
        for i, rows in enumerate(cfg.cfgs):
            setattr(self, f"smb{i + 1}", StackedMV2Block([list(r) for r in rows], stem=i == 0,
                                                         inp_channel=cfg.channels[i]))
        for i, depth in enumerate(cfg.depths):
            dim = cfg.emb_dims[i]
            blocks = [Block(attention(dim, cfg.key_dims[i], cfg.num_heads, cfg.attn_ratio),
                            dim, cfg.mlp_ratios[i]) for _ in range(depth)]
            setattr(self, f"trans{i + 1}", BasicLayer(blocks))

    @property
    def num_stacks(self) -> int:
        return len(self.cfg.cfgs)

    def trans_after(self, i: int) -> BasicLayer | None:
        """The SeaFormer layers that follow stack ``smb{i+1}``, if any (official indexing)."""
        first = self.num_stacks - len(self.cfg.depths)
        return getattr(self, f"trans{i - first + 1}") if i >= first else None

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Output of every stack (after its SeaFormer layers, if any), finest first."""
        feats = []
        for i in range(self.num_stacks):
            x = getattr(self, f"smb{i + 1}")(x)
            trans = self.trans_after(i)
            x = trans(x) if trans is not None else x
            feats.append(x)
        return feats


class SeaFormerBackbone(SeaFormerBody):
    def __init__(self, cfg: SeaFormerConfig, attention: type[SeaAttention] = SeaAttention) -> None:
        super().__init__()
        self._build_body(cfg, attention)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The official forward: [1/8 shared feature, output of each SeaFormer stage]."""
        outputs = []
        for i in range(self.num_stacks):
            x = getattr(self, f"smb{i + 1}")(x)
            if i == 1:
                outputs.append(x)
            trans = self.trans_after(i)
            if trans is not None:
                x = trans(x)
                outputs.append(x)
        return outputs


class FusionBlock(nn.Module):
    """local = Conv-BN(x_spatial); out = local * resize(h_sigmoid(Conv-BN(x_context)))."""

    def __init__(self, inp: int, oup: int, embed_dim: int) -> None:
        super().__init__()
        self.local_embedding = ConvBN(inp, embed_dim)
        self.global_act = ConvBN(oup, embed_dim)
        self.act = HSigmoid()
        self.resize = Resize()

    def forward(self, x_l: torch.Tensor, x_g: torch.Tensor) -> torch.Tensor:
        local = self.local_embedding(x_l)
        return local * self.resize(self.act(self.global_act(x_g)), x_l.shape[-2:])


class LightHead(nn.Module):
    """The official light head: fusion blocks, depthwise ``linear_fuse``, ``conv_seg``."""

    def __init__(self, in_channels: tuple[int, ...], embed_dims: tuple[int, ...], channels: int,
                 num_classes: int) -> None:
        super().__init__()
        self.linear_fuse = ConvBN(channels, channels, groups=channels, relu=True)
        self.num_fuse = len(embed_dims)
        for i, dim in enumerate(embed_dims):
            inp = in_channels[0] if i == 0 else embed_dims[i - 1]
            setattr(self, f"fuse{i + 1}", FusionBlock(inp, in_channels[i + 1], dim))
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = inputs[0]
        for i in range(self.num_fuse):
            x = getattr(self, f"fuse{i + 1}")(x, inputs[i + 1])
        return self.conv_seg(self.linear_fuse(x))


def context_names(n: int) -> tuple[str, ...]:
    return tuple(f"context{i + 1}" for i in range(n))


class SeaFormerStem(Component):
    def __init__(self, backbone: SeaFormerBackbone) -> None:
        super().__init__("stem", (IMAGE,), ("shared",))
        self.smb1, self.smb2 = backbone.smb1, backbone.smb2

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.smb2(self.smb1(image)),)


class SeaFormerContext(Component):
    """smb3..smb5 and the SeaFormer layers; outputs every SeaFormer stage's result."""

    def __init__(self, backbone: SeaFormerBackbone) -> None:
        super().__init__("context", ("shared",), context_names(len(backbone.cfg.depths)))
        self.stacks = nn.ModuleList(getattr(backbone, f"smb{i + 1}")
                                    for i in range(2, backbone.num_stacks))
        self.trans = nn.ModuleList(backbone.trans_after(i) or nn.Identity()
                                   for i in range(2, backbone.num_stacks))
        self.emits = [backbone.trans_after(i) is not None for i in range(2, backbone.num_stacks)]

    def forward(self, shared: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, outputs = shared, []
        for stack, trans, emit in zip(self.stacks, self.trans, self.emits):
            x = trans(stack(x))
            if emit:
                outputs.append(x)
        return tuple(outputs)


class LightHeadSpatial(Component):
    def __init__(self, head: LightHead, detail: str = "shared") -> None:
        super().__init__("spatial", (detail,) + context_names(head.num_fuse), ("fused",))
        self.fuse = nn.ModuleList(getattr(head, f"fuse{i + 1}") for i in range(head.num_fuse))

    def forward(self, detail: torch.Tensor, *contexts: torch.Tensor) -> tuple[torch.Tensor]:
        for fuse, context in zip(self.fuse, contexts):
            detail = fuse(detail, context)
        return (detail,)


class LightHeadClassifier(Component):
    def __init__(self, head: LightHead) -> None:
        super().__init__("head", ("fused",), (LOGITS,))
        self.linear_fuse, self.conv_seg = head.linear_fuse, head.conv_seg

    def forward(self, fused: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.conv_seg(self.linear_fuse(fused)),)


class SeaFormerSeg(SegmentationModel):
    """SeaFormer segmentation model (backbone + light head)."""

    contract = SEAFORMER_CONTRACT

    def __init__(self, cfg: SeaFormerConfig, num_classes: int = 150,
                 attention: type[SeaAttention] = SeaAttention) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = SeaFormerBackbone(cfg, attention)
        self.decode_head = LightHead(cfg.head_in_channels, cfg.head_embed_dims, cfg.head_channels,
                                     num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_head(self.backbone(x))

    def components(self) -> list[Component]:
        return [SeaFormerStem(self.backbone), SeaFormerContext(self.backbone),
                LightHeadSpatial(self.decode_head), LightHeadClassifier(self.decode_head)]


class SeaFormerCls(SeaFormerBody, ZooModel):
    """SeaFormer ImageNet classifier: the body (keys without ``backbone.``), global pool, linear."""

    contract = SEAFORMER_CONTRACT
    default_input_size = (224, 224)

    def __init__(self, cfg: SeaFormerConfig, num_classes: int = 1000,
                 attention: type[SeaAttention] = SeaAttention) -> None:
        super().__init__()
        self.num_classes = num_classes
        self._build_body(cfg, attention)
        self.linear = nn.Linear(cfg.channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pyramid(x)[-1].mean(dim=(2, 3)))


# Official parameter counts (segmenter with 150 classes, classifier with 1000) and the
# SeaFormer++ paper's figures for SeaFormer.
OFFICIAL_PARAMS = {"T": (1_667_318, 1_781_096), "S": (3_990_118, 4_105_656),
                   "B": (8_605_654, 8_742_664), "L": (13_951_510, 14_046_504)}
PAPER = {
    "T": PaperFigures(1.7, 0.6, 40, 22, 35.8), "S": PaperFigures(4.0, 1.1, 67, 36, 39.4),
    "B": PaperFigures(8.6, 1.8, 106, 56, 41.0), "L": PaperFigures(14.0, 6.5, 367, 186, 43.7)}


def _register() -> None:
    for v, cfg in SEAFORMER_CONFIGS.items():
        register_model(ModelSpec(f"seaformer-{v.lower()}", "seaformer", v, "segmentation",
                                 partial(SeaFormerSeg, cfg), 150, OFFICIAL_PARAMS[v][0], PAPER[v]))
    for v, cfg in SEAFORMER_CONFIGS.items():
        register_model(ModelSpec(f"seaformer-{v.lower()}-cls", "seaformer", v, "classification",
                                 partial(SeaFormerCls, cfg), 1000, OFFICIAL_PARAMS[v][1]))
    register_rewrite("positional_embeddings", SqueezeAxialPositionalEmbedding, frozen_embedding)
    register_rewrite("axial_squeeze_pooling", AxialMean, pooled_squeeze)
    register_rewrite("batched_axial_attention", AxialAttention, batched_attention)


_register()
