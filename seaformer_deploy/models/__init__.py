"""The reference model zoo: SeaFormer, SeaFormer++ (and its KD student), TopFormer.

``create(name, num_classes=None, checkpoint=None)`` is the one entry point: it builds the model,
loads an official checkpoint strictly if given, and returns it in eval mode.

Each family file registers its models (``registry.register_model``) and its deploy rewrites
(``deploy.register_rewrite``); adding a family is its own file and one import line below.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .base import InputContract, InputSizeError, SegmentationModel, ZooModel
from .checkpoint import Checkpoint, diff_keys, format_diff, read_checkpoint
from .components import COMPONENT_NAMES, Component
from .deploy import register_rewrite
from .registry import (MODELS, ModelSpec, PaperFigures, build, build_skeleton, check_num_classes,
                       get_spec, model_names, register_model, resolve_name)

# The families, in the order ``models`` lists them; importing one registers it.
from . import seaformer  # noqa: F401
from . import seaformer_pp  # noqa: F401
from . import topformer  # noqa: F401

__all__ = ["COMPONENT_NAMES", "Checkpoint", "Component", "InputContract", "InputSizeError",
           "MODELS", "ModelSpec", "PaperFigures", "SegmentationModel", "ZooModel", "create",
           "get_spec", "identify_checkpoint", "model_names", "register_model", "register_rewrite",
           "resolve_name"]


def create(name: str, num_classes: int | None = None, checkpoint: str | Path | None = None,
           trust_checkpoint: bool = False) -> ZooModel:
    """Build ``name`` and, if ``checkpoint`` is given, load it strictly.

    ``num_classes`` defaults to the checkpoint's (19 for Cityscapes, 150 for ADE20K, ...), else to
    the model's default. The loaded checkpoint is kept as ``model.checkpoint`` (path, sha256, meta).
    """
    spec = get_spec(name)
    check_num_classes(num_classes)          # before a checkpoint is read: a typo fails fast
    ckpt = read_checkpoint(checkpoint, trust_checkpoint) if checkpoint is not None else None
    found = _checkpoint_classes(spec, ckpt)
    if num_classes is not None and found is not None and num_classes != found:
        raise UserError(f"checkpoint {ckpt.path} was trained for {found} classes "
                        f"({spec.head_key}), but {num_classes} were asked for. Drop "
                        f"--num-classes to use the checkpoint's.")
    model = build(spec.name, num_classes or found or spec.default_classes)
    model.checkpoint = ckpt
    if ckpt is not None:
        load_strict(model, ckpt)
    return model


def _checkpoint_classes(spec: ModelSpec, ckpt: Checkpoint | None) -> int | None:
    if ckpt is None or spec.head_key not in ckpt.state_dict:
        return None
    return int(ckpt.state_dict[spec.head_key].shape[0])


def load_strict(model: ZooModel, ckpt: Checkpoint) -> None:
    """Copy the checkpoint into ``model``; any missing, extra or reshaped key is an error."""
    diff = diff_keys(model.state_dict(), ckpt.state_dict)
    if not diff.ok:
        matches = [n for n in identify_checkpoint(ckpt) if n != model.name]
        hint = (f"It is a checkpoint of {', '.join(matches)}: use {_cli_option(matches[0])}."
                if matches else "No registered model matches it either; is it a checkpoint of "
                                "SeaFormer or TopFormer (mmseg or timm format)?")
        raise UserError(f"checkpoint {ckpt.path} does not fit {model.name}:\n"
                        f"{format_diff(diff)}\n{hint}")
    model.load_state_dict(ckpt.state_dict, strict=True)


def _cli_option(name: str) -> str:
    spec = get_spec(name)
    if spec.name == f"seaformer-{spec.variant.lower()}":
        return f"--variant {spec.variant} (or --model {name})"
    return f"--model {name}"


def identify_checkpoint(ckpt: Checkpoint) -> list[str]:
    """Registered models whose keys and shapes equal the checkpoint's (any number of classes)."""
    names = []
    for spec in MODELS.values():
        classes = _checkpoint_classes(spec, ckpt)
        if classes is None:
            continue
        skeleton = build_skeleton(spec.name, classes)
        if diff_keys(skeleton.state_dict(), ckpt.state_dict).ok:
            names.append(spec.name)
    return names
