"""INT8 fidelity on trained weights: issue 14's accuracy figures, through the product's own path.

For each model: a checkpoint trained on labelled street scenes (trained_weights.py; reused when
FOLDER already holds it), ``export`` in FP32 and INT8 from that checkpoint (the parity gate's
label agreement on the export's sample images), then ``evaluate`` on the held-out scenes with
their ground truth: mIoU of FP32 and INT8, and INT8's mIoU and pixel agreement against FP32's
own labels. None of the held-out scenes is used for training or calibration. Prints a Markdown
table and writes the figures as JSON. Not a test: a script that prints numbers.

    python benchmarks/int8_trained.py trained/ --models seaformer-t,topformer-t,seaformer-t++
    python benchmarks/int8_trained.py trained/ --calibration     # calibrate on street scenes
    python benchmarks/int8_trained.py trained/ --int8-target-agreement 99.5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from seaformer_deploy import api
from seaformer_deploy.export.manifest import sha256_path
from seaformer_deploy.models.registry import get_spec

import trained_weights


def measure(folder: Path, model: str, size: int, steps: int, calibration: bool,
            target: float | None, components: bool, limit: int | None = None,
            formats: tuple[str, ...] = ("onnx", "pte")) -> dict:
    name = get_spec(model).name
    checkpoint = folder / f"{name}.pth"
    if not checkpoint.exists():
        trained_weights.make(folder, name, size, steps)
    tag = "cal" if calibration else "samples"
    if target is not None:
        tag += f"-target{target:g}"
    started = time.perf_counter()
    exported = api.export(name, checkpoint=checkpoint, input_size=(size, size),
                          precisions=("fp32", "int8"), components=components, formats=formats,
                          out_root=folder / f"models-{tag}",
                          calibration=folder / "calibration" if calibration else None,
                          int8_target_agreement=target)
    export_s = time.perf_counter() - started
    evaluated = api.evaluate(exported.folder, images=folder / "heldout" / "images",
                             labels=folder / "heldout" / "labels", limit=limit,
                             out=folder / f"evaluations-{tag}" / exported.folder.name)
    results = {r["name"]: r for r in evaluated.document["results"]}
    rows = {}
    for artifact in exported.manifest.artifacts:
        if artifact.unit != "model":
            continue
        worst = artifact.parity.worst
        held = results[artifact.path]
        rows[artifact.path] = {
            "samples_labels_pct": worst.label_agreement, "samples_psnr_db": worst.psnr_db,
            "heldout_miou": held["labels"]["miou"],
            "heldout_miou_vs_fp32": held["vs_fp32"]["miou"],
            "heldout_agreement_pct": held["vs_fp32"]["pixel_accuracy"]}
    int8 = exported.manifest.int8
    return {"model": name, "size": size, "checkpoint_sha256": sha256_path(checkpoint),
            "calibration": "street scenes (calibration/)" if calibration else "sample images",
            "target_agreement": target, "fp32_blocks": int8.fp32_blocks if int8 else [],
            "pytorch_fp32_heldout_miou": results["pytorch.fp32"]["labels"]["miou"],
            "export_seconds": round(export_s, 1), "export": str(exported.folder),
            "evaluation": str(evaluated.folder), "artifacts": rows}


def table(found: list[dict]) -> str:
    lines = ["| model | artifact | FP32 blocks | samples labels % | held-out mIoU (FP32) "
             "| held-out mIoU vs FP32 | held-out agreement % |", "|---" * 7 + "|"]
    for m in found:
        for path, r in m["artifacts"].items():
            if ".int8." not in path:
                continue
            lines.append(
                f"| {m['model']} | {path} | {', '.join(m['fp32_blocks']) or 'none'} "
                f"| {r['samples_labels_pct']:.2f} | {r['heldout_miou']:.2f} "
                f"({m['pytorch_fp32_heldout_miou']:.2f}) | {r['heldout_miou_vs_fp32']:.2f} "
                f"| {r['heldout_agreement_pct']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--models", default="seaformer-t,topformer-t,seaformer-t++")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=600, help="training steps, when the "
                        "folder holds no checkpoint of the model yet")
    parser.add_argument("--calibration", action="store_true",
                        help="calibrate on the folder's street scenes instead of the samples")
    parser.add_argument("--int8-target-agreement", type=float)
    parser.add_argument("--components", action="store_true",
                        help="also export the components (the figures are the whole model's)")
    parser.add_argument("--formats", default="onnx,pte")
    parser.add_argument("--limit", type=int, help="evaluate the first N held-out scenes only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    found = [measure(args.folder, m, args.size, args.steps, args.calibration,
                     args.int8_target_agreement, args.components, args.limit,
                     tuple(args.formats.split(",")))
             for m in args.models.split(",")]
    print(table(found))
    if args.json:
        args.json.write_text(json.dumps({"results": found}, indent=2) + "\n")


if __name__ == "__main__":
    main()
