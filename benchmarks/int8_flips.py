"""Where INT8 flips labels: seeded weights against a trained checkpoint (docs/int8.md).

For each set of weights, the model all-INT8 in PyTorch's simulation (the PT2E quantizer and
calibration the .pte uses, as ``--int8-report`` runs it) on the export's sample images, and the
FP32 label maps at the logits' 1/8 resolution, where parity compares labels: the label
agreement, the connected regions per image, the share of pixels within 2 pixels of a boundary,
how often INT8 flips a pixel near a boundary and away from one, and the share of flips near
one. Not a test: a script that prints numbers.

    python benchmarks/int8_flips.py --model seaformer-t --checkpoint trained/seaformer-t.pth
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from seaformer_deploy import api
from seaformer_deploy.export.fold import fold_batchnorm
from seaformer_deploy.export.quantize import pt2e_quantized
from seaformer_deploy.export.rewrites import deploy_form
from seaformer_deploy.export.samples import sample_batch
from seaformer_deploy.export.weights import synthetic_model
from seaformer_deploy.quiet import quiet_third_party_logs

REACH = 2            # pixels (of the 1/8 map) from a boundary that count as "near" it


def labels(model: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(images[i:i + 1]).argmax(1).numpy()
                               for i in range(len(images))])


def near_boundary(maps: np.ndarray) -> np.ndarray:
    window = (1, 2 * REACH + 1, 2 * REACH + 1)
    return ndimage.maximum_filter(maps, window) != ndimage.minimum_filter(maps, window)


def flips(model: torch.nn.Module, images: torch.Tensor) -> dict:
    deploy = fold_batchnorm(model)
    deploy_form(deploy, images[:1])
    quantized = pt2e_quantized(deploy, (images[:1],), [(images[i:i + 1],)
                                                       for i in range(len(images))])
    fp32, int8 = labels(deploy, images), labels(quantized, images)
    near, flipped = near_boundary(fp32), fp32 != int8
    regions = [ndimage.label(m == c)[1] for m in fp32 for c in np.unique(m)]
    return {"label_agreement_pct": 100 * float((~flipped).mean()),
            "regions_per_image": sum(regions) / len(fp32),
            "map_pixels": int(fp32[0].size),
            "near_boundary_pct": 100 * float(near.mean()),
            "flipped_near_pct": 100 * float(flipped[near].mean()),
            "flipped_away_pct": 100 * float(flipped[~near].mean()) if (~near).any() else None,
            "flips_near_boundary_pct": 100 * float((flipped & near).sum() / max(flipped.sum(), 1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seaformer-t")
    parser.add_argument("--checkpoint", type=Path, help="trained weights (trained_weights.py)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    quiet_third_party_logs()
    torch.set_num_threads(2)
    images = sample_batch(args.size, args.size)
    found = {"seeded": flips(synthetic_model(args.model, (args.size, args.size)), images)}
    if args.checkpoint:
        found["trained"] = flips(api.create_model(args.model, checkpoint=args.checkpoint), images)
    for weights, r in found.items():
        print(f"{args.model} {args.size}px, {weights}: labels {r['label_agreement_pct']:.2f} %, "
              f"{r['regions_per_image']:.0f} regions per {r['map_pixels']}-pixel map, "
              f"{r['near_boundary_pct']:.1f} % of pixels near a boundary; INT8 flips "
              f"{r['flipped_near_pct']:.2f} % of those and {r['flipped_away_pct'] or 0:.2f} % of "
              f"the rest ({r['flips_near_boundary_pct']:.0f} % of flips near a boundary)")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "size": args.size,
                                         "results": found}, indent=2) + "\n")


if __name__ == "__main__":
    main()
