"""Train a model on labelled street scenes: a trained checkpoint to measure INT8 fidelity on.

Seeded weights (export/weights.py) are calibrated and have a fitted head, but no training: their
label maps are speckle (at 512x512, SeaFormer-T's 64x64 logit map of a sample holds about 1,460
regions, and 95 % of its pixels lie within 2 pixels of a boundary), and 99 % of the labels INT8
flips lie there (int8_flips.py). So their INT8 label agreement says more about the weights than
about the quantizer. No official checkpoint can be downloaded here; this script makes a real one
instead: the model, from its own initialisation, trained with its ground truth on procedural
street scenes (export/samples.street_scene: sky, building, window, road, lane marking, sidewalk).

It writes, into FOLDER:
  <model>.pth               mmseg's layout ({"state_dict", "meta": {"CLASSES", ...}})
  heldout/images, /labels   the held-out street scenes (benchmarks/heldout_images.py's seeds)
                            with their ground truth: ``evaluate --images --labels``
  calibration/              street scenes for ``export --calibration``
Train, held-out and calibration scenes come from disjoint seeds; the export's sample images
(one street scene among them) are not used for training either.

Training follows mmseg's recipe at a CPU's scale: AdamW, poly learning-rate decay, random
256x256 crops of scenes stretched to the export size (so objects have the size they have at
export time), horizontal flips, cross-entropy on logits upsampled to the labels. Two threads,
seeded: the same arguments give the same checkpoint on the same machine.

    python benchmarks/trained_weights.py trained/ --model seaformer-t --steps 600
    seaformer-deploy export -m seaformer-t -c trained/seaformer-t.pth --precisions fp32,int8 \
        --calibration trained/calibration -o trained/models
    seaformer-deploy evaluate --artifacts trained/models/<export folder> \
        --images trained/heldout/images --labels trained/heldout/labels
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from seaformer_deploy.evaluate.metrics import confusion, scores
from seaformer_deploy.evaluate.predict import to_labels
from seaformer_deploy.export.samples import STREET_CLASSES, normalize, stretch, street_scene
from seaformer_deploy.models.registry import build, get_spec

from heldout_images import CALIBRATION_SEEDS, STREET_SEEDS

TRAIN_SEEDS = range(5000, 5064)     # disjoint from the samples', held-out and calibration seeds
CROP = 256
BATCH = 8
THREADS = 2


def scenes(seeds, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images and labels of the street scenes ``seeds``, stretched to ``size`` as
    the export and evaluate stretch an image (labels: nearest)."""
    images, labels = [], []
    for seed in seeds:
        rgb, label = street_scene(seed=seed)
        images.append(normalize(stretch(rgb, size)))
        index = torch.from_numpy(label)[None, None].float()
        labels.append(F.interpolate(index, size=size, mode="nearest")[0, 0].long())
    return torch.cat(images), torch.stack(labels)


def batches(images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator):
    """Endless random crops (``CROP`` a side, or the whole image when smaller) and flips."""
    n, _, h, w = images.shape
    crop = min(CROP, h, w)
    while True:
        pick = torch.randint(n, (BATCH,), generator=gen)
        ys = torch.randint(h - crop + 1, (BATCH,), generator=gen)
        xs = torch.randint(w - crop + 1, (BATCH,), generator=gen)
        flips = torch.rand(BATCH, generator=gen) < 0.5
        xb, yb = [], []
        for i, y, x, flip in zip(pick, ys, xs, flips):
            img = images[i, :, y:y + crop, x:x + crop]
            lab = labels[i, y:y + crop, x:x + crop]
            xb.append(img.flip(-1) if flip else img)
            yb.append(lab.flip(-1) if flip else lab)
        yield torch.stack(xb), torch.stack(yb)


def train(name: str, size: tuple[int, int], steps: int, lr: float, seed: int
          ) -> tuple[torch.nn.Module, list[float]]:
    torch.manual_seed(seed)
    model = build(name, len(STREET_CLASSES)).train()
    images, labels = scenes(TRAIN_SEEDS, size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (1 - s / steps) ** 1.0)
    losses = []
    started = time.perf_counter()
    for step, (x, y) in enumerate(batches(images, labels, torch.Generator().manual_seed(seed))):
        if step == steps:
            break
        optimizer.zero_grad()
        logits = F.interpolate(model(x), size=y.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {np.mean(losses[-50:]):.3f}  "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    return model.eval(), losses


def heldout_miou(model: torch.nn.Module, size: tuple[int, int],
                 pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """mIoU of the trained model on the held-out (image, label) pairs, scored as ``evaluate``
    scores an image: whole image at the export size, logits resized to the label, argmax."""
    matrix = np.zeros((len(STREET_CLASSES),) * 2, np.int64)
    for rgb, label in pairs:
        with torch.no_grad():
            logits = model(normalize(stretch(rgb, size))).numpy()
        matrix += confusion(label, to_labels(logits, "logits", label.shape), len(STREET_CLASSES))
    return scores(matrix).miou


def write_scenes(folder: Path, scenes: dict[int, tuple[np.ndarray, np.ndarray]],
                 with_labels: bool) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    if with_labels:
        (folder / "labels").mkdir(parents=True, exist_ok=True)
    for seed, (rgb, label) in scenes.items():
        Image.fromarray(rgb).save(folder / "images" / f"street_{seed:03d}.png")
        if with_labels:
            Image.fromarray(label).save(folder / "labels" / f"street_{seed:03d}.png")


def make(folder: Path, model: str, size: int, steps: int, lr: float = 2e-3,
         seed: int = 0) -> Path:
    """Train ``model`` and write its checkpoint and the held-out and calibration scenes into
    ``folder``; returns the checkpoint's path."""
    torch.set_num_threads(THREADS)
    name = get_spec(model).name
    trained, losses = train(name, (size, size), steps, lr, seed)
    heldout = {s: street_scene(seed=s) for s in STREET_SEEDS}
    miou = heldout_miou(trained, (size, size), list(heldout.values()))
    print(f"{name}: held-out mIoU {miou:.2f} (ground truth, FP32, {len(STREET_SEEDS)} scenes)")
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"CLASSES": list(STREET_CLASSES), "steps": steps, "lr": lr, "seed": seed,
            "crop": CROP, "batch": BATCH, "size": size,
            "final_loss": float(np.mean(losses[-50:])), "heldout_miou": miou,
            "torch": str(torch.__version__)}     # a TorchVersion would need --trust-checkpoint
    path = folder / f"{name}.pth"
    tmp = path.with_suffix(".pth.tmp")
    torch.save({"state_dict": trained.state_dict(), "meta": meta}, tmp)
    tmp.replace(path)
    write_scenes(folder / "heldout", heldout, with_labels=True)
    calibration = {s: street_scene(seed=s) for s in CALIBRATION_SEEDS}
    write_scenes(folder / "calibration", calibration, with_labels=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", default="seaformer-t")
    parser.add_argument("--size", type=int, default=512, help="the export size (square)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = make(args.folder, args.model, args.size, args.steps, args.lr, args.seed)
    print(f"wrote {path}, {args.folder / 'heldout'}, {args.folder / 'calibration'}")


if __name__ == "__main__":
    main()
