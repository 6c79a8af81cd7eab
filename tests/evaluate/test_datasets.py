"""Layouts, pairing and label checks: a wrong folder is an error that says what was expected."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seaformer_deploy.errors import OptionError, UserError
from seaformer_deploy.evaluate import datasets
from seaformer_deploy.evaluate.datasets import DatasetError, find, read_label


def test_ade20k_layout_pairs_by_stem_and_reduces_the_zero_label(ade):
    data = find(ade, None, None)
    assert data.layout == "ade20k" and data.reduce_zero_label and data.labelled
    assert [p.name for p in data.pairs] == [f"ADE_val_{i:08d}.jpg" for i in range(3)]
    pair = data.pairs[0]
    assert pair.label.name == pair.image.stem + ".png"
    raw = np.asarray(Image.open(pair.label)).astype(np.int64)
    got = read_label(pair, raw.shape, True, 150)
    want = np.where((raw == 0) | (raw == 255), 255, raw - 1)       # mmseg's reduce_zero_label
    assert np.array_equal(got, want) and got.max() == 255 and (got < 150).any()


def test_cityscapes_layout_takes_the_train_ids(cityscapes):
    data = find(cityscapes, None, None, limit=2)
    assert data.layout == "cityscapes" and not data.reduce_zero_label
    assert data.total == 3 and len(data.pairs) == 2
    for pair in data.pairs:
        assert pair.label.name == pair.image.name.replace("_leftImg8bit.png",
                                                          "_gtFine_labelTrainIds.png")
        assert pair.label.parent.name == pair.image.parent.name          # the same city


def test_plain_pairs_and_images_alone(pairs):
    images, labels = pairs
    data = find(None, images, labels)
    assert data.layout == "pairs" and [p.label.name for p in data.pairs] == [
        "frame0.png", "frame1.png", "frame2.png"]
    alone = find(None, images, None)
    assert alone.layout == "images" and not alone.labelled
    assert all(p.label is None for p in alone.pairs)


def test_a_folder_in_no_layout_says_which_layouts_there_are(tmp_path):
    (tmp_path / "validation").mkdir()
    with pytest.raises(DatasetError) as caught:
        find(tmp_path, None, None)
    message = str(caught.value)
    assert caught.value.field == "data"
    assert "images/validation/*.jpg" in message and "leftImg8bit/val/<city>" in message
    assert "images DIR labels DIR" in message                  # what to do instead


def test_an_image_without_its_label_is_named(ade):
    (ade / "annotations" / "validation" / "ADE_val_00000001.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of 3 images .* have no label: "
                                           r"ADE_val_00000001\.jpg\. Expected each at "
                                           r"annotations/validation/<name>\.png"):
        find(ade, None, None)


def test_a_label_of_another_size_is_refused(pairs):
    images, labels = pairs
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(labels / "frame1.png")
    pair = find(None, images, labels).pairs[1]
    with pytest.raises(DatasetError, match=r"frame1\.png is 12x10 \(WxH\) but its image .* "
                                           r"is 80x48"):
        read_label(pair, (48, 80), False, 150)


def test_labels_outside_the_classes_are_refused_with_the_values(pairs):
    images, labels = pairs
    label = np.zeros((64, 64), np.uint8)
    label[0, :3] = (19, 200, 255)
    Image.fromarray(label).save(labels / "frame0.png")
    pair = find(None, images, labels).pairs[0]
    with pytest.raises(DatasetError, match=r"holds label values 19, 200, outside the model's "
                                           r"19 classes \(0\.\.18, and 255 for ignore\)"):
        read_label(pair, (64, 64), False, 19)
    assert read_label(pair, (64, 64), False, 201)[0, 1] == 200      # fine with enough classes


def test_a_colour_label_is_refused(pairs):
    images, labels = pairs
    Image.new("RGB", (64, 64)).save(labels / "frame0.png")
    with pytest.raises(DatasetError, match="is a RGB image; a label map has one channel"):
        read_label(find(None, images, labels).pairs[0], (64, 64), False, 150)


@pytest.mark.parametrize("kwargs, field, says", [
    ({}, "data", "no dataset: pass data DIR"),
    ({"labels": "L"}, "labels", "labels needs images DIR"),
    ({"data": "D", "images": "I"}, "data", "data and images both name the dataset"),
    ({"images": "nowhere"}, "images", "images nowhere: no such folder"),
    ({"data": "nowhere"}, "data", "data nowhere: no such folder"),
    ({"images": ".", "limit": 0}, "limit", "limit 0: must be at least 1"),
])
def test_option_mistakes_name_the_option(tmp_path, monkeypatch, kwargs, field, says):
    monkeypatch.chdir(tmp_path)
    args = {k: (v if k == "limit" else tmp_path / v) for k, v in kwargs.items()}
    with pytest.raises(UserError) as caught:
        find(args.get("data"), args.get("images"), args.get("labels"),
             limit=args.get("limit"))
    assert caught.value.field == field and says in str(caught.value).replace(
        str(tmp_path) + "/", ""), str(caught.value)


def test_two_images_with_one_stem_are_refused(pairs):
    images, labels = pairs
    Image.new("RGB", (8, 8)).save(images / "frame0.png")            # beside frame0.jpg
    with pytest.raises(DatasetError, match="have the same stem"):
        find(None, images, labels)


def test_reduce_zero_label_needs_labels(pairs):
    with pytest.raises(OptionError) as caught:
        find(None, pairs[0], None, reduce_zero_label=True)
    assert caught.value.field == "reduce_zero_label"
    assert datasets.IGNORE == 255
