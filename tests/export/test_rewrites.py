"""Deploy-form rewrites: each is exact in PyTorch, and together they leave one XNNPACK
partition with nothing outside it, for every family, within the FP32 parity thresholds."""

from __future__ import annotations

import copy

import pytest
import torch

from seaformer_deploy.export import rewrites
from seaformer_deploy.export.fold import fold_batchnorm
from seaformer_deploy.export.parity import THRESHOLDS, compare
from seaformer_deploy.export.pipeline import ExportOptions, export
from seaformer_deploy.export.samples import sample_batch
from seaformer_deploy.export.weights import synthetic_model

SIZE = (256, 256)
FAMILY_OF = {"positional_embeddings": "seaformer-t", "axial_squeeze_pooling": "seaformer-t",
             "batched_axial_attention": "seaformer-t", "fused_qkv": "seaformer-t",
             "fixed_pyramid_pooling": "topformer-t", "batched_token_attention": "topformer-t",
             "sliced_channel_split": "topformer-t", "constant_hsigmoid": "seaformer-t",
             "constant_expand_gate": "seaformer-t++",
             "adaptive_squeeze_4d": "seaformer-t++",
             "adaptive_squeeze_pooling": "seaformer-t++"}


@pytest.fixture(scope="module")
def folded():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = fold_batchnorm(synthetic_model(name, SIZE))
        return cache[name]
    return get


# The adaptive squeeze's two steps agree on a weights layout, so they go together.
TOGETHER = {"adaptive_squeeze_4d": ("adaptive_squeeze_4d", "adaptive_squeeze_pooling"),
            "adaptive_squeeze_pooling": ("adaptive_squeeze_4d", "adaptive_squeeze_pooling")}


def _only(names: tuple[str, ...]) -> tuple[dict, dict]:
    """The registries, restricted to ``names``."""
    return ({k: v for k, v in rewrites.REPLACEMENTS.items() if k in names},
            {k: v for k, v in rewrites.FUSIONS.items() if k in names})


def test_every_rewrite_is_tested():
    assert set(FAMILY_OF) == set(rewrites.REPLACEMENTS) | set(rewrites.FUSIONS)


@pytest.mark.parametrize("name", sorted(FAMILY_OF))
def test_each_rewrite_is_exact(name, folded, monkeypatch):
    model = folded(FAMILY_OF[name])
    image = sample_batch(*SIZE, 2)
    rewritten = copy.deepcopy(model)
    names = TOGETHER.get(name, (name,))
    replacements, fusions = _only(names)
    monkeypatch.setattr(rewrites, "REPLACEMENTS", replacements)
    monkeypatch.setattr(rewrites, "FUSIONS", fusions)
    applied = rewrites.deploy_form(rewritten, image[:1])
    assert [a.name for a in applied] == list(names) and all(a.modules >= 1 for a in applied)
    with torch.no_grad():
        ref, out = model(image), rewritten(image)
    metrics = compare(ref.numpy(), out.numpy(), "logits")
    assert metrics.psnr_db >= 120 and metrics.label_agreement == 100.0, metrics


@pytest.mark.parametrize("model", ["seaformer-t++-kd", "topformer-t"])
def test_families_lower_to_one_partition(model, tmp_path):
    result = export(ExportOptions(model=model, input_size=SIZE, out_root=tmp_path,
                                  formats=("pte",), precisions=("fp32",), components=False))
    art = result.manifest["artifacts"][0]
    assert art["executorch"]["partitions"] == 1 and art["executorch"]["non_delegated_ops"] == {}
    assert art["parity"]["worst"]["psnr_db"] >= THRESHOLDS["fp32"]["psnr_db"]
    assert {r["name"] for r in result.manifest["deploy_form"]["rewrites"]} >= {"fused_qkv"}


def test_naive_export_keeps_the_reference_form(tmp_path):
    result = export(ExportOptions(model="seaformer-t", input_size=SIZE, out_root=tmp_path,
                                  formats=("pte",), precisions=("fp32",), components=False,
                                  rewrites=False))
    assert result.folder.name.endswith("_naive")
    art = result.manifest["artifacts"][0]
    assert result.manifest["deploy_form"]["rewrites"] == []
    assert art["executorch"]["partitions"] > 1 and "aten_mean_dim" in art["executorch"][
        "non_delegated_ops"]
