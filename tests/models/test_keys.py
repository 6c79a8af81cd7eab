"""State-dict keys, shapes and parameter counts against the official checkpoints (the spec)."""

from __future__ import annotations

import pytest

from helpers import SHARED_SPEC_DIR, SPEC_DIR
from seaformer_deploy.models import MODELS
from seaformer_deploy.models.complexity import count_params
from seaformer_deploy.models.registry import build


def _shapes(model) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _assert_same_layout(model, expected: dict) -> None:
    found = _shapes(model)
    missing = sorted(set(expected["keys"]) - set(found))
    extra = sorted(set(found) - set(expected["keys"]))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    wrong = {k: (found[k], s) for k, s in expected["keys"].items() if found[k] != s}
    assert not wrong, f"shape mismatches (ours, official): {dict(list(wrong.items())[:5])}"
    assert count_params(model) == expected["num_parameters"]


@pytest.mark.parametrize("variant", "TSBL")
def test_seaformer_segmentation_matches_official(variant, seg_spec):
    model = build(f"seaformer-{variant.lower()}")
    _assert_same_layout(model, seg_spec[variant])
    assert count_params(model) == MODELS[model.name].official_params


@pytest.mark.parametrize("variant", "TSBL")
def test_seaformer_classification_matches_official(variant, top_cls_spec):
    model = build(f"seaformer-{variant.lower()}-cls")
    _assert_same_layout(model, top_cls_spec["seaformer_cls"][variant])
    assert count_params(model) == MODELS[model.name].official_params


@pytest.mark.parametrize("variant", "TSB")
def test_topformer_matches_official(variant, top_cls_spec):
    model = build(f"topformer-{variant.lower()}")
    _assert_same_layout(model, top_cls_spec["topformer_seg"][variant])
    assert count_params(model) == MODELS[model.name].official_params


def test_classes_change_only_the_classifier(seg_spec):
    keys = seg_spec["T"]["keys"]
    found = _shapes(build("seaformer-t", num_classes=19))
    diff = {k for k in keys if found[k] != keys[k]}
    assert diff == {"decode_head.conv_seg.weight", "decode_head.conv_seg.bias"}
    assert found["decode_head.conv_seg.weight"][0] == 19


@pytest.mark.parametrize("name", sorted(p.name for p in SPEC_DIR.glob("*.json")))
def test_vendored_spec_is_the_shared_contract(name):
    shared = SHARED_SPEC_DIR / name
    if not shared.is_file():
        pytest.skip("../shared/spec is not present on this machine")
    assert shared.read_bytes() == (SPEC_DIR / name).read_bytes()
