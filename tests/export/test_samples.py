"""The procedural street scene: the sample image stays the same, and its labels are its regions."""

from __future__ import annotations

import hashlib

import numpy as np

from seaformer_deploy.export.samples import STREET_CLASSES, _street_scene, street_scene


def test_the_sample_street_scene_is_unchanged():
    # every reference tensor, baseline and cached build was made from these bytes
    digest = hashlib.sha256(_street_scene().tobytes()).hexdigest()
    assert digest == "8af2ea72060a6cd6d5a75e1665ddad3bb31f1a546e77f75dbeb4e84f5d25beae"


def test_labels_are_the_regions_drawn():
    rgb, labels = street_scene(seed=3)
    assert labels.shape == rgb.shape[:2] and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(len(STREET_CLASSES)))
    mean = {name: rgb[labels == k].mean(0) for k, name in enumerate(STREET_CLASSES)}
    assert mean["sky"][2] > mean["sky"][0]                        # blue
    assert mean["window"].sum() < 0.6 * mean["building"].sum()    # 0.35 of their facade
    assert mean["lane marking"].sum() > 1.8 * mean["road"].sum()  # 0.9 on a 0.32-0.42 road
    horizon = int(0.58 * labels.shape[0])
    assert np.isin(labels[horizon:], [3, 4, 5]).all() and not np.isin(labels[:horizon], [3, 4, 5]).any()
