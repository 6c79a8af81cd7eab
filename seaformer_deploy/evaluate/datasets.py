"""Labelled dataset folders: the layouts evaluate reads, how images pair with labels, and the
checks that make a wrong folder an error instead of a wrong number.

Layouts (what mmseg's dataset classes read for validation):
  * ``ade20k``: ``images/validation/*.jpg`` with ``annotations/validation/*.png`` of the same
    stem; label 0 ("other") is ignored and the rest shifted down by one (mmseg's
    ``reduce_zero_label``), so 150 classes are 0..149;
  * ``cityscapes``: ``leftImg8bit/val/<city>/*_leftImg8bit.png`` with
    ``gtFine/val/<city>/*_gtFine_labelTrainIds.png`` (19 train ids, 255 ignored);
  * ``pairs``: ``--images DIR`` and ``--labels DIR``, matched by file stem;
  * ``images``: ``--images DIR`` alone, no labels: only the agreement with PyTorch FP32.
Every label map holds class indices (< the model's classes) or 255, the ignore index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import OptionError, UserError, option

IGNORE = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
LABEL_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")      # lossless: a JPEG would blur class ids
ADE_IMAGES, ADE_LABELS = Path("images/validation"), Path("annotations/validation")
CITY_IMAGES, CITY_LABELS = Path("leftImg8bit/val"), Path("gtFine/val")
CITY_IMAGE_END, CITY_LABEL_END = "_leftImg8bit.png", "_gtFine_labelTrainIds.png"
EXPECTED = (f"ADE20K ({ADE_IMAGES}/*.jpg with {ADE_LABELS}/*.png) or Cityscapes "
            f"({CITY_IMAGES}/<city>/*{CITY_IMAGE_END} with "
            f"{CITY_LABELS}/<city>/*{CITY_LABEL_END})")


class DatasetError(UserError):
    """A dataset folder that is not in a known layout, or whose images and labels do not pair."""


@dataclass(frozen=True)
class Pair:
    name: str                  # the image's path relative to the images folder
    image: Path
    label: Path | None         # None: an unlabelled image


@dataclass(frozen=True)
class Dataset:
    layout: str                # ade20k, cityscapes, pairs or images
    images: Path               # the folder the images were found in
    labels: Path | None
    pairs: list[Pair]
    reduce_zero_label: bool
    total: int                 # images found, before --limit

    @property
    def labelled(self) -> bool:
        return self.labels is not None


def find(data: Path | None, images: Path | None, labels: Path | None,
         reduce_zero_label: bool = False, limit: int | None = None) -> Dataset:
    """The dataset the options name, paired and sorted, cut to the first ``limit`` images."""
    if limit is not None and limit < 1:
        raise OptionError(f"{option('limit')} {limit}: must be at least 1 image.")
    if data is not None:
        if images is not None or labels is not None:
            given = option("images") if images is not None else option("labels")
            raise OptionError(f"{option('data')} and {given} both name the dataset: pass "
                              f"{option('data')} DIR for an ADE20K or Cityscapes folder, or "
                              f"{option('images')} DIR {option('labels')} DIR for plain "
                              f"pairs.", field="data")
        found = _layout_folder(Path(data))
    elif images is not None:
        found = _plain(Path(images), None if labels is None else Path(labels), reduce_zero_label)
    elif labels is not None:
        raise OptionError(f"{option('labels')} needs {option('images')} DIR: the images the "
                          f"labels belong to.", field="labels")
    else:
        raise OptionError(f"no dataset: pass {option('data')} DIR ({EXPECTED}), "
                          f"{option('images')} DIR {option('labels')} DIR (pairs matched by "
                          f"file stem), or {option('images')} DIR alone (agreement with "
                          f"PyTorch FP32 only).", field="data")
    layout, image_dir, label_dir, pairs, reduce = found
    if not pairs:
        raise DatasetError(f"{image_dir} holds no image ({', '.join(IMAGE_SUFFIXES)}): point "
                           f"the option at the folder of validation images.")
    return Dataset(layout, image_dir, label_dir, pairs[:limit], reduce, len(pairs))


def _layout_folder(data: Path) -> tuple:
    flag = option("data")
    if not data.is_dir():
        raise OptionError(f"{flag} {data}: no such folder; it takes a dataset folder in "
                          f"{EXPECTED} layout.")
    if (data / ADE_IMAGES).is_dir():
        images = _files(data / ADE_IMAGES, (".jpg",))
        label_dir = data / ADE_LABELS
        labels = {p.relative_to(label_dir).with_suffix("").as_posix(): p
                  for p in _files(label_dir, (".png",))} if label_dir.is_dir() else {}
        pairs = _pairs(data / ADE_IMAGES, images, labels, lambda rel: rel.with_suffix(""),
                       f"{ADE_LABELS}/<name>.png", "ade20k")
        return "ade20k", data / ADE_IMAGES, label_dir, pairs, True
    if (data / CITY_IMAGES).is_dir():
        root, label_dir = data / CITY_IMAGES, data / CITY_LABELS
        images = [p for p in _files(root, (".png",)) if p.name.endswith(CITY_IMAGE_END)]
        labels = {p.relative_to(label_dir).as_posix().removesuffix(CITY_LABEL_END): p
                  for p in _files(label_dir, (".png",)) if p.name.endswith(CITY_LABEL_END)
                  } if label_dir.is_dir() else {}
        pairs = _pairs(root, images, labels,
                       lambda rel: Path(rel.as_posix().removesuffix(CITY_IMAGE_END)),
                       f"{CITY_LABELS}/<city>/<name>{CITY_LABEL_END}", "cityscapes")
        return "cityscapes", root, label_dir, pairs, False
    raise DatasetError(f"{flag} {data} is in no layout evaluate knows: expected {EXPECTED} "
                       f"inside it. For a plain folder of images and one of labels pass "
                       f"{option('images')} DIR {option('labels')} DIR instead.", field="data")


def _plain(images: Path, labels: Path | None, reduce_zero_label: bool) -> tuple:
    for path, field in ((images, "images"), (labels, "labels")):
        if path is not None and not path.is_dir():
            raise OptionError(f"{option(field)} {path}: no such folder; it takes a folder of "
                              f"{field} (searched recursively).", field=field)
    image_files = _files(images, IMAGE_SUFFIXES)
    _unique_stems(images, image_files, "images")
    if labels is None:
        if reduce_zero_label:
            raise OptionError(f"{option('reduce_zero_label')} applies to labels, and "
                              f"{option('labels')} is not given.", field="reduce_zero_label")
        return "images", images, None, [Pair(_rel(images, p), p, None) for p in image_files], False
    label_files = _files(labels, LABEL_SUFFIXES)
    _unique_stems(labels, label_files, "labels")
    by_stem = {p.relative_to(labels).with_suffix("").as_posix(): p for p in label_files}
    pairs = _pairs(images, image_files, by_stem, lambda rel: rel.with_suffix(""),
                   f"{labels}/<name>{{{','.join(LABEL_SUFFIXES)}}}", "pairs")
    return "pairs", images, labels, pairs, reduce_zero_label


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file())


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _unique_stems(root: Path, files: list[Path], what: str) -> None:
    seen: dict[str, Path] = {}
    for path in files:
        stem = path.relative_to(root).with_suffix("").as_posix()
        if stem in seen:
            raise DatasetError(f"{seen[stem]} and {path} have the same stem: {what} are "
                               f"matched by file stem, so each stem must be one file; remove "
                               f"or rename one.", field=what)
        seen[stem] = path


def _pairs(root: Path, images: list[Path], labels: dict[str, Path], key, expected: str,
           layout: str) -> list[Pair]:
    """Each image with its label (``key``: an image's relative path -> the label's key); an
    image without one is an error that lists them, never a silently smaller dataset."""
    pairs, missing = [], []
    for image in images:
        rel = image.relative_to(root)
        label = labels.get(key(rel).as_posix())
        if label is None:
            missing.append(rel.as_posix())
        pairs.append(Pair(rel.as_posix(), image, label))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")
        raise DatasetError(f"{len(missing)} of {len(images)} images in {root} ({layout} "
                           f"layout) have no label: {shown}. Expected each at {expected}; add "
                           f"the missing labels, or remove those images.")
    return pairs


def read_label(pair: Pair, image_size: tuple[int, int], reduce_zero_label: bool,
               num_classes: int) -> np.ndarray:
    """The label map of ``pair`` as (H, W) int64 class indices or ``IGNORE``, checked: one
    channel, the image's size, values below ``num_classes`` or 255."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(pair.label) as label:
            mode, size = label.mode, (label.height, label.width)
            array = np.asarray(label)
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{pair.label} is not an image Pillow can read ({exc}); replace it "
                           f"with the label map of {pair.image}.") from None
    if array.ndim != 2 or mode not in ("L", "P", "I", "I;16"):
        raise DatasetError(f"{pair.label} is a {mode} image; a label map has one channel of "
                           f"class indices (mode L or P: e.g. Cityscapes' *_labelTrainIds.png, "
                           f"not the colour *_color.png). Convert it to class indices.")
    if size != tuple(image_size):
        raise DatasetError(f"{pair.label} is {size[1]}x{size[0]} (WxH) but its image "
                           f"{pair.image} is {image_size[1]}x{image_size[0]}: a label map has "
                           f"its image's size. Check the pairing (or resize the label with "
                           f"nearest-neighbour).")
    labels = array.astype(np.int64)
    if reduce_zero_label:                  # mmseg: 0 -> ignore, the others one down
        labels = np.where(labels == 0, IGNORE, labels - 1)
        labels[labels == IGNORE - 1] = IGNORE
    _check_range(pair, labels, num_classes, reduce_zero_label)
    return labels


def _check_range(pair: Pair, labels: np.ndarray, num_classes: int, reduced: bool) -> None:
    bad = np.unique(labels[(labels >= num_classes) & (labels != IGNORE)])
    if bad.size == 0 and labels.min() >= 0:
        return
    values = ", ".join(str(v) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
    after = " after the zero-label reduction (0 -> 255, others minus 1)" if reduced else ""
    raise DatasetError(f"{pair.label} holds label values {values}{after}, outside the "
                       f"model's {num_classes} classes (0..{num_classes - 1}, and {IGNORE} for "
                       f"ignore). Labels must be class indices of this model (Cityscapes: "
                       f"the *_labelTrainIds.png, not *_labelIds.png); or evaluate an export "
                       f"with that many classes.")
