"""mmseg's whole-image test procedure, adapted to an artifact of one fixed input size.

mmseg (``mode='whole'``) resizes the image, normalises it, runs the network and resizes the
logits bilinearly back to the label's size before the argmax. An artifact takes one size, so:
  1. the RGB image is stretched to the export size (bilinear, half-pixel centres, no
     antialiasing: what mmcv's ``imresize`` does with cv2's INTER_LINEAR; cv2's fixed-point
     arithmetic can differ by one grey level), rounded to uint8 as cv2 returns it;
  2. normalised with the export's own normalisation (manifest ``input.normalization``);
  3. run on the artifact's host runtime, in its input dtype and layout;
  4. its logits resized bilinearly (align_corners=False, as every head of these families) to
     the label's size, then argmax. An export of ``--output labels`` returns labels at the
     export size already: those are resized nearest-neighbour instead, and so are PyTorch
     FP32's, computed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..export import formats as fmts
from ..export.layouts import from_layout, to_layout
from ..export.records import Artifact
from ..export.samples import load_rgb, stretch  # noqa: F401  (calibration prepares images alike)


def normalize(rgb: np.ndarray, normalization: dict) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32, ``(x - mean) / std`` per channel, in the colour
    order the export was made for."""
    if normalization.get("color", "RGB").upper() == "BGR":
        rgb = rgb[..., ::-1]
    mean = np.asarray(normalization["mean"], np.float32)
    std = np.asarray(normalization["std"], np.float32)
    return np.ascontiguousarray(((rgb.astype(np.float32) - mean) / std).transpose(2, 0, 1)[None])


def prepare(rgb: np.ndarray, size: tuple[int, int], normalization: dict) -> np.ndarray:
    """Steps 1 and 2: the network input for one image."""
    return normalize(stretch(rgb, size), normalization)


def to_labels(output: np.ndarray, kind: str, size: tuple[int, int]) -> np.ndarray:
    """Step 4 for one image: (1, C, h, w) logits or (1, h, w) labels -> (H, W) int64."""
    if kind == "labels":
        return nearest(output[0], size).astype(np.int64)
    logits = torch.from_numpy(np.ascontiguousarray(output, dtype=np.float32))
    up = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return up.argmax(dim=1)[0].numpy()


def nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize with half-pixel centres (a label cannot be interpolated)."""
    h, w = labels.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]


@dataclass
class ArtifactModel:
    """An artifact on its format's host runtime (export/formats.py), fed in its own dtype and
    layout as the parity gate feeds it (export/artifacts.py)."""

    artifact: Artifact
    path: Path

    @property
    def kind(self) -> str:
        return self.artifact.outputs[0].kind or "logits"

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """(N, 3, H, W) float32 -> per image its output in PyTorch's order, (1, ...)."""
        tensor_in, tensor_out = self.artifact.inputs[0], self.artifact.outputs[0]
        runtime = fmts.get(self.artifact.format).host_runtime
        batches = [[to_layout(batch[i:i + 1].astype(tensor_in.dtype), tensor_in.layout)]
                   for i in range(len(batch))]
        results, _ = runtime(self.path, batches, [tensor_in.layout])
        return [from_layout(r[0], tensor_out.layout) for r in results]


@dataclass
class TorchModel:
    """The PyTorch FP32 model (eval mode), with the export's output mode: for an export of
    labels it returns the labels at the export size (export/units.py), as its artifacts do,
    so that the comparison with FP32 measures the artifacts, not the post-processing."""

    module: torch.nn.Module
    kind: str = "logits"                   # the manifest's output mode: logits or labels

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        from ..export.units import to_labels

        with torch.no_grad():
            out = self.module(torch.from_numpy(batch))
            if self.kind == "labels":
                out = to_labels(out, tuple(batch.shape[-2:]))
        return [out[i:i + 1].numpy() for i in range(len(batch))]
