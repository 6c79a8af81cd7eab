"""INT8 in an export: what stays FP32 (``plan``), the sensitivity report in the export
folder (int8_sensitivity.json, .md and .png) and the warnings when an artifact misses the target.

The JSON is the manifest's ``int8`` record with the model and size beside it; the Markdown and
the plot rank the blocks (worst first) by the labels their solo quantization flips, and show
the greedy search's steps when there was a target.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..models import get_spec
from ..models.components import IMAGE
from . import manifest as mf
from . import sensitivity
from .precision import Precision
from .records import Int8Plan, Manifest
from .sensitivity import REPORT

if TYPE_CHECKING:
    from ..models import SegmentationModel
    from .artifacts import Calibration
    from .guard import Progress
    from .pipeline import ExportOptions


def plan(staging: Path, deploy: SegmentationModel, opts: ExportOptions, images: torch.Tensor,
         cal: Calibration, size: tuple[int, int], progress: Progress | None
         ) -> Int8Plan | None:
    """What stays FP32 in the INT8 artifacts (None: no INT8 export); with a ranking, the
    sensitivity report goes into the export folder."""
    if Precision.INT8.value not in opts.precisions:
        return None
    batches = [(cal.env[IMAGE][i:i + 1],) for i in range(len(cal.env[IMAGE]))]
    chosen = sensitivity.plan(deploy, batches, cal.source, images, opts.keep_fp32,
                              opts.int8_target_agreement, opts.int8_report, progress)
    if chosen.ranking:
        chosen.report = write(staging, chosen, get_spec(opts.model).name, list(size))
    return chosen


def target_warnings(manifest: Manifest) -> list[str]:
    """INT8 artifacts whose own parity (their runtime, not the simulation that chose the FP32
    blocks) misses ``--int8-target-agreement``."""
    target = manifest.int8.target_agreement if manifest.int8 else None
    if target is None:
        return []
    return [f"{a.path}: label agreement {a.parity.worst.label_agreement:.2f} % on its runtime "
            f"misses the target agreement {target:g} % (the simulation reached it with "
            f"{', '.join(manifest.int8.fp32_blocks) or 'no block'} in FP32); leave more blocks "
            f"in FP32 or lower the target"
            for a in manifest.artifacts if a.precision == Precision.INT8.value
            and a.parity.worst.label_agreement is not None
            and a.parity.worst.label_agreement < target]


def write(folder: Path, plan: Int8Plan, model: str, size: list[int]) -> list[str]:
    """Write the three files into ``folder`` (the export's staging folder); their names."""
    names = [f"{REPORT}.json", f"{REPORT}.md", f"{REPORT}.png"]
    mf.write_json(folder / names[0], {"model": model, "input_size": size, **plan.to_dict()})
    (folder / names[1]).write_text(markdown(plan, model, size))
    _plot(folder / names[2], plan, model, size)
    return names


def markdown(plan: Int8Plan, model: str, size: list[int]) -> str:
    lines = [f"# INT8 sensitivity of {model} {size[0]}x{size[1]}", "",
             f"Each block quantized alone, everything else FP32; {plan.simulated}. "
             f"Calibration: {plan.calibration}.", "",
             "| rank | block | params | PSNR dB | labels % | FP32 in the artifacts |",
             "|---:|---|---:|---:|---:|---|"]
    for i, b in enumerate(plan.ranking or [], 1):
        kept = "yes" if b.block in plan.fp32_blocks else ""
        lines.append(f"| {i} | `{b.block}` | {b.params:,} | {b.psnr_db:.1f} | "
                     f"{b.label_agreement:.2f} | {kept} |")
    lines += ["", f"Classifiers left FP32: {', '.join(plan.classifiers_fp32) or 'none'}."]
    if plan.steps:
        lines += ["", f"## Search for label agreement >= {plan.target_agreement:g} %", "",
                  "| step | FP32 blocks | PSNR dB | labels % |", "|---:|---|---:|---:|"]
        for i, s in enumerate(plan.steps):
            lines.append(f"| {i} | {', '.join(f'`{b}`' for b in s.fp32_blocks) or 'none'} | "
                         f"{s.psnr_db:.1f} | {s.label_agreement:.2f} |")
    lines += ["", f"FP32 in every INT8 artifact: {', '.join(plan.fp32_blocks) or 'none'} "
                  f"({plan.chosen_by.replace('_', '-')}). The artifacts' own parity (on their "
                  f"runtimes) is in manifest.json.", ""]
    return "\n".join(lines)


def _plot(path: Path, plan: Int8Plan, model: str, size: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranking = list(reversed(plan.ranking or []))          # worst at the top
    panels = 2 if plan.steps else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 0.35 * len(ranking) + 1.8),
                             squeeze=False)
    ax = axes[0][0]
    flips = [100.0 - b.label_agreement for b in ranking]
    colours = ["tab:blue" if b.block in plan.fp32_blocks else "tab:orange" for b in ranking]
    ax.barh([b.block for b in ranking], flips, color=colours)
    ax.set_xlabel("labels changed when only this block is INT8 (%)")
    ax.set_title("blocks (blue: kept FP32)", fontsize=10)
    if plan.steps:
        ax = axes[0][1]
        ax.plot(range(len(plan.steps)), [s.label_agreement for s in plan.steps], "o-")
        ax.axhline(plan.target_agreement, color="grey", linestyle="--", label="target")
        ax.set_xlabel("blocks kept in FP32")
        ax.set_ylabel("label agreement with FP32 (%)")
        ax.set_xticks(range(len(plan.steps)))
        ax.legend()
    fig.suptitle(f"INT8 sensitivity, {model} {size[0]}x{size[1]}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
