"""Parameters, multiply-accumulates and tensor shapes, per component and in total.

Two MAC conventions are reported:
  * ``macs``: multiply-accumulates of convolutions and matrix products only, the convention of
    ``shared/spec/seaformer.md`` (counted by ``torch.utils.flop_counter``, FLOPs / 2).
  * ``macs_mmcv``: the above plus one operation per element of every BatchNorm (two: scale and
    shift), ReLU/ReLU6 and conv bias, as mmcv's ``get_flops`` counts. The papers' "FLOPs" columns
    were produced by mmcv; this is the number to hold against them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .base import SegmentationModel, ZooModel
from .components import IMAGE


@dataclass
class Cost:
    params: int = 0
    macs: int = 0
    macs_mmcv: int = 0
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class ModelCost:
    name: str
    input_size: tuple[int, int]
    total: Cost
    components: dict[str, Cost]


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@contextmanager
def _counting(module: nn.Module) -> Iterator[list[int]]:
    """Count conv/matmul MACs and mmcv's extra elementwise operations of what runs inside."""
    extra = [0]

    def elementwise(factor: int):
        def hook(_mod: nn.Module, _inp: object, out: torch.Tensor) -> None:
            extra[0] += factor * out.numel()
        return hook

    hooks = []
    for mod in module.modules():
        if isinstance(mod, nn.BatchNorm2d):
            hooks.append(mod.register_forward_hook(elementwise(2)))
        elif isinstance(mod, (nn.ReLU, nn.ReLU6)) or (isinstance(mod, nn.Conv2d)
                                                      and mod.bias is not None):
            hooks.append(mod.register_forward_hook(elementwise(1)))
    counts = [0, 0]
    try:
        with FlopCounterMode(display=False) as flops, torch.no_grad():
            yield counts
        counts[0] = flops.get_total_flops() // 2
        counts[1] = counts[0] + extra[0]
    finally:
        for h in hooks:
            h.remove()


def analyze(model: ZooModel, height: int, width: int) -> ModelCost:
    """Parameters and MACs of ``model`` at ``height x width``, per component if it has them."""
    model.check_input_size(height, width)
    image = torch.zeros(1, 3, height, width)
    with _counting(model) as counts:
        out = model(image)
    total = Cost(count_params(model), counts[0], counts[1], {IMAGE: tuple(image.shape)},
                 {"logits": tuple(out.shape)})
    components: dict[str, Cost] = {}
    if isinstance(model, SegmentationModel):
        env = {IMAGE: image}
        for comp in model.components():
            args = [env[n] for n in comp.input_names]
            with _counting(comp) as counts:
                outs = comp(*args)
            env.update(zip(comp.output_names, outs))
            components[comp.name] = Cost(
                count_params(comp), counts[0], counts[1],
                {n: tuple(a.shape) for n, a in zip(comp.input_names, args)},
                {n: tuple(o.shape) for n, o in zip(comp.output_names, outs)})
    return ModelCost(model.name, (height, width), total, components)
