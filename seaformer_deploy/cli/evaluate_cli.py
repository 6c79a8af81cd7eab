"""``evaluate``: flags into ``api.evaluate``, then the accuracy table and where it was written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from .common import (TrustOpt, app, console, err_console, run_with_progress,
                     user_errors)


@app.command("evaluate")
@user_errors
def evaluate_cmd(
    artifacts: Annotated[Path, typer.Option(help="An export folder (with manifest.json).")],
    data: Annotated[Optional[Path], typer.Option(
        help="A dataset folder: ADE20K (images/validation/*.jpg, annotations/validation/*.png) "
             "or Cityscapes (leftImg8bit/val/<city>/*_leftImg8bit.png, "
             "gtFine/val/<city>/*_gtFine_labelTrainIds.png).")] = None,
    images: Annotated[Optional[Path], typer.Option(
        help="A folder of images; with --labels, pairs matched by file stem; alone, only the "
             "agreement with PyTorch FP32 is measured.")] = None,
    labels: Annotated[Optional[Path], typer.Option(
        help="A folder of label maps (class indices, 255 ignored) for --images.")] = None,
    reduce_zero_label: Annotated[bool, typer.Option(
        "--reduce-zero-label", help="--labels: label 0 is ignored and the others shifted down "
                                    "by one (ADE20K's convention).")] = False,
    artifact: Annotated[str, typer.Option(
        help="Comma-separated shell patterns over the whole-model artifacts' file names, e.g. "
             "'model.fp16.*'.")] = "model.*",
    checkpoint: Annotated[Optional[Path], typer.Option(
        "--checkpoint", "-c", help="The checkpoint the export was made from, for the PyTorch "
                                   "FP32 reference (default: the path its manifest records; "
                                   "the sha256 must match).")] = None,
    trust_checkpoint: TrustOpt = False,
    limit: Annotated[Optional[int], typer.Option(
        help="Evaluate the first N images only (sorted by path).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output folder (replaced when complete; default "
                            "evaluations/<export folder name>).")] = None,
) -> None:
    """Measure mIoU, per-class IoU and pixel accuracy of the artifacts and PyTorch FP32."""
    from ..api import evaluate

    patterns = tuple(dict.fromkeys(p.strip() for p in artifact.split(",") if p.strip()))
    options = dict(data=data, images=images, labels=labels,
                   reduce_zero_label=reduce_zero_label, artifact=patterns,
                   checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, limit=limit,
                   out=out)
    try:
        outcome = run_with_progress(lambda p: evaluate(artifacts, progress=p, **options),
                                    "evaluating")
    except KeyboardInterrupt:
        err_console.print("interrupted: nothing was written", highlight=False, markup=False)
        raise typer.Exit(130) from None
    print_evaluation(outcome.document)
    console.print(Text.assemble("evaluation: ", (str(outcome.folder), "bold")), highlight=False)


def print_evaluation(doc: dict) -> None:
    """One row per model: against the labels, and against PyTorch FP32's labels."""
    data = doc["dataset"]
    table = Table(title=f"{doc['export']['model']} on {data['layout']} ({data['count']} "
                        f"images)", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", no_wrap=True)
    for col in ("mIoU %", "mAcc %", "pixel acc %", "mIoU vs FP32 %", "agree vs FP32 %"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in doc["results"]:
        gt, vs = r["labels"] or {}, r["vs_fp32"] or {}
        table.add_row(r["name"], *(_pct(v) for v in (
            gt.get("miou"), gt.get("mean_accuracy"), gt.get("pixel_accuracy"),
            vs.get("miou"), vs.get("pixel_accuracy"))))
    console.print(table)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
