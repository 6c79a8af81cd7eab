"""Deterministic, natural-looking sample images: the fixed inputs of parity checks and benchmarks.

White noise is a poor probe of a segmenter: its statistics are unlike any photo, so activations
and argmax margins are unlike deployment. We use real image data that ships inside matplotlib
(a photograph and two elevation maps rendered as shaded relief) plus one procedural street-like
scene with 1/f texture, all resized to the export size. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F

# mmsegmentation's ImageNet normalisation (RGB), used by every official config.
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
SAMPLE_NAMES = ("grace_hopper", "topobathy_relief", "jacksboro_relief", "street_scene")


@dataclass(frozen=True)
class Sample:
    name: str
    rgb: np.ndarray          # (H, W, 3) uint8


def _sample_data() -> Path:
    return Path(matplotlib.get_data_path()) / "sample_data"


def _resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize with antialiasing."""
    h, w = image.shape[:2]
    target = width / height
    if w / h > target:
        new_w = int(round(h * target))
        image = image[:, (w - new_w) // 2:(w - new_w) // 2 + new_w]
    else:
        new_h = int(round(w / target))
        image = image[(h - new_h) // 2:(h - new_h) // 2 + new_h]
    t = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=(height, width), mode="bilinear", antialias=True,
                      align_corners=False)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _photo() -> np.ndarray:
    import matplotlib.image as mpimg

    return np.asarray(mpimg.imread(_sample_data() / "grace_hopper.jpg"))[..., :3]


def _relief(filename: str, key: str, cmap: str) -> np.ndarray:
    """An elevation map rendered as a hill-shaded landscape, as a map app or drone would see."""
    from matplotlib.colors import LightSource

    with np.load(_sample_data() / filename) as data:
        elevation = np.asarray(data[key], dtype=np.float64)
    shade = LightSource(azdeg=315, altdeg=45)
    rgb = shade.shade(elevation, cmap=matplotlib.colormaps[cmap], blend_mode="soft",
                      vert_exag=0.05 if np.ptp(elevation) > 1000 else 1.0)
    return (rgb[..., :3] * 255).round().astype(np.uint8)


def _pink_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Noise with a 1/f amplitude spectrum, the spectrum of natural images, in [0, 1]."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f
    field = np.fft.irfft2(spectrum, s=(h, w))
    return (field - field.min()) / (field.max() - field.min())


# The regions street_scene draws, in the order of its label values.
STREET_CLASSES = ("sky", "building", "window", "road", "lane marking", "sidewalk")


def _street_scene(height: int = 512, width: int = 1024, seed: int = 20250101) -> np.ndarray:
    return street_scene(height, width, seed)[0]


def street_scene(height: int = 512, width: int = 1024, seed: int = 20250101
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Sky, facades with windows, road and pavement: regions with edges, like Cityscapes.
    (H, W, 3) uint8 RGB and its (H, W) uint8 ground truth, indices into ``STREET_CLASSES``
    (what benchmarks/trained_weights.py trains and scores a model on)."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, height)[:, None, None]
    img = np.empty((height, width, 3))
    labels = np.zeros((height, width), np.uint8)
    img[:] = (0.55 + 0.35 * yy) * np.array([0.55, 0.7, 0.95])          # sky gradient
    horizon = int(0.58 * height)
    x = 0
    while x < width:                                                      # facades
        bw = int(rng.integers(width // 12, width // 5))
        top = int(rng.integers(height // 10, horizon - height // 8))
        colour = rng.uniform(0.25, 0.8, size=3)
        img[top:horizon, x:x + bw] = colour
        labels[top:horizon, x:x + bw] = 1
        for wy in range(top + 12, horizon - 16, 28):                      # windows
            for wx in range(x + 8, x + bw - 14, 22):
                img[wy:wy + 14, wx:wx + 10] = colour * 0.35
                labels[wy:wy + 14, wx:wx + 10] = 2
        x += bw
    road = np.clip((yy[horizon:, :, 0] - 0.58) / 0.42, 0, 1)
    img[horizon:] = (0.32 + 0.1 * road)[..., None] * np.array([1.0, 1.0, 1.02])
    labels[horizon:] = 3
    lanes = (np.abs(np.arange(width) - width / 2) < 4 + 30 * road) & (road > 0.05)
    dashes = lanes & ((np.arange(height - horizon)[:, None] // 20) % 2 == 0)
    img[horizon:][dashes] = 0.9
    labels[horizon:][dashes] = 4
    img[horizon:, : width // 6] = 0.6                                     # pavement
    labels[horizon:, : width // 6] = 5
    texture = _pink_noise(rng, height, width)[..., None]
    img = img * (0.8 + 0.4 * texture)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), labels


def sample_images(height: int, width: int, count: int = 4) -> list[Sample]:
    """``count`` (at most 4) sample images at ``height x width``, always the same."""
    if not 1 <= count <= len(SAMPLE_NAMES):
        raise ValueError(f"count must be in 1..{len(SAMPLE_NAMES)}")
    makers = {
        "grace_hopper": _photo,
        "topobathy_relief": lambda: _relief("topobathy.npz", "topo", "gist_earth"),
        "jacksboro_relief": lambda: _relief("jacksboro_fault_dem.npz", "elevation", "terrain"),
        "street_scene": _street_scene,
    }
    return [Sample(n, _resize_rgb(makers[n](), height, width)) for n in SAMPLE_NAMES[:count]]


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, whatever the file's mode."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def stretch(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` resized to ``size`` (H, W) as cv2.resize INTER_LINEAR does (mmcv's imresize: no
    antialiasing), as uint8: how ``evaluate`` and INT8 calibration prepare a user's image."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    t = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False,
                      antialias=False)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def normalize(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32, mmseg's normalisation."""
    t = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (t - mean) / std


def sample_batch(height: int, width: int, count: int = 4) -> torch.Tensor:
    """The samples as one normalised (count, 3, H, W) float32 batch."""
    return torch.cat([normalize(s.rgb) for s in sample_images(height, width, count)])
