"""Export units: the whole model and its four components, as graphs with named tensors.

A unit wraps a module whose ``forward`` takes positional tensors and returns a tuple. Output
modes apply to the whole model and to the head: ``logits`` (1/8 resolution, what the papers time)
or ``labels`` (bilinear resize to the input size, then argmax: the exact post-processing mmseg
does, so its cost is explicit and measurable).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models import SegmentationModel
from ..models.components import IMAGE, LOGITS, run_chain
from ..models.layers import resize

OUTPUT_MODES = ("logits", "labels")
LABELS = "labels"
WHOLE = "model"


def to_labels(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel class at the input resolution, as mmseg computes it at inference.

    ``contiguous``: ExecuTorch's portable argmax (XNNPACK has none) rejects channels-last input.
    """
    return resize(logits, size).contiguous().argmax(dim=1)


class ExtraWork(nn.Module):
    """``n`` depthwise 3x3 convolutions with a centred unit kernel: exactly the identity (each
    output is 1 * x + 0 * neighbours, exact in FP32 and FP16) yet a real operator that every
    runtime executes.

    Only for validating latency gates: appended to the logits it makes an artifact slower by a
    calibrated amount with outputs unchanged (``export --extra-work``). Never for deployment.
    """

    def __init__(self, channels: int, n: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1, groups=channels,
                                             bias=False) for _ in range(n))
        with torch.no_grad():
            for conv in self.convs:
                conv.weight.zero_()
                conv.weight[:, :, 1, 1] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return x


class WithOutputMode(nn.Module):
    """Runs ``inner`` (which returns a tuple ending in logits), then the optional extra work on
    the logits, then the output mode."""

    def __init__(self, inner: nn.Module, labels_size: tuple[int, int] | None,
                 extra: ExtraWork | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.labels_size = labels_size
        self.extra = extra

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.inner(*inputs)
        out = out if isinstance(out, tuple) else (out,)
        logits = self.extra(out[-1]) if self.extra is not None else out[-1]
        if self.labels_size is not None:
            logits = to_labels(logits, self.labels_size)
        return (*out[:-1], logits)


@dataclass
class Unit:
    """One exportable graph: a module and the names and kinds of its tensors."""

    name: str                       # "model", "stem", "context", "spatial" or "head"
    module: nn.Module
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    # INT8: modules (names inside ``module``) that stay FP32.
    fp32_modules: tuple[str, ...] = ()

    def output_kind(self, name: str) -> str:
        return {LOGITS: "logits", LABELS: "labels"}.get(name, "features")


def build_units(model: SegmentationModel, output: str, size: tuple[int, int],
                components: bool = True, extra_work: int = 0) -> list[Unit]:
    """The whole model, then (optionally) stem, context, spatial and head, in chain order.

    ``extra_work`` appends that many identity convolutions (:class:`ExtraWork`, shared) to the
    logits of the whole model and of the head.
    """
    if output not in OUTPUT_MODES:
        raise ValueError(f"output must be one of {OUTPUT_MODES}")
    labels_size = size if output == LABELS else None
    final = LABELS if labels_size else LOGITS
    extra = ExtraWork(model.num_classes, extra_work).eval() if extra_work > 0 else None
    units = [Unit(WHOLE, WithOutputMode(model, labels_size, extra).eval(), (IMAGE,), (final,))]
    if components:
        comps = model.components()
        for comp in comps[:-1]:
            units.append(Unit(comp.name, comp.eval(), comp.input_names, comp.output_names))
        head = comps[-1]
        units.append(Unit(head.name, WithOutputMode(head, labels_size, extra).eval(),
                          head.input_names, (final,)))
    return units


def reference_tensors(model: SegmentationModel, images: torch.Tensor, output: str,
                      size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Every named tensor of the chain for ``images``, computed in FP32 eager PyTorch."""
    with torch.no_grad():
        env = run_chain(model.components(), images)
        full = model(images)
    if not torch.equal(full, env[LOGITS]):
        raise RuntimeError("component chain differs from the full forward pass")
    if output == LABELS:
        env[LABELS] = to_labels(env[LOGITS], size)
    return env
