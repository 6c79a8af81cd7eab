"""Numerical parity of an artifact's outputs against PyTorch FP32 eager, and the gate on it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .layouts import from_layout
from .precision import Precision
from .records import Artifact, Metrics, Parity

# Gate thresholds per precision (Precision.thresholds), by name.
THRESHOLDS = {p.value: p.thresholds for p in Precision}
PSNR_EXACT = 200.0  # reported when the outputs are bit-identical (the true PSNR is infinite)


def psnr(ref: np.ndarray, out: np.ndarray) -> float:
    """Peak signal-to-noise ratio with the reference's peak-to-peak range as the peak."""
    mse = float(np.mean((ref.astype(np.float64) - out.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_EXACT
    peak = float(ref.max() - ref.min()) or 1.0
    return min(PSNR_EXACT, 20 * math.log10(peak) - 10 * math.log10(mse))


def compare(ref: np.ndarray, out: np.ndarray, kind: str) -> Metrics:
    """Compare one output. ``kind``: "logits" (class axis 1), "labels" (integers), "features"."""
    if ref.shape != out.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference {ref.shape}")
    if kind == "labels":
        return Metrics(None, None, None, None, _agreement(ref, out))
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    if not np.all(np.isfinite(out64)):
        return Metrics(math.inf, math.inf, -math.inf, None, 0.0 if kind == "logits" else None)
    err = np.abs(ref64 - out64)
    denom = np.linalg.norm(ref64) * np.linalg.norm(out64)
    cosine = float(ref64.ravel() @ out64.ravel() / denom) if denom else 1.0
    agreement = _agreement(ref.argmax(axis=1), out.argmax(axis=1)) if kind == "logits" else None
    return Metrics(float(err.max()), float(err.mean()), psnr(ref, out), cosine, agreement)


def _agreement(ref_labels: np.ndarray, out_labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(ref_labels == out_labels))


def worst(metrics: list[Metrics]) -> Metrics:
    """The worst value of each metric over several outputs or samples."""
    def pick(field: str, fn):
        values = [getattr(m, field) for m in metrics if getattr(m, field) is not None]
        return fn(values) if values else None
    return Metrics(pick("max_abs_err", max), pick("mean_abs_err", max), pick("psnr_db", min),
                   pick("cosine", min), pick("label_agreement", min))


def failures(metrics: Metrics, precision: str) -> list[str]:
    """Why ``metrics`` fail the gate for ``precision`` (empty when they pass)."""
    limits = Precision(precision).thresholds
    found = []
    if metrics.psnr_db is not None and not metrics.psnr_db >= limits["psnr_db"]:
        found.append(f"PSNR {metrics.psnr_db:.1f} dB < {limits['psnr_db']:.0f} dB")
    agreement = metrics.label_agreement
    if agreement is not None and not agreement >= limits["label_agreement"]:
        found.append(f"label agreement {agreement:.3f} % < {limits['label_agreement']} %")
    return found


def parity(metrics: dict[str, Metrics], precision: str, count: int, reference: str) -> Parity:
    """The gate's record over ``count`` samples: per-output and worst metrics, verdict."""
    summary = worst(list(metrics.values()))
    fails = failures(summary, precision)
    return Parity(reference=reference, samples=count, outputs=metrics, worst=summary,
                  thresholds=Precision(precision).thresholds, passed=not fails, failures=fails)


def device_parity(art: Artifact, outputs: list[np.ndarray], folder: Path) -> Parity:
    """Outputs of one on-device run against the export's FP32 references (first sample).

    Args:
        art: the artifact's manifest record (its ``outputs`` name the reference files).
        outputs: what the device returned, in the artifact's output order and layouts.
        folder: the export folder holding the references (each in its output's layout).

    Returns:
        The parity record of a report: per-output and worst metrics, thresholds, verdict."""
    metrics = {}
    for tensor, got in zip(art.outputs, outputs, strict=True):
        dtype = "int64" if tensor.kind == "labels" else "float32"
        ref = np.fromfile(Path(folder) / tensor.file, dtype=dtype).reshape(tensor.shape)
        # Compared in PyTorch's order: "logits" take the argmax over axis 1, the classes.
        metrics[tensor.name] = compare(from_layout(ref, tensor.layout),
                                       from_layout(got.astype(ref.dtype), tensor.layout),
                                       tensor.kind)
    return parity(metrics, art.precision, 1, "PyTorch FP32 eager on the first sample (from the "
                                              "export)")
