"""TopFormer (CVPR 2022) with its simple head, key-compatible with the official checkpoints.

Architecture facts come from ``shared/spec/topformer.md``. ``backbone`` holds the token pyramid
(``tpm``), the semantics extractor (``trans``) and the injection modules (``SIM``, where ``SIM.0``
is a weightless identity); ``decode_head`` is the simple head.

Component mapping (ours; the TopFormer paper does not define one):
  stem     image -> pyramid1, pyramid2
           stem conv and the pyramid rows up to the 1/8 output
  context  pyramid1, pyramid2 -> pyramid3, pyramid4, semantics
           the remaining rows, pyramid pooling, the transformer
  spatial  pyramid2..4, semantics -> injected1..3
           the three semantics-injection modules
  head     injected1..3 -> logits
           simple head (resize, sum, linear_fuse, conv_seg)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
import torch.nn.functional as F

from . import topformer_deploy
from .base import InputContract, SegmentationModel
from .components import IMAGE, LOGITS, Component
from .deploy import register_rewrite
from .layers import (Conv2d_BN, ConvBN, HSigmoid, InvertedResidual, Mlp, make_divisible,
                     project_qkv, Resize)
from .registry import ModelSpec, PaperFigures, register_model

# The pyramid pooling averages every level down to 1/64. Only when each level is an exact integer
# multiple of that size is adaptive pooling a fixed-kernel average that exports faithfully.
TOPFORMER_CONTRACT = InputContract(
    multiple=64, minimum=64,
    reason="the pyramid pooling is an exact fixed-kernel average only at multiples of 64")


@dataclass(frozen=True)
class TopFormerConfig:
    cfgs: tuple[tuple[int, int, int, int], ...]
    out_indices: tuple[int, ...]
    channels: tuple[int, ...]
    injection_width: int
    num_heads: int
    head_dw: bool
    decode_out_indices: tuple[int, ...] = (1, 2, 3)
    depths: int = 4
    key_dim: int = 16
    attn_ratio: int = 2
    mlp_ratio: int = 2
    c2t_stride: int = 2


TOPFORMER_CONFIGS: dict[str, TopFormerConfig] = {
    "T": TopFormerConfig(
        cfgs=((3, 1, 16, 1), (3, 4, 16, 2), (3, 3, 16, 1), (5, 3, 32, 2), (5, 3, 32, 1),
              (3, 3, 64, 2), (3, 3, 64, 1), (5, 6, 96, 2), (5, 6, 96, 1)),
        out_indices=(2, 4, 6, 8), channels=(16, 32, 64, 96), injection_width=128, num_heads=4,
        head_dw=True),
    "S": TopFormerConfig(
        cfgs=((3, 1, 16, 1), (3, 4, 24, 2), (3, 3, 24, 1), (5, 3, 48, 2), (5, 3, 48, 1),
              (3, 3, 96, 2), (3, 3, 96, 1), (5, 6, 128, 2), (5, 6, 128, 1), (3, 6, 128, 1)),
        out_indices=(2, 4, 6, 9), channels=(24, 48, 96, 128), injection_width=192, num_heads=6,
        head_dw=False),
    "B": TopFormerConfig(
        cfgs=((3, 1, 16, 1), (3, 4, 32, 2), (3, 3, 32, 1), (5, 3, 64, 2), (5, 3, 64, 1),
              (3, 3, 128, 2), (3, 3, 128, 1), (5, 6, 160, 2), (5, 6, 160, 1), (3, 6, 160, 1)),
        out_indices=(2, 4, 6, 9), channels=(32, 64, 128, 160), injection_width=256, num_heads=8,
        head_dw=False),
}


class TokenPyramidModule(nn.Module):
    """Stem conv and inverted-residual rows ``layer1..``; rows at ``out_indices`` are outputs."""

    def __init__(self, cfgs: tuple[tuple[int, int, int, int], ...], out_indices: tuple[int, ...],
                 inp_channel: int = 16) -> None:
        super().__init__()
        self.out_indices = out_indices
        self.stem = nn.Sequential(Conv2d_BN(3, inp_channel, 3, 2, 1), nn.ReLU())
        self.layers: list[str] = []
        for i, (k, t, c, s) in enumerate(cfgs):
            out_channel = make_divisible(c, 8)
            self.add_module(f"layer{i + 1}", InvertedResidual(inp_channel, out_channel, k, s, t))
            self.layers.append(f"layer{i + 1}")
            inp_channel = out_channel

    def rows(self, start: int, stop: int) -> nn.ModuleList:
        return nn.ModuleList(getattr(self, name) for name in self.layers[start:stop])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return run_rows(self.rows(0, len(self.layers)), 0, self.out_indices, self.stem(x))


def run_rows(rows: nn.ModuleList, first: int, out_indices: tuple[int, ...],
             x: torch.Tensor) -> list[torch.Tensor]:
    """Run consecutive pyramid rows (numbered from ``first``); collect the ``out_indices`` ones."""
    outs = []
    for i, row in enumerate(rows, start=first):
        x = row(x)
        if i in out_indices:
            outs.append(x)
    return outs


class PyramidPoolAgg(nn.Module):
    """Average-pool every level to the last level's size / stride, concatenate on channels.

    Weightless; export swaps in a fixed-kernel form (``models/topformer_deploy.py``).
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        h, w = inputs[-1].shape[-2:]
        size = ((h - 1) // self.stride + 1, (w - 1) // self.stride + 1)
        return torch.cat([F.adaptive_avg_pool2d(t, size) for t in inputs], dim=1)


class TokenAttention(nn.Module):
    """softmax(q k^T) v per head over all tokens, as the official code writes it (4-D matmuls).

    Weightless, so export can swap in a deploy form (``models/topformer_deploy.py``).
    """

    def __init__(self, num_heads: int, key_dim: int, d: int) -> None:
        super().__init__()
        self.num_heads, self.key_dim, self.d = num_heads, key_dim, d

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, _, h, w = q.shape
        q = q.reshape(b, self.num_heads, self.key_dim, h * w).permute(0, 1, 3, 2)
        k = k.reshape(b, self.num_heads, self.key_dim, h * w)
        v = v.reshape(b, self.num_heads, self.d, h * w).permute(0, 1, 3, 2)
        attn = torch.matmul(q, k).softmax(dim=-1)
        return torch.matmul(attn, v).permute(0, 1, 3, 2).reshape(b, self.d * self.num_heads, h, w)


class ChannelSplit(nn.Module):
    """``t.split(widths, dim=1)``, weightless so export can swap in slices."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.widths = list(widths)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return t.split(self.widths, dim=1)


class Attention(nn.Module):
    """Global multi-head attention over the pooled tokens.

    The official code computes ``key_dim ** -0.5`` but never applies it; the checkpoints were
    trained that way, so neither do we.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int) -> None:
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.d = attn_ratio * key_dim
        self.dh = self.d * num_heads
        nh_kd = key_dim * num_heads
        self.to_q = Conv2d_BN(dim, nh_kd)
        self.to_k = Conv2d_BN(dim, nh_kd)
        self.to_v = Conv2d_BN(dim, self.dh)
        self.proj = nn.Sequential(nn.ReLU6(), Conv2d_BN(self.dh, dim, bn_weight_init=0))
        self.attention = TokenAttention(num_heads, key_dim, self.d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attention(*project_qkv(self, x)))


