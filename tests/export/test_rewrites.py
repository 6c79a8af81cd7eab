"""Deploy-form rewrites: each is exact in PyTorch, and together they leave one XNNPACK
partition with nothing outside it, for every family, within the FP32 parity thresholds."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from seaformer_deploy.export import formats, rewrites
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


# runtime-specific rewrite -> (format, model whose modules it rewrites)
RUNTIME_CASES = {"matmul_upsampling": [("onnx", "seaformer-t"), ("onnx", "topformer-t"),
                                       ("onnx", "seaformer-t++-kd")],
                 "aligned_classifier": [("pte", "seaformer-t"), ("pte", "topformer-t")],
                 "aligned_expansion": [("pte", "seaformer-s")]}


def test_every_rewrite_is_tested():
    assert set(FAMILY_OF) == set(rewrites.REPLACEMENTS) | set(rewrites.FUSIONS)
    runtime = {name for fmt in formats.names() for name in formats.get(fmt).runtime_rewrites}
    assert set(RUNTIME_CASES) == runtime


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


def test_the_order_of_the_replacements_changes_no_result(folded, monkeypatch):
    """Each replacement swaps leaf modules of its own class, so the fixed order (families, then
    generic) only decides the order in which the manifest lists them."""
    model = folded("seaformer-t++")
    image = sample_batch(*SIZE, 2)
    forward, backward = copy.deepcopy(model), copy.deepcopy(model)
    applied = rewrites.deploy_form(forward, image[:1])
    monkeypatch.setattr(rewrites, "REPLACEMENTS",
                        dict(reversed(list(rewrites.REPLACEMENTS.items()))))
    applied_backward = rewrites.deploy_form(backward, image[:1])
    assert len(applied) >= 6 and sorted(applied_backward, key=lambda a: a.name) == sorted(
        applied, key=lambda a: a.name)
    with torch.no_grad():
        assert torch.equal(forward(image), backward(image))


@pytest.mark.parametrize(("name", "fmt", "model"),
                         [(n, f, m) for n, cases in RUNTIME_CASES.items() for f, m in cases])
def test_each_runtime_rewrite_is_exact(name, fmt, model, folded):
    reference = folded(model)
    image = sample_batch(*SIZE, 2)
    rewritten = copy.deepcopy(reference)
    rewrites.deploy_form(rewritten, image[:1])
    applied = rewrites.runtime_form(rewritten, image[:1], fmt)
    assert name in [a.name for a in applied]
    with torch.no_grad():
        ref, out = reference(image), rewritten(image)
    metrics = compare(ref.numpy(), out.numpy(), "logits")
    assert metrics.psnr_db >= 120 and metrics.label_agreement == 100.0, metrics


@pytest.mark.parametrize(("size_in", "size_out"),
                         [((8, 8), (64, 64)), ((16, 12), (64, 40)), ((7, 5), (16, 13)),
                          ((32, 32), (9, 17))])
def test_matmul_resize_matches_bilinear(size_in, size_out):
    x = torch.randn(2, 3, *size_in)
    got = rewrites.MatmulResize(size_in, size_out)(x, size_out)
    want = F.interpolate(x, size=size_out, mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_matmul_resize_refuses_other_shapes():
    with pytest.raises(ValueError, match="built for"):
        rewrites.MatmulResize((8, 8), (16, 16))(torch.randn(1, 2, 8, 9), (16, 16))


def test_widened_depthwise_and_projection_ignore_the_extra_channels():
    depthwise, project = torch.nn.Conv2d(72, 72, 5, 2, 2, groups=72), torch.nn.Conv2d(72, 24, 1)
    x = torch.randn(1, 72, 16, 16)
    wide_dw = rewrites.widened(depthwise, 80)
    wide_project = rewrites.widened(project, 24, 80)
    assert wide_dw.groups == 80 and wide_project.in_channels == 80
    padded = torch.cat([x, torch.randn(1, 8, 16, 16)], 1)        # whatever lands there
    with torch.no_grad():
        torch.testing.assert_close(wide_dw(padded)[:, :72], depthwise(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(wide_project(wide_dw(padded)), project(depthwise(x)),
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="widened"):
        rewrites.widened(torch.nn.Conv2d(8, 8, 3, groups=2), 16)


def test_padded_conv_keeps_the_real_channels():
    conv = torch.nn.Conv2d(24, 150, 1)
    padded = rewrites.PaddedConv(conv, rewrites.GEMM_TILE)
    assert padded.conv.out_channels == 160
    x = torch.randn(1, 24, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), conv(x), rtol=0, atol=1e-6)
        assert padded.conv(x)[:, 150:].abs().max() == 0


@pytest.mark.parametrize("model", ["seaformer-t++-kd", "topformer-t"])
def test_families_lower_to_one_partition(model, tmp_path):
    result = export(ExportOptions(model=model, input_size=SIZE, out_root=tmp_path,
                                  formats=("pte",), precisions=("fp32",), components=False))
    art = result.manifest.to_dict()["artifacts"][0]
    assert art["executorch"]["partitions"] == 1 and art["executorch"]["non_delegated_ops"] == {}
    assert art["parity"]["worst"]["psnr_db"] >= THRESHOLDS["fp32"]["psnr_db"]
    assert {r["name"] for r in result.manifest.to_dict()["deploy_form"]["rewrites"]} >= {"fused_qkv"}
    assert result.manifest.to_dict()["deploy_form"]["runtime_rewrites"] == {
        "pte": [{"name": "aligned_classifier", "modules": 1}]}


def test_naive_export_keeps_the_reference_form(tmp_path):
    result = export(ExportOptions(model="seaformer-t", input_size=SIZE, out_root=tmp_path,
                                  formats=("pte",), precisions=("fp32",), components=False,
                                  rewrites=False))
    assert result.folder.name.endswith("_naive")
    art = result.manifest.to_dict()["artifacts"][0]
    assert result.manifest.to_dict()["deploy_form"]["rewrites"] == []
    assert result.manifest.to_dict()["deploy_form"]["runtime_rewrites"] == {"pte": []}
    assert art["executorch"]["partitions"] > 1 and "aten_mean_dim" in art["executorch"][
        "non_delegated_ops"]
