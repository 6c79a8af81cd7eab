"""The model zoo's registry: names, what builds each one, and the published figures to check it
against.

Each family file registers its own models (``register_model``), as timm's ``@register_model``
and ``default_cfgs`` do; this module imports no family. ``models/__init__.py`` imports every
family once, which fills the registry in that order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import UserError, option
from .base import ZooModel


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
    family: str             # "seaformer", "seaformer++", "seaformer++-kd", "topformer", ...
    variant: str            # "T", "S", "B", "L"
    task: str               # "segmentation" or "classification"
    build: Callable[[int], ZooModel]
    default_classes: int
    official_params: int | None = None   # parameter count of the official model, if one exists
    paper: PaperFigures | None = None
    # Family-specific adjustment of freshly seeded weights (under no_grad), applied by
    # export/weights.py before the BatchNorm calibration; None where seeding alone is realistic.
    synthetic_setup: Callable[[nn.Module], None] | None = None

    @property
    def head_key(self) -> str:
        """The state-dict key whose first dimension is the number of classes."""
        return "decode_head.conv_seg.weight" if self.task == "segmentation" else "linear.weight"


MODELS: dict[str, ModelSpec] = {}

# ``--variant T`` is shorthand for this family's segmentation model of variant T.
VARIANT_FAMILY = "seaformer"


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the zoo under its (lower-case) name; a name is registered only once."""
    if spec.name != spec.name.strip().lower():
        raise ValueError(f"model names are lower-case without spaces, got {spec.name!r}")
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} is already registered (by the "
                         f"{MODELS[spec.name].family} family)")
    MODELS[spec.name] = spec
    return spec


def model_names(task: str | None = None) -> list[str]:
    return [n for n, s in MODELS.items() if task is None or s.task == task]


def get_spec(name: str) -> ModelSpec:
    key = name.strip().lower()
    if key not in MODELS:
        raise UserError(f"unknown model {name!r}. Valid names: {', '.join(MODELS)}.")
    return MODELS[key]


def variants() -> list[str]:
    """The variants ``--variant`` takes: those of the shorthand family's segmentation models."""
    return [s.variant for s in MODELS.values()
            if s.family == VARIANT_FAMILY and s.task == "segmentation"]


def resolve_name(variant: str | None = None, model: str | None = None) -> str:
    """CLI shorthand: ``--variant T`` means ``seaformer-t``; ``--model`` takes any registry name."""
    if variant and model:
        raise UserError(f"give either {option('variant')} or {option('model')}, not both")
    if model:
        return get_spec(model).name
    variant = (variant or "T").strip().upper()
    if variant not in variants():
        raise UserError(f"unknown variant {variant!r}: {option('variant')} takes one of "
                        f"{', '.join(variants())} (SeaFormer segmentation); use "
                        f"{option('model')} for "
                        f"other models: {', '.join(MODELS)}.")
    return f"{VARIANT_FAMILY}-{variant.lower()}"


# ImageNet-21k has 21,841 classes; far beyond that is a typo, and would allocate gigabytes.
MAX_CLASSES = 100_000


def check_num_classes(num_classes: int | None) -> None:
    """``None`` means the default; anything else must be a usable class count."""
    if num_classes is not None and not 1 <= num_classes <= MAX_CLASSES:
        raise UserError(f"{option('num_classes')} takes a count from 1 to {MAX_CLASSES:,}, got "
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
