"""A folder of images the export never saw, for INT8's held-out check with ``evaluate``.

The export calibrates and checks parity on its four sample images (export/samples.py). These
are other images of the same kinds, made the same way, none of them a sample: procedural street
scenes with other seeds, the two elevation maps under other colour maps and light directions,
and matplotlib's other photograph. Deterministic, so a figure computed on them is reproducible.

    python benchmarks/heldout_images.py heldout/
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


def relief(filename: str, key: str, cmap: str, azimuth: float) -> np.ndarray:
    with np.load(_sample_data() / filename) as data:
        elevation = np.asarray(data[key], dtype=np.float64)
    shade = LightSource(azdeg=azimuth, altdeg=40)
    rgb = shade.shade(elevation, cmap=matplotlib.colormaps[cmap], blend_mode="soft",
                      vert_exag=0.05 if np.ptp(elevation) > 1000 else 1.0)
    return (rgb[..., :3] * 255).round().astype(np.uint8)


def images() -> dict[str, np.ndarray]:
    found = {f"street_{seed:02d}": _street_scene(seed=seed) for seed in STREET_SEEDS}
    for filename, key, cmap, azimuth in RELIEFS:
        found[f"{Path(filename).stem}_{cmap}_{azimuth}"] = relief(filename, key, cmap, azimuth)
    with Image.open(_sample_data() / "Minduka_Present_Blue_Pack.png") as photo:
        found["minduka_photo"] = np.asarray(photo.convert("RGB"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    made = images()
    for name, rgb in made.items():
        Image.fromarray(rgb).save(args.folder / f"{name}.png")
    print(f"{len(made)} images in {args.folder}")


if __name__ == "__main__":
    main()
