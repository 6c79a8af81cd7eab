"""The INT8 calibration set: the export's sample images, or ``--calibration DIR``.

A folder's images may have any size and format Pillow reads; each is converted to RGB and
stretched to the export size (``samples.stretch``: cv2-style bilinear, as mmseg resizes),
without the crop the sample images get: that is what ``evaluate`` feeds the model, so the
observers see the statistics the artifact will. Then the export's own normalisation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import OptionError, option
from .samples import load_rgb, normalize, stretch
from .units import reference_tensors

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CHUNK = 8                  # images per FP32 forward pass when computing the units' inputs


def image_files(folder: Path) -> list[Path]:
    """The images under ``folder`` (recursively), sorted; an OptionError if there are none."""
    flag = option("calibration")
    if not folder.is_dir():
        raise OptionError(f"{flag} {folder}: no such folder; it takes a folder of images "
                          f"({', '.join(SUFFIXES)}), e.g. a few hundred from your task's "
                          f"training set.")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise OptionError(f"{flag} {folder}: the folder holds no image ({', '.join(SUFFIXES)}); "
                          f"point it at a folder of calibration images.")
    return files


def load_images(files: list[Path], size: tuple[int, int]) -> torch.Tensor:
    """The images as one normalised (N, 3, H, W) float32 batch at ``size``."""
    from PIL import UnidentifiedImageError

    batch = []
    for path in files:
        try:
            rgb = load_rgb(path)
        except (UnidentifiedImageError, OSError) as exc:
            raise OptionError(f"{option('calibration')}: {path} is not an image Pillow can "
                              f"read ({exc}); remove it from the folder or convert it.") from None
        batch.append(normalize(stretch(rgb, size)))
    return torch.cat(batch)


def unit_inputs(model, images: torch.Tensor, output: str, size: tuple[int, int]) -> dict:
    """Every named tensor of the component chain for the calibration images, computed by
    the FP32 model a few images at a time (a few hundred 512x512 images at once would need
    tens of GB)."""
    chunks = [reference_tensors(model, images[i:i + CHUNK], output, size)
              for i in range(0, len(images), CHUNK)]
    return {name: torch.cat([c[name] for c in chunks]) for name in chunks[0]}


def source(folder: Path | None, count: int) -> str:
    """The manifest's words for where the calibration set came from."""
    if folder is None:
        return "the export's sample images, through the FP32 model up to this unit"
    return (f"{count} images from {folder} (stretched to the export size, normalised), "
            f"through the FP32 model up to this unit")
