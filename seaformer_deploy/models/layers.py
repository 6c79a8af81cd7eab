"""Building blocks shared by SeaFormer, SeaFormer++ and TopFormer.

Module and attribute names follow the official (mmsegmentation 0.x) code bases, because the
state-dict keys of the official checkpoints are derived from them: ``Conv2d_BN`` stores ``c`` and
``bn``, ``ConvBN`` (mmcv's ``ConvModule`` without activation) stores ``conv`` and ``bn``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below 90 % of it."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class HSigmoid(nn.Module):
    """relu6(x + 3) / 6, the hard sigmoid used by both families."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class Conv2d_BN(nn.Sequential):  # noqa: N801 - name of the official module
    """Bias-free convolution followed by BatchNorm (keys ``c.*``, ``bn.*``)."""

    def __init__(self, in_ch: int, out_ch: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, ks, stride, pad, groups=groups, bias=False))
        bn = nn.BatchNorm2d(out_ch)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.constant_(bn.bias, 0.0)
        self.add_module("bn", bn)


class ConvBN(nn.Module):
    """mmcv ``ConvModule(norm_cfg=BN, act_cfg=...)``: keys ``conv.weight`` and ``bn.*``."""

    def __init__(self, in_ch: int, out_ch: int, groups: int = 1, relu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand, act], kxk depthwise (stride), act, 1x1 linear projection."""

    def __init__(self, inp: int, oup: int, ks: int, stride: int, expand_ratio: float,
                 activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [Conv2d_BN(inp, hidden, 1), activation()]
        layers += [
            Conv2d_BN(hidden, hidden, ks, stride, ks // 2, groups=hidden),
            activation(),
            Conv2d_BN(hidden, oup, 1),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_res_connect else y


class StackedMV2Block(nn.Module):
    """A run of inverted residuals (``layer1``, ``layer2``, ...), optionally led by the stem conv.

    ``cfgs`` rows are ``[kernel, expand_ratio, out_channels, stride]``.
    """

    def __init__(self, cfgs: list[list[int]], stem: bool, inp_channel: int) -> None:
        super().__init__()
        self.stem = stem
        if stem:
            self.stem_block = nn.Sequential(Conv2d_BN(3, inp_channel, 3, 2, 1), nn.ReLU())
        self.layers: list[str] = []
        for i, (k, t, c, s) in enumerate(cfgs):
            out_channel = make_divisible(c, 8)
            name = f"layer{i + 1}"
            self.add_module(name, InvertedResidual(inp_channel, out_channel, k, s, t))
            self.layers.append(name)
            inp_channel = out_channel
        self.out_channels = inp_channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem:
            x = self.stem_block(x)
        for name in self.layers:
            x = getattr(self, name)(x)
        return x


class Mlp(nn.Module):
    """Conv-BN, 3x3 depthwise conv with bias, activation, Conv-BN (dropout is 0 in every config)."""

    def __init__(self, dim: int, hidden: int, activation: type[nn.Module] = nn.ReLU6) -> None:
        super().__init__()
        self.fc1 = Conv2d_BN(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=True)
        self.act = activation()
        self.fc2 = Conv2d_BN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


def project_qkv(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k and v of an attention module from its ``to_q``, ``to_k``, ``to_v`` projections.

    Export's deploy form (``export/rewrites.py``) replaces the three 1x1 convolutions with one,
    ``fused_qkv``, whose output channels are q, k and v one after the other.
    """
    fused = getattr(module, "fused_qkv", None)
    if fused is None:
        return module.to_q(x), module.to_k(x), module.to_v(x)
    qkv = fused(x)
    q_end, k_end = module.qkv_split
    return qkv[:, :q_end], qkv[:, q_end:k_end], qkv[:, k_end:]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with align_corners=False, as every module of both families uses."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Resize(nn.Module):
    """``resize`` as a module, one per call site: export's deploy form can then replace each with
    a form fixed to the shapes it sees there. No parameters, so no state-dict keys."""

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return resize(x, size)