class TopBlock(nn.Module):
    def __init__(self, dim: int, cfg: TopFormerConfig) -> None:
        super().__init__()
        self.attn = Attention(dim, cfg.key_dim, cfg.num_heads, cfg.attn_ratio)
        self.mlp = Mlp(dim, dim * cfg.mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class TopBasicLayer(nn.Module):
    def __init__(self, dim: int, cfg: TopFormerConfig) -> None:
        super().__init__()
        self.transformer_blocks = nn.ModuleList(TopBlock(dim, cfg) for _ in range(cfg.depths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.transformer_blocks:
            x = block(x)
        return x


class InjectionMultiSum(nn.Module):
    """out = Conv-BN(local) * resize(h_sigmoid(Conv-BN(global))) + resize(Conv-BN(global))."""

    def __init__(self, inp: int, oup: int) -> None:
        super().__init__()
        self.local_embedding = ConvBN(inp, oup)
        self.global_embedding = ConvBN(inp, oup)
        self.global_act = ConvBN(inp, oup)
        self.act = HSigmoid()
        self.resize_act, self.resize_global = Resize(), Resize()

    def forward(self, x_l: torch.Tensor, x_g: torch.Tensor) -> torch.Tensor:
        size = x_l.shape[-2:]
        local = self.local_embedding(x_l)
        act = self.resize_act(self.act(self.global_act(x_g)), size)
        glob = self.resize_global(self.global_embedding(x_g), size)
        return local * act + glob


class TopFormerBackbone(nn.Module):
    def __init__(self, cfg: TopFormerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tpm = TokenPyramidModule(cfg.cfgs, cfg.out_indices)
        self.ppa = PyramidPoolAgg(cfg.c2t_stride)
        self.trans = TopBasicLayer(sum(cfg.channels), cfg)
        self.split = ChannelSplit(cfg.channels)
        self.SIM = nn.ModuleList(
            InjectionMultiSum(c, cfg.injection_width) if i in cfg.decode_out_indices
            else nn.Identity() for i, c in enumerate(cfg.channels))

    def semantics(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        return self.trans(self.ppa(pyramid))

    def inject(self, pyramid: list[torch.Tensor], semantics: torch.Tensor) -> list[torch.Tensor]:
        parts = self.split(semantics)
        return [self.SIM[i](pyramid[i], parts[i]) for i in self.cfg.decode_out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        pyramid = self.tpm(x)
        return self.inject(pyramid, self.semantics(pyramid))


class SimpleHead(nn.Module):
    """Sum of the injected features at 1/8, ``linear_fuse`` (Conv-BN-ReLU), ``conv_seg``."""

    def __init__(self, channels: int, num_classes: int, dw: bool, inputs: int) -> None:
        super().__init__()
        self.linear_fuse = ConvBN(channels, channels, groups=channels if dw else 1, relu=True)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.resizes = nn.ModuleList(Resize() for _ in range(inputs - 1))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = inputs[0]
        for pred, up in zip(inputs[1:], self.resizes, strict=True):
            out = out + up(pred, out.shape[-2:])
        return self.conv_seg(self.linear_fuse(out))


def _names(prefix: str, indices: range) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in indices)


class TopFormerStem(Component):
    def __init__(self, tpm: TokenPyramidModule) -> None:
        super().__init__("stem", (IMAGE,), ("pyramid1", "pyramid2"))
        self.out_indices = tpm.out_indices
        self.stem = tpm.stem
        self.rows = tpm.rows(0, tpm.out_indices[1] + 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(run_rows(self.rows, 0, self.out_indices, self.stem(image)))


class TopFormerContext(Component):
    def __init__(self, backbone: TopFormerBackbone) -> None:
        super().__init__("context", ("pyramid1", "pyramid2"), ("pyramid3", "pyramid4", "semantics"))
        tpm = backbone.tpm
        self.out_indices = tpm.out_indices
        self.first = tpm.out_indices[1] + 1
        self.rows = tpm.rows(self.first, len(tpm.layers))
        self.ppa = backbone.ppa
        self.trans = backbone.trans

    def forward(self, p1: torch.Tensor, p2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p3, p4 = run_rows(self.rows, self.first, self.out_indices, p2)
        return p3, p4, self.trans(self.ppa([p1, p2, p3, p4]))


class TopFormerSpatial(Component):
    def __init__(self, backbone: TopFormerBackbone) -> None:
        super().__init__("spatial", ("pyramid2", "pyramid3", "pyramid4", "semantics"),
                         _names("injected", range(1, 4)))
        self.split = backbone.split
        # Level 0 (1/4) is not injected (``SIM.0`` is an identity), so it is not an input here.
        self.sim = nn.ModuleList(backbone.SIM[1:])

    def forward(self, p2: torch.Tensor, p3: torch.Tensor, p4: torch.Tensor,
                semantics: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = self.split(semantics)[1:]
        return tuple(sim(local, part) for sim, local, part in zip(self.sim, (p2, p3, p4), parts))


class TopFormerHead(Component):
    def __init__(self, head: SimpleHead) -> None:
        super().__init__("head", _names("injected", range(1, 4)), (LOGITS,))
        self.head = head

    def forward(self, *injected: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.head(list(injected)),)


class TopFormerSeg(SegmentationModel):
    contract = TOPFORMER_CONTRACT

    def __init__(self, cfg: TopFormerConfig, num_classes: int = 150) -> None:
        super().__init__()
        if tuple(cfg.decode_out_indices) != (1, 2, 3):
            raise ValueError("the component split assumes injection at pyramid levels 1, 2, 3")
        self.num_classes = num_classes
        self.backbone = TopFormerBackbone(cfg)
        self.decode_head = SimpleHead(cfg.injection_width, num_classes, cfg.head_dw,
                                      len(cfg.decode_out_indices))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_head(self.backbone(x))

    def components(self) -> list[Component]:
        return [TopFormerStem(self.backbone.tpm), TopFormerContext(self.backbone),
                TopFormerSpatial(self.backbone), TopFormerHead(self.decode_head)]


def temper_unscaled_attention(model: nn.Module) -> None:
    """TopFormer's attention applies no 1/sqrt(d) scale; trained q and k absorbed it. Emulate that
    in synthetic weights by scaling the q and k BatchNorm weights by d^-1/4 each, or the random
    logits make softmax saturate in a way no trained checkpoint does."""
    for mod in model.modules():
        if isinstance(mod, Attention):
            factor = mod.key_dim ** -0.25
            mod.to_q.bn.weight.mul_(factor)
            mod.to_k.bn.weight.mul_(factor)


# Official parameter counts (150 classes) and the SeaFormer++ paper's figures for TopFormer.
OFFICIAL_PARAMS = {"T": 1_389_654, "S": 3_034_662, "B": 5_062_646}
PAPER = {
    "T": PaperFigures(1.4, 0.6, 43, 23, 34.6), "S": PaperFigures(3.1, 1.2, 74, 41, 37.0),
    "B": PaperFigures(5.1, 1.8, 110, 60, 39.2)}


def _register() -> None:
    for v, cfg in TOPFORMER_CONFIGS.items():
        register_model(ModelSpec(f"topformer-{v.lower()}", "topformer", v, "segmentation",
                                 partial(TopFormerSeg, cfg), 150, OFFICIAL_PARAMS[v], PAPER[v],
                                 synthetic_setup=temper_unscaled_attention))
    register_rewrite("fixed_pyramid_pooling", PyramidPoolAgg, topformer_deploy.fixed_pool)
    register_rewrite("batched_token_attention", TokenAttention, topformer_deploy.batched_attention)
    register_rewrite("sliced_channel_split", ChannelSplit, topformer_deploy.sliced_split)


_register()
