"""The test procedure's steps: cv2-like stretch, the export's normalisation, the resizes back."""

from __future__ import annotations

import numpy as np
import torch

from seaformer_deploy.evaluate import predict
from seaformer_deploy.export.samples import MEAN, STD
from seaformer_deploy.export.samples import normalize as sample_normalize

NORM = {"color": "RGB", "mean": list(MEAN), "std": list(STD)}


def bilinear_half_pixel(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.resize INTER_LINEAR's mapping in float64: src = (dst + 0.5) * in / out - 0.5,
    clamped at the borders, no antialiasing."""
    def axis(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo
    y0, y1, fy = axis(image.shape[0], size[0])
    x0, x1, fx = axis(image.shape[1], size[1])
    img = image.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bottom = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


def test_stretch_is_cv2_bilinear_within_a_grey_level():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 91, 3), dtype=np.uint8)
    for size in ((64, 64), (20, 150)):                  # down and up, aspect not kept
        got = predict.stretch(image, size)
        want = bilinear_half_pixel(image, size)
        assert got.dtype == np.uint8 and got.shape == (*size, 3)
        assert np.abs(got.astype(float) - want).max() <= 0.5 + 1e-3   # rounding only
    assert predict.stretch(image, (37, 91)) is image


def test_normalize_is_the_exports_and_follows_the_manifest():
    rgb = np.random.default_rng(1).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    assert np.array_equal(predict.normalize(rgb, NORM), sample_normalize(rgb).numpy())
    bgr = predict.normalize(rgb, {**NORM, "color": "BGR", "mean": [0, 0, 0], "std": [1, 1, 1]})
    assert np.array_equal(bgr[0, 0], rgb[..., 2].astype(np.float32))


def test_logits_go_back_bilinearly_and_labels_by_nearest():
    logits = np.random.default_rng(2).standard_normal((1, 5, 4, 6)).astype(np.float32)
    got = predict.to_labels(logits, "logits", (13, 17))
    want = torch.nn.functional.interpolate(torch.from_numpy(logits), size=(13, 17),
                                           mode="bilinear", align_corners=False).argmax(1)[0]
    assert got.shape == (13, 17) and np.array_equal(got, want.numpy())
    labels = np.arange(12).reshape(1, 3, 4)
    up = predict.to_labels(labels, "labels", (6, 8))
    assert np.array_equal(up, np.repeat(np.repeat(labels[0], 2, 0), 2, 1))


def test_fp32_follows_the_exports_output_mode():
    """An export of labels: FP32's labels are made at the export size, as its artifacts'."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 5, 8, stride=8).eval()
    batch = np.random.default_rng(3).standard_normal((2, 3, 32, 48)).astype(np.float32)
    logits = predict.TorchModel(net)(batch)
    labels = predict.TorchModel(net, "labels")(batch)
    assert [x.shape for x in logits] == [(1, 5, 4, 6)] * 2
    assert [x.shape for x in labels] == [(1, 32, 48)] * 2
    assert np.array_equal(labels[1][0], predict.to_labels(logits[1], "logits", (32, 48)))
