"""Fixtures of the evaluate tests: one tiny export (ONNX and .pte, FP32, 64x64, no components)
and writers of synthetic datasets in each layout (random images and labels, written by
Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# (H, W) of the images: the export size, and two others so that both resizes are exercised.
SIZES = ((64, 64), (48, 80), (90, 70))


@pytest.fixture(scope="session")
def eval_export(tmp_path_factory):
    """SeaFormer-T at 64x64, whole model only, as ONNX and .pte (NHWC edges), FP32."""
    from seaformer_deploy.export.pipeline import ExportOptions, export

    out = tmp_path_factory.mktemp("eval-models")
    return export(ExportOptions(model="seaformer-t", input_size=(64, 64), out_root=out,
                                formats=("onnx", "pte"), precisions=("fp32",),
                                components=False))


def _image(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """Smooth blobs rather than noise, so the model's labels form regions."""
    small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)


def _label(rng: np.random.Generator, h: int, w: int, high: int) -> np.ndarray:
    label = rng.integers(0, high, (h, w), dtype=np.uint8)
    label[:4, :4] = 255                                 # some ignored pixels
    return label


def write_ade(root: Path, seed: int = 0, high: int = 151) -> Path:
    """images/validation/*.jpg + annotations/validation/*.png, labels 0..150 (0 = other)."""
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(SIZES):
        for sub, suffix in (("images", ".jpg"), ("annotations", ".png")):
            (root / sub / "validation").mkdir(parents=True, exist_ok=True)
        _image(rng, h, w).save(root / "images" / "validation" / f"ADE_val_{i:08d}.jpg")
        Image.fromarray(_label(rng, h, w, high)).save(
            root / "annotations" / "validation" / f"ADE_val_{i:08d}.png")
    return root


def write_cityscapes(root: Path, seed: int = 1, classes: int = 150) -> Path:
    """leftImg8bit/val/<city>/*_leftImg8bit.png + gtFine/val/<city>/*_labelTrainIds.png."""
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(SIZES):
        city = ("frankfurt", "lindau")[i % 2]
        stem = f"{city}_{i:06d}_000019"
        for top in ("leftImg8bit", "gtFine"):
            (root / top / "val" / city).mkdir(parents=True, exist_ok=True)
        _image(rng, h, w).save(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
        Image.fromarray(_label(rng, h, w, classes)).save(
            root / "gtFine" / "val" / city / f"{stem}_gtFine_labelTrainIds.png")
        Image.fromarray(_label(rng, h, w, 34)).save(          # present in the real layout too
            root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png")
    return root


def write_pairs(root: Path, seed: int = 2, classes: int = 150) -> tuple[Path, Path]:
    """images/<name>.jpg|.png and labels/<name>.png."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, (h, w) in enumerate(SIZES):
        _image(rng, h, w).save(root / "images" / f"frame{i}{'.png' if i % 2 else '.jpg'}")
        Image.fromarray(_label(rng, h, w, classes)).save(root / "labels" / f"frame{i}.png")
    return root / "images", root / "labels"


def mmseg_metrics(truths, preds, classes: int) -> dict:
    """mmseg's IoUMetric in plain NumPy: intersect_and_union per image, summed over the
    images, then its formulas (``np.nanmean``), in percent."""
    inter, union, area_truth = np.zeros(classes), np.zeros(classes), np.zeros(classes)
    for truth, pred in zip(truths, preds):
        keep = truth != 255
        t, p = truth[keep], pred[keep]
        for c in range(classes):
            inter[c] += np.sum((t == c) & (p == c))
            union[c] += np.sum((t == c) | (p == c))
            area_truth[c] += np.sum(t == c)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = inter / union, inter / area_truth
    return {"miou": 100.0 * float(np.nanmean(iou)),
            "iou": [None if np.isnan(v) else 100.0 * float(v) for v in iou],
            "accuracy": [None if np.isnan(v) else 100.0 * float(v) for v in acc],
            "pixel_accuracy": 100.0 * float(inter.sum() / area_truth.sum()),
            "mean_accuracy": 100.0 * float(np.nanmean(acc)), "pixels": int(area_truth.sum())}


@pytest.fixture(scope="session")
def reference_metrics():
    return mmseg_metrics


@pytest.fixture(scope="session")
def make_ade():
    return write_ade


@pytest.fixture
def ade(tmp_path) -> Path:
    return write_ade(tmp_path / "ade")


@pytest.fixture
def cityscapes(tmp_path) -> Path:
    return write_cityscapes(tmp_path / "cityscapes")


@pytest.fixture
def pairs(tmp_path) -> tuple[Path, Path]:
    return write_pairs(tmp_path / "pairs")
