"""A test-only model family, to show what adding a family takes: this file and one import line.

``toy-seg`` is a tiny segmenter built from the zoo's shared layers: a strided stem to 1/8, a
context branch to 1/16 squeezed to one global vector, a gated fusion and a light head. It has the
four components every segmentation model has, registers itself like the real families, and has
one deploy rewrite and one synthetic-weight hook of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seaformer_deploy.models.base import InputContract, SegmentationModel
from seaformer_deploy.models.components import IMAGE, LOGITS, Component
from seaformer_deploy.models.deploy import register_rewrite
from seaformer_deploy.models.layers import Conv2d_BN, ConvBN, HSigmoid, InvertedResidual
from seaformer_deploy.models.registry import ModelSpec, register_model

NAME = "toy-seg"
REWRITE = "toy_global_pooling"
WIDTHS = (8, 16, 32)          # stem, shared (1/8), context (1/16)


class GlobalMean(nn.Module):
    """The context squeezed to one vector per image: (B, C, H, W) -> (B, C, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class FixedGlobalPool(nn.Module):
    """``GlobalMean``'s deploy form: an average pooling with the kernel fixed to the input."""

    def __init__(self, kernel: tuple[int, int]) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel)


class ToySeg(SegmentationModel):
    contract = InputContract(multiple=16, minimum=32, reason="the context runs at 1/16")
    default_input_size = (64, 64)

    def __init__(self, num_classes: int = 150) -> None:
        super().__init__()
        self.num_classes = num_classes
        stem, shared, context = WIDTHS
        self.stem = nn.Sequential(Conv2d_BN(3, stem, 3, 2, 1), nn.ReLU(),
                                  InvertedResidual(stem, shared, 3, 2, 2),
                                  InvertedResidual(shared, shared, 3, 2, 2))
        self.context = nn.Sequential(InvertedResidual(shared, context, 3, 2, 3),
                                     InvertedResidual(context, context, 3, 1, 3))
        self.squeeze = GlobalMean()
        self.local_embedding, self.global_act = ConvBN(shared, shared), ConvBN(context, shared)
        self.gate = HSigmoid()
        self.decode_head = ToyHead(shared, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = self.stem(x)
        context = self.squeeze(self.context(shared))
        return self.decode_head(self.local_embedding(shared) * self.gate(self.global_act(context)))

    def components(self) -> list[Component]:
        return [ToyStem(self), ToyContext(self), ToySpatial(self), ToyHeadComponent(self)]


class ToyHead(nn.Module):
    """``linear_fuse`` and ``conv_seg``, under the names the synthetic weights look for."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.linear_fuse = ConvBN(channels, channels, groups=channels, relu=True)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.linear_fuse(x))


class ToyStem(Component):
    def __init__(self, model: ToySeg) -> None:
        super().__init__("stem", (IMAGE,), ("shared",))
        self.stem = model.stem

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.stem(image),)


class ToyContext(Component):
    def __init__(self, model: ToySeg) -> None:
        super().__init__("context", ("shared",), ("context",))
        self.context, self.squeeze = model.context, model.squeeze

    def forward(self, shared: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.squeeze(self.context(shared)),)


class ToySpatial(Component):
    def __init__(self, model: ToySeg) -> None:
        super().__init__("spatial", ("shared", "context"), ("fused",))
        self.local_embedding, self.global_act = model.local_embedding, model.global_act
        self.gate = model.gate

    def forward(self, shared: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.local_embedding(shared) * self.gate(self.global_act(context)),)


class ToyHeadComponent(Component):
    def __init__(self, model: ToySeg) -> None:
        super().__init__("head", ("fused",), (LOGITS,))
        self.head = model.decode_head

    def forward(self, fused: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.head(fused),)


# Models the synthetic-weight hook was applied to, so the test can see that export used it.
SETUP_CALLS: list[str] = []


def _synthetic_setup(model: nn.Module) -> None:
    """Start the gate in its linear range, as a trained gate mostly is."""
    SETUP_CALLS.append(model.name)
    model.global_act.bn.weight.mul_(0.5)


register_model(ModelSpec(NAME, "toy", "T", "segmentation", ToySeg, 150,
                         synthetic_setup=_synthetic_setup))
register_rewrite(REWRITE, GlobalMean,
                 lambda name, m, args: FixedGlobalPool(tuple(args[0].shape[-2:])))
