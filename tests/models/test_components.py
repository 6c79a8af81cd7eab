"""The four components chain to exactly the full forward pass, for every segmentation model."""

from __future__ import annotations

import pytest
import torch

from helpers import randomize
from seaformer_deploy.models import COMPONENT_NAMES, model_names
from seaformer_deploy.models.components import IMAGE, LOGITS, check_chain, run_chain
from seaformer_deploy.models.registry import build

SEG_MODELS = model_names("segmentation")
# 512x512 is the papers' size; 384x640 is non-square and valid for every family's contract.
SIZES = [(512, 512), (384, 640)]


@pytest.fixture(scope="module", params=SEG_MODELS)
def model(request):
    return randomize(build(request.param), seed=len(request.param))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_components_compose_bit_identically(model, size):
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1)) * 4 - 2
    with torch.no_grad():
        full = model(image)
        chained = model.forward_components(image)
    assert full.shape == (1, model.num_classes, size[0] // 8, size[1] // 8)
    assert full.abs().max() > 0
    assert torch.equal(full, chained)


def test_interface_is_explicit(model):
    components = model.components()
    check_chain(components)
    assert tuple(c.name for c in components) == COMPONENT_NAMES
    assert components[0].input_names == (IMAGE,)
    assert components[-1].output_names == (LOGITS,)
    with torch.no_grad():
        env = run_chain(components, torch.zeros(1, 3, 256, 256))
    for comp in components:
        assert all(name in env for name in comp.output_names)


def test_components_partition_the_parameters(model):
    owned = [id(p) for c in model.components() for p in c.parameters()]
    assert len(owned) == len(set(owned)), "a parameter belongs to two components"
    assert set(owned) == {id(p) for p in model.parameters()}
