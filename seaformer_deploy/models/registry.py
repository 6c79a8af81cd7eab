"""The model zoo's names, what builds each one, and the published figures to check it against."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from ..errors import UserError
from .base import ZooModel
from .seaformer import SEAFORMER_CONFIGS, SeaFormerCls, SeaFormerSeg
from .seaformer_pp import AdaptiveSeaAttention, SeaFormerKDStudent
from .topformer import TOPFORMER_CONFIGS, TopFormerSeg


@dataclass(frozen=True)
class PaperFigures:
    """Published figures (SeaFormer++ paper tables; one Snapdragon 865 core, TNN, 512x512)."""

    params_m: float
    gmacs: float | None = None
    latency_ms: float | None = None
    fp16_latency_ms: float | None = None
    miou: float | None = None
    top1: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str             # "seaformer", "seaformer++", "seaformer++-kd", "topformer"
    variant: str            # "T", "S", "B", "L"
    task: str               # "segmentation" or "classification"
    build: Callable[[int], ZooModel]
    default_classes: int
    official_params: int | None = None   # parameter count of the official model, if one exists
    paper: PaperFigures | None = None

    @property
    def head_key(self) -> str:
        """The state-dict key whose first dimension is the number of classes."""
        return "decode_head.conv_seg.weight" if self.task == "segmentation" else "linear.weight"


_SEG_OFFICIAL = {"T": 1_667_318, "S": 3_990_118, "B": 8_605_654, "L": 13_951_510}
_CLS_OFFICIAL = {"T": 1_781_096, "S": 4_105_656, "B": 8_742_664, "L": 14_046_504}
_TOP_OFFICIAL = {"T": 1_389_654, "S": 3_034_662, "B": 5_062_646}

_SEA_PAPER = {
    "T": PaperFigures(1.7, 0.6, 40, 22, 35.8), "S": PaperFigures(4.0, 1.1, 67, 36, 39.4),
    "B": PaperFigures(8.6, 1.8, 106, 56, 41.0), "L": PaperFigures(14.0, 6.5, 367, 186, 43.7)}
_SEA_PP_PAPER = {
    "T": PaperFigures(1.8, 0.6, 41, 23, 36.8), "S": PaperFigures(4.1, 1.1, 68, 37, 39.7),
    "B": PaperFigures(8.7, 1.8, 107, 56, 41.4), "L": PaperFigures(14.1, 6.5, 369, 187, 43.8)}
_SEA_PP_CLS_PAPER = {
    "T": PaperFigures(1.9, latency_ms=7, top1=69.8),
    "S": PaperFigures(4.2, latency_ms=12, top1=74.5),
    "B": PaperFigures(8.8, latency_ms=20, top1=77.0),
    "L": PaperFigures(14.1, latency_ms=61, top1=80.6)}
_KD_PAPER = {"T": PaperFigures(2.3, 0.3, 22)}
_TOP_PAPER = {
    "T": PaperFigures(1.4, 0.6, 43, 23, 34.6), "S": PaperFigures(3.1, 1.2, 74, 41, 37.0),
    "B": PaperFigures(5.1, 1.8, 110, 60, 39.2)}


def _seg(cls: type, cfg: object, num_classes: int, **kwargs: object) -> ZooModel:
    return cls(cfg, num_classes=num_classes, **kwargs)


def _build_specs() -> dict[str, ModelSpec]:
    specs: list[ModelSpec] = []
    for v, cfg in SEAFORMER_CONFIGS.items():
        low = v.lower()
        specs += [
            ModelSpec(f"seaformer-{low}", "seaformer", v, "segmentation",
                      partial(_seg, SeaFormerSeg, cfg), 150, _SEG_OFFICIAL[v], _SEA_PAPER[v]),
            ModelSpec(f"seaformer-{low}++", "seaformer++", v, "segmentation",
                      partial(_seg, SeaFormerSeg, cfg, attention=AdaptiveSeaAttention), 150,
                      None, _SEA_PP_PAPER[v]),
            ModelSpec(f"seaformer-{low}++-kd", "seaformer++-kd", v, "segmentation",
                      partial(_seg, SeaFormerKDStudent, cfg), 150, None, _KD_PAPER.get(v)),
            ModelSpec(f"seaformer-{low}-cls", "seaformer", v, "classification",
                      partial(_seg, SeaFormerCls, cfg), 1000, _CLS_OFFICIAL[v]),
            ModelSpec(f"seaformer-{low}++-cls", "seaformer++", v, "classification",
                      partial(_seg, SeaFormerCls, cfg, attention=AdaptiveSeaAttention), 1000,
                      None, _SEA_PP_CLS_PAPER[v]),
        ]
    for v, cfg in TOPFORMER_CONFIGS.items():
        specs.append(ModelSpec(f"topformer-{v.lower()}", "topformer", v, "segmentation",
                               partial(_seg, TopFormerSeg, cfg), 150, _TOP_OFFICIAL[v],
                               _TOP_PAPER[v]))
    return {s.name: s for s in specs}


MODELS: dict[str, ModelSpec] = _build_specs()


def model_names(task: str | None = None) -> list[str]:
    return [n for n, s in MODELS.items() if task is None or s.task == task]


def get_spec(name: str) -> ModelSpec:
    key = name.strip().lower()
    if key not in MODELS:
        raise UserError(f"unknown model {name!r}. Valid names: {', '.join(MODELS)}.")
    return MODELS[key]


def resolve_name(variant: str | None = None, model: str | None = None) -> str:
    """CLI shorthand: ``--variant T`` means ``seaformer-t``; ``--model`` takes any registry name."""
    if variant and model:
        raise UserError("give either --variant or --model, not both")
    if model:
        return get_spec(model).name
    variant = (variant or "T").strip().upper()
    if variant not in SEAFORMER_CONFIGS:
        raise UserError(f"unknown variant {variant!r}: --variant takes one of "
                        f"{', '.join(SEAFORMER_CONFIGS)} (SeaFormer segmentation); use --model for "
                        f"other models: {', '.join(MODELS)}.")
    return f"seaformer-{variant.lower()}"


# ImageNet-21k has 21,841 classes; far beyond that is a typo, and would allocate gigabytes.
MAX_CLASSES = 100_000


def check_num_classes(num_classes: int | None) -> None:
    """``None`` means the default; anything else must be a usable class count."""
    if num_classes is not None and not 1 <= num_classes <= MAX_CLASSES:
        raise UserError(f"--num-classes takes a count from 1 to {MAX_CLASSES:,}, got "
                        f"{num_classes}. Drop it to use the checkpoint's (or the model's "
                        f"default: 150 ADE20K classes for segmenters, 1000 for classifiers).")


def build(name: str, num_classes: int | None = None) -> ZooModel:
    """A freshly initialised model (no weights loaded), in eval mode."""
    check_num_classes(num_classes)
    spec = get_spec(name)
    model = spec.build(num_classes or spec.default_classes)
    model.name = spec.name
    return model.eval()


def build_skeleton(name: str, num_classes: int | None = None) -> nn.Module:
    """The same model on the meta device: shapes only, no memory, built in milliseconds."""
    import torch

    with torch.device("meta"):
        return build(name, num_classes)
