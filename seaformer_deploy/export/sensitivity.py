"""Which blocks cost INT8 accuracy, and which to leave in FP32 to meet a target.

Each block (``blocks``: backbone.smb1, backbone.trans1, decode_head.fuse1, ...) is quantized
alone, everything else FP32, with the export's own PT2E configuration and calibration set; the
simulated INT8 model (torchao's reference quantized graph: quantize / dequantize around FP32
operators, the arithmetic the XNNPACK kernels approximate) runs the sample images and is
compared with PyTorch FP32. A block whose solo quantization flips many labels is sensitive.

For a target label agreement, the blocks are left in FP32 in that order, worst first, until
the model with every other block quantized meets it (greedy, as AIMET's and Qualcomm's
mixed-precision tools do). Each step is measured, not predicted from the solo errors, because
the errors of several quantized blocks do not add. The real artifacts are then checked by the
parity gate on their own runtimes; the simulation ranks, the runtimes decide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import OptionError, option
from .parity import compare
from .quantize import Batches, capture, classifiers, pt2e_quantized, within
from .records import Int8Block, Int8Plan, Int8Step

REPORT = "int8_sensitivity"          # .json, .md and .png in the export folder
Progress = Callable[[str, int, int], None]


def blocks(model: nn.Module) -> list[str]:
    """The blocks the analysis and ``--keep-fp32`` speak of: the children of the model's parts
    (``backbone.smb1``, ``decode_head.fuse1``) that hold weights; a part without children
    counts itself."""
    found = []
    for part_name, part in model.named_children():
        children = [(f"{part_name}.{n}", c) for n, c in part.named_children()]
        for name, module in children or [(part_name, part)]:
            if any(True for _ in module.parameters()):
                found.append(name)
    return found


def check_blocks(model: nn.Module, names: Sequence[str]) -> None:
    """An OptionError unless every name is a module of ``model``."""
    modules = dict(model.named_modules())
    if bad := [n for n in names if not n or n not in modules]:
        raise OptionError(
            f"{option('keep_fp32')}: {', '.join(map(repr, bad))} is not a module of "
            f"{type(model).__name__}; it takes module names such as its blocks "
            f"{', '.join(blocks(model))} (e.g. {option('keep_fp32')} {blocks(model)[0]}).")


def plan(model: nn.Module, calibration: Batches, source: str, inputs: torch.Tensor,
         keep: Sequence[str], target: float | None, ranked: bool,
         progress: Progress | None = None) -> Int8Plan:
    """What stays FP32: ``keep``, and with ``target`` the blocks the greedy search adds.
    ``model``: the deploy-form model (logits out); ``calibration``: its input batches and
    ``source`` where they came from; ``inputs``: the sample images (N, 3, H, W), run one at a
    time through the simulation; ``ranked``: rank every block (--int8-report)."""
    started = time.perf_counter()
    check_blocks(model, keep)
    keep = list(dict.fromkeys(keep))
    chosen = "int8_target_agreement" if target is not None else (
        "keep_fp32" if keep else "none")
    if target is None and not ranked:
        return Int8Plan(keep, chosen, _kept_classifiers(model, keep), source)
    sim = _Simulation(model, calibration, inputs)
    ranking = sim.ranking(progress)
    steps = _search(sim, ranking, keep, target) if target is not None else None
    fp32 = steps[-1].fp32_blocks if steps else keep
    return Int8Plan(fp32, chosen, _kept_classifiers(model, fp32), source, target, steps,
                    ranking, SIMULATED, round(time.perf_counter() - started, 1))


def _kept_classifiers(model: nn.Module, fp32: Sequence[str]) -> list[str]:
    """The classifiers (quantized like any block unless kept) that ``fp32`` leaves FP32."""
    return [c for c in classifiers(model) if within(c, fp32)]


SIMULATED = ("PT2E reference quantized graph in PyTorch (the .pte's quantizer and calibration), "
             "compared with FP32 on the sample images")


def unit_modules(form: nn.Module, unit: nn.Module, names: Sequence[str]) -> tuple[str, ...]:
    """The names inside ``unit`` (a unit built from ``form``) of ``form``'s modules ``names``;
    the components hold the model's own modules under other names (stem.smb1 is
    backbone.smb1)."""
    wanted = {id(form.get_submodule(n)) for n in names}
    return tuple(path for path, module in unit.named_modules() if id(module) in wanted)


class _Simulation:
    """The model traced once, quantized in many ways, each measured against FP32."""

    def __init__(self, model: nn.Module, calibration: Batches, inputs: torch.Tensor) -> None:
        self.model = model
        self.calibration = calibration
        self.inputs = inputs
        self.example = (inputs[:1],)
        self.traced = capture(model, self.example)
        with torch.no_grad():
            self.reference = np.concatenate([model(inputs[i:i + 1]).numpy()
                                             for i in range(len(inputs))])

    def measure(self, keep: Sequence[str] = (), only: str | None = None) -> tuple[float, float]:
        """(PSNR dB, label agreement %) of the simulation against FP32."""
        quantized = pt2e_quantized(self.model, self.example, self.calibration, keep, only,
                                   traced=self.traced)
        with torch.no_grad():
            out = np.concatenate([quantized(self.inputs[i:i + 1]).numpy()
                                  for i in range(len(self.inputs))])
        metrics = compare(self.reference, out, "logits")
        return round(metrics.psnr_db, 2), round(metrics.label_agreement, 3)

    def ranking(self, progress: Progress | None) -> list[Int8Block]:
        names = blocks(self.model)
        found = []
        for i, name in enumerate(names):
            if progress:
                progress(f"INT8 sensitivity {name}", i, len(names))
            psnr_db, agreement = self.measure(only=name)
            params = sum(p.numel() for p in self.model.get_submodule(name).parameters())
            found.append(Int8Block(name, params, psnr_db, agreement))
        return sorted(found, key=lambda b: (b.label_agreement, b.psnr_db))


def _search(sim: _Simulation, ranking: list[Int8Block], keep: list[str],
            target: float) -> list[Int8Step]:
    """Leave the worst-ranked blocks in FP32, one at a time, until ``target`` is met."""
    fp32 = list(keep)
    queue = [b.block for b in ranking if b.block not in fp32]
    steps = []
    while True:
        psnr_db, agreement = sim.measure(fp32)
        steps.append(Int8Step(list(fp32), psnr_db, agreement))
        if agreement >= target:
            return steps
        if not queue:
            raise OptionError(
                f"{option('int8_target_agreement')} {target:g}: not reached with every block "
                f"in FP32 (label agreement {agreement:.2f} %, from the operators "
                f"between blocks); lower the target or export fp16 instead.")
        fp32.append(queue.pop(0))


def check_target(target: float | None) -> None:
    if target is not None and not 0.0 < target <= 100.0:
        raise OptionError(f"{option('int8_target_agreement')} takes a label agreement in "
                          f"percent, above 0 and at most 100, got {target:g} "
                          f"(e.g. {option('int8_target_agreement')} 99).")
