"""The metrics against a plain per-class reference, written as mmseg's IoUMetric computes them
(conftest.mmseg_metrics)."""

from __future__ import annotations

import math

import numpy as np

from seaformer_deploy.evaluate.metrics import confusion, scores


def test_scores_equal_the_reference_exactly(reference_metrics):
    rng = np.random.default_rng(7)
    classes = 12
    truths = [rng.integers(0, classes - 2, (20, 30)) for _ in range(3)]   # 10, 11 never true
    for t in truths:
        t[rng.random(t.shape) < 0.1] = 255
    preds = [np.where(rng.random(t.shape) < 0.6, np.where(t == 255, 0, t),
                      rng.integers(0, classes - 1, t.shape)) for t in truths]  # 11 never either
    matrix = sum(confusion(t, p, classes) for t, p in zip(truths, preds))
    got, want = scores(matrix).to_dict(), reference_metrics(truths, preds, classes)
    assert got == want                                    # every number, to the last bit
    got = scores(matrix)
    assert got.iou[11] is None and got.iou[10] == 0.0     # predicted, never true: IoU 0
    assert got.accuracy[10] is None
    assert got.pixels == sum(int((t != 255).sum()) for t in truths)


def test_ignored_pixels_do_not_count_and_perfect_is_100():
    truth = np.array([[0, 1], [255, 2]])
    pred = np.array([[0, 1], [1, 2]])
    matrix = confusion(truth, pred, 4)
    assert matrix.sum() == 3 and np.array_equal(np.diag(matrix), [1, 1, 1, 0])
    result = scores(matrix)
    assert result.miou == 100.0 and result.pixel_accuracy == 100.0
    assert result.iou == [100.0, 100.0, 100.0, None]


def test_nothing_counted_is_nan_not_an_error():
    result = scores(confusion(np.full((2, 2), 255), np.zeros((2, 2), int), 3))
    assert math.isnan(result.miou) and math.isnan(result.pixel_accuracy)
    assert result.iou == [None, None, None] and result.pixels == 0
