"""A folder of images the export never saw, for INT8's held-out check with ``evaluate``.

The export calibrates and checks parity on its four sample images (export/samples.py). These
are other images of the same kinds, made the same way, none of them a sample: procedural street
scenes with other seeds, the two elevation maps under other colour maps and light directions,
and matplotlib's other photograph. Deterministic, so a figure computed on them is reproducible.

    python benchmarks/heldout_images.py heldout/
    python benchmarks/heldout_images.py --calibration calibration/   # a disjoint set to calibrate on
    seaformer-deploy evaluate --artifacts models/seaformer-t_512x512_logits --images heldout/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import LightSource
from PIL import Image

from seaformer_deploy.export.samples import _sample_data, _street_scene

STREET_SEEDS = range(1, 17)          # the sample street scene uses seed 20250101
RELIEFS = [("topobathy.npz", "topo", "terrain", 135), ("topobathy.npz", "topo", "cividis", 45),
           ("jacksboro_fault_dem.npz", "elevation", "gist_earth", 135),
           ("jacksboro_fault_dem.npz", "elevation", "copper", 225)]
# --calibration: shares no image with the held-out set above nor with the samples
CALIBRATION_SEEDS = range(101, 133)
CALIBRATION_RELIEFS = [("topobathy.npz", "topo", "ocean", 270),
                       ("jacksboro_fault_dem.npz", "elevation", "summer", 90)]


def relief(filename: str, key: str, cmap: str, azimuth: float) -> np.ndarray:
    with np.load(_sample_data() / filename) as data:
        elevation = np.asarray(data[key], dtype=np.float64)
    shade = LightSource(azdeg=azimuth, altdeg=40)
    rgb = shade.shade(elevation, cmap=matplotlib.colormaps[cmap], blend_mode="soft",
                      vert_exag=0.05 if np.ptp(elevation) > 1000 else 1.0)
    return (rgb[..., :3] * 255).round().astype(np.uint8)


def images(calibration: bool = False) -> dict[str, np.ndarray]:
    seeds, reliefs = ((CALIBRATION_SEEDS, CALIBRATION_RELIEFS) if calibration
                      else (STREET_SEEDS, RELIEFS))
    found = {f"street_{seed:03d}": _street_scene(seed=seed) for seed in seeds}
    for filename, key, cmap, azimuth in reliefs:
        found[f"{Path(filename).stem}_{cmap}_{azimuth}"] = relief(filename, key, cmap, azimuth)
    if not calibration:
        with Image.open(_sample_data() / "Minduka_Present_Blue_Pack.png") as photo:
            found["minduka_photo"] = np.asarray(photo.convert("RGB"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--calibration", action="store_true",
                        help="make the disjoint calibration set instead")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    made = images(args.calibration)
    for name, rgb in made.items():
        Image.fromarray(rgb).save(args.folder / f"{name}.png")
    print(f"{len(made)} images in {args.folder}")


if __name__ == "__main__":
    main()
