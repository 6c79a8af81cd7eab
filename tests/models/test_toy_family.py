"""A family registers itself: a test-only family (``tests/toy_family.py``) brought in by one
import line is listed, builds, composes and exports through the unchanged pipeline."""

from __future__ import annotations

import contextlib
import copy
import sys

import pytest
import torch

from helpers import randomize
from seaformer_deploy.export import rewrites
from seaformer_deploy.export.fold import fold_batchnorm
from seaformer_deploy.export.parity import THRESHOLDS
from seaformer_deploy.export.pipeline import ExportOptions, export
from seaformer_deploy.models import MODELS, create, model_names, registry
from seaformer_deploy.models.deploy import REWRITES, register_rewrite
from seaformer_deploy.models.registry import ModelSpec, build, register_model

SIZE = (64, 64)


@contextlib.contextmanager
def toy_registered():
    """The family registered while the block runs; the registries are restored after, so that
    no other test sees it."""
    models, deploy_rewrites = dict(MODELS), dict(REWRITES)
    sys.modules.pop("toy_family", None)              # a fresh import registers it again
    try:
        import toy_family                            # the one line that adds the family
        yield toy_family
    finally:
        for table, saved in ((MODELS, models), (REWRITES, deploy_rewrites)):
            table.clear()
            table.update(saved)
        sys.modules.pop("toy_family", None)


@pytest.fixture
def toy():
    with toy_registered() as family:
        yield family


def test_it_is_listed_and_builds(toy):
    assert toy.NAME in model_names("segmentation") and toy.NAME in registry.MODELS
    assert toy.REWRITE in rewrites.REPLACEMENTS
    model = create(toy.NAME, num_classes=5)
    assert model.name == toy.NAME and model.num_classes == 5
    with torch.no_grad():
        assert build(toy.NAME)(torch.zeros(1, 3, *SIZE)).shape == (1, 150, 8, 8)


def test_its_components_compose_bit_identically(toy):
    model = randomize(build(toy.NAME), seed=4)
    image = torch.rand(1, 3, 96, 64, generator=torch.Generator().manual_seed(0)) * 4 - 2
    with torch.no_grad():
        full, chained = model(image), model.forward_components(image)
    assert full.abs().max() > 0 and torch.equal(full, chained)


def test_its_deploy_rewrite_is_applied_and_exact(toy):
    model = fold_batchnorm(randomize(build(toy.NAME), seed=5))
    image = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    rewritten = copy.deepcopy(model)
    applied = {a.name: a.modules for a in rewrites.deploy_form(rewritten, image[:1])}
    assert applied == {toy.REWRITE: 1, "constant_hsigmoid": 1}
    assert isinstance(rewritten.squeeze, toy.FixedGlobalPool)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(image), model(image), rtol=1e-5, atol=1e-5)


def test_it_exports_with_parity(toy, tmp_path):
    toy.SETUP_CALLS.clear()
    result = export(ExportOptions(model=toy.NAME, input_size=SIZE, out_root=tmp_path,
                                  formats=("onnx", "pte"), precisions=("fp32",)))
    manifest = result.manifest.to_dict()
    assert toy.SETUP_CALLS == [toy.NAME]             # the family's synthetic-weight hook ran
    assert manifest["model"]["family"] == "toy" and manifest["parity_passed"]
    assert [r["name"] for r in manifest["deploy_form"]["rewrites"]] == [
        toy.REWRITE, "constant_hsigmoid"]
    assert {(a["unit"], a["format"]) for a in manifest["artifacts"]} == {
        (u, f) for u in ("model", "stem", "context", "spatial", "head") for f in ("onnx", "pte")}
    for art in manifest["artifacts"]:
        assert art["parity"]["worst"]["psnr_db"] >= THRESHOLDS["fp32"]["psnr_db"], art["file"]


def test_a_name_registers_once(toy):
    with pytest.raises(ValueError, match="already registered"):
        register_model(ModelSpec(toy.NAME, "toy", "T", "segmentation", toy.ToySeg, 150))
    with pytest.raises(ValueError, match="already registered"):
        register_rewrite(toy.REWRITE, torch.nn.Identity, lambda name, m, args: m)
    with pytest.raises(ValueError, match="already has the deploy rewrite"):
        register_rewrite("another_name", toy.GlobalMean, lambda name, m, args: m)


def test_registration_does_not_leak():
    before = (list(MODELS), list(REWRITES), list(rewrites.REPLACEMENTS))
    with toy_registered() as family:
        assert family.NAME in MODELS and family.REWRITE in rewrites.REPLACEMENTS
    assert (list(MODELS), list(REWRITES), list(rewrites.REPLACEMENTS)) == before
    assert not any(s.family == "toy" for s in MODELS.values())
