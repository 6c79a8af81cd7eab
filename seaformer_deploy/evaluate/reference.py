"""The PyTorch FP32 model an export came from, rebuilt as its manifest says, and checked.

Weights: the checkpoint the export recorded (``--checkpoint``, or the recorded path while it
still holds the file: the sha256 must match), or the export's synthetic weights rebuilt from
their seed at the export size (export/weights.py). The manifest records no hash of synthetic
weights, so the check is on what they compute: the rebuilt model must reproduce the export's
own FP32 reference output for its first sample image (``tensors/``), else the weights differ.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from ..errors import OptionError, option
from ..export import manifest as mf
from ..export.records import Manifest, TensorFile
from ..models import SegmentationModel, create
from ..models.checkpoint import sha256_file
from ..models.components import IMAGE
from ..export.units import LABELS, to_labels
from ..export.weights import synthetic_model

# FP32 eager on the same machine repeats itself; this only absorbs threading order.
TOLERANCE = 1e-4


def rebuild(manifest: Manifest, folder: Path, checkpoint: Path | None,
            trust_checkpoint: bool) -> tuple[SegmentationModel, dict]:
    """The FP32 model, and the record of how it was rebuilt and checked."""
    weights = manifest.weights
    name, classes = manifest.model.name, manifest.model.num_classes
    if weights.get("source") == "checkpoint":
        path = _checkpoint(weights, checkpoint)
        model = create(name, classes, path, trust_checkpoint)
        record = {"source": "checkpoint", "path": str(path), "sha256": weights["sha256"]}
    else:
        if checkpoint is not None:
            raise OptionError(f"{option('checkpoint')} {checkpoint}: this export was made from "
                              f"synthetic weights (seed {weights.get('seed')}), which are "
                              f"rebuilt from the seed; drop {option('checkpoint')}, or evaluate "
                              f"an export made from that checkpoint.", field="checkpoint")
        model = _synthetic(name, tuple(manifest.input.size), int(weights["seed"]), classes)
        record = {"source": "synthetic", "seed": weights["seed"]}
    record["check"] = _check(model.eval(), manifest, folder)
    return model, record


@functools.lru_cache(maxsize=2)
def _synthetic(name: str, size: tuple[int, int], seed: int, classes: int) -> SegmentationModel:
    """Seeded weights take a calibration pass and a head fit (seconds to minutes): evaluating
    one export on several datasets in one process builds them once. Only ever run, never
    changed, so sharing the module is safe."""
    return synthetic_model(name, size, seed=seed, num_classes=classes)


def _checkpoint(weights: dict, given: Path | None) -> Path:
    """The checkpoint file to load: ``given`` or the recorded path, with the recorded sha256."""
    recorded = Path(weights["path"])
    path = Path(given) if given is not None else recorded
    if given is None and not recorded.is_file():
        raise OptionError(f"this export was made from the checkpoint {recorded} (sha256 "
                          f"{weights['sha256'][:12]}...), which is no longer there: pass it "
                          f"with {option('checkpoint')} PATH.", field="checkpoint")
    if not path.is_file():
        raise OptionError(f"{option('checkpoint')} {path}: no such file.", field="checkpoint")
    found = sha256_file(path)
    if found != weights["sha256"]:
        raise OptionError(f"{option('checkpoint')} {path} has sha256 {found[:12]}..., but the "
                          f"export was made from {weights['sha256'][:12]}... ({recorded}): "
                          f"pass the checkpoint the export was made from, or re-export.",
                          field="checkpoint")
    return path


def _check(model: SegmentationModel, manifest: Manifest, folder: Path) -> str:
    """Run the first sample image; its output must be the export's recorded FP32 reference."""
    image = _tensor(folder, manifest, IMAGE, "float32")
    name = manifest.output.name
    with torch.no_grad():
        logits = model(torch.from_numpy(image))
        out = to_labels(logits, tuple(manifest.input.size)) if name == LABELS else logits
    got = out.numpy()
    want = _tensor(folder, manifest, name, "int64" if name == LABELS else "float32")
    if name == LABELS:
        err, limit = float(np.mean(got != want)), 1e-4          # a fraction of the pixels
    else:
        err, limit = float(np.abs(got - want).max()), TOLERANCE * max(1.0, float(
            np.abs(want).max()))
    if not err <= limit:
        raise OptionError(f"the rebuilt PyTorch FP32 {manifest.model.name} does not reproduce "
                          f"the export's reference output ({name}: error {err:.3g} > "
                          f"{limit:.3g}): its weights are not the ones exported. Pass the "
                          f"checkpoint the export was made from with {option('checkpoint')}, "
                          f"or re-export with this seaformer-deploy.", field="checkpoint")
    return (f"reproduces the export's FP32 reference {name} for its first sample image "
            f"(error {err:.3g} <= {limit:.3g})")


def _tensor(folder: Path, manifest: Manifest, name: str, dtype: str) -> np.ndarray:
    record = _record(manifest, name, dtype)
    if mf.sha256_path(Path(folder) / record.path) != record.sha256:
        raise OptionError(f"{folder / record.path} differs from the sha256 its manifest "
                          f"records: re-export it with `seaformer-deploy export --force`.",
                          field="artifacts")
    data = np.fromfile(Path(folder) / record.path, dtype=np.dtype(dtype).newbyteorder("<"))
    return data.reshape(record.shape).astype(dtype)


def _record(manifest: Manifest, name: str, dtype: str) -> TensorFile:
    for record in manifest.tensors:
        if record.name == name and record.dtype == dtype and record.layout in ("NCHW", "NHW"):
            return record
    raise OptionError(f"the export's manifest lists no {dtype} {name} tensor file: re-export "
                      f"it with `seaformer-deploy export --force`.", field="artifacts")
