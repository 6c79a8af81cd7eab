"""Segmentation metrics from a confusion matrix, as mmseg's IoUMetric computes them.

The matrix counts pixels by (true class, predicted class) over the pixels whose true label is
not the ignore index. Per class: IoU = TP / (TP + FP + FN) = diag / (row sum + column sum -
diag), accuracy = diag / row sum. A class absent from both the truth and the predictions has
IoU 0/0 = NaN and is left out of the mean (``nanmean``). Pixel accuracy (mmseg's aAcc) is the
diagonal over every counted pixel. Percentages throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .datasets import IGNORE


def confusion(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; rows are the truth, columns the prediction."""
    keep = truth != IGNORE
    index = truth[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class Scores:
    miou: float                      # %, mean over the classes whose IoU is defined
    mean_accuracy: float             # %, mmseg's mAcc: mean over the classes present
    pixel_accuracy: float            # %, mmseg's aAcc
    iou: list[float | None]          # % per class; None where undefined (NaN in mmseg)
    accuracy: list[float | None]     # % per class; None for a class with no true pixel
    pixels: int                      # pixels counted (not ignored)

    def to_dict(self) -> dict:
        return {"miou": self.miou, "mean_accuracy": self.mean_accuracy,
                "pixel_accuracy": self.pixel_accuracy, "pixels": self.pixels,
                "iou": self.iou, "accuracy": self.accuracy}


def scores(matrix: np.ndarray) -> Scores:
    """The metrics of one confusion matrix (NaN means where nothing was counted)."""
    tp = np.diag(matrix).astype(np.float64)
    truth, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (truth + predicted - tp)
        acc = tp / truth
        total = matrix.sum()
        pixel = float(tp.sum() / total) if total else float("nan")
    return Scores(_mean(iou), _mean(acc), 100.0 * pixel, _listed(iou), _listed(acc),
                  int(total))


def _mean(values: np.ndarray) -> float:
    """mmseg's ``np.nanmean`` (the same summation, so the same last bit); NaN if none."""
    if np.isnan(values).all():
        return float("nan")
    return 100.0 * float(np.nanmean(values))


def _listed(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else 100.0 * float(v) for v in values]
