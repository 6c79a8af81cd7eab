"""SeaFormer++ design properties: warm start from SeaFormer, parameter budget, KD student."""

from __future__ import annotations

import pytest
import torch

from helpers import randomize
from seaformer_deploy.models import MODELS
from seaformer_deploy.models.complexity import count_params
from seaformer_deploy.models.registry import build
from seaformer_deploy.models.seaformer_pp import AdaptiveSeaAttention

# Counts this design gives (150 classes); the module docstring reports them against the paper.
PP_PARAMS = {"T": 1_767_478, "S": 4_263_862, "B": 9_229_526, "L": 14_756_278}


@pytest.mark.parametrize("variant", "TSBL")
def test_parameter_counts_close_to_the_paper(variant):
    name = f"seaformer-{variant.lower()}++"
    params = count_params(build(name))
    assert params == PP_PARAMS[variant]
    assert params / 1e6 == pytest.approx(MODELS[name].paper.params_m, rel=0.07)
    extra = params - MODELS[f"seaformer-{variant.lower()}"].official_params
    assert extra > 0


def test_t_plus_plus_matches_the_stated_costs():
    # Paper: T -> T++ adds about 0.1M parameters and 0.01 GFLOPs.
    assert count_params(build("seaformer-t++")) / 1e6 == pytest.approx(1.8, abs=0.05)
    assert count_params(build("seaformer-t++-cls")) / 1e6 == pytest.approx(1.9, abs=0.05)
    assert count_params(build("seaformer-t++-kd")) / 1e6 == pytest.approx(2.3, abs=0.05)


def test_adaptive_layers_start_as_seaformer():
    """A ++ model warm-started from SeaFormer weights computes what SeaFormer computes."""
    base = randomize(build("seaformer-t"), seed=3)
    plus = build("seaformer-t++")
    result = plus.load_state_dict(base.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert all(".squeeze_mask." in k or ".expand_mask." in k for k in result.missing_keys)
    image = torch.randn(1, 3, 256, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out = base(image), plus.eval()(image)
    assert ref.abs().max() > 0
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_adaptive_squeeze_is_input_dependent():
    attn = AdaptiveSeaAttention(dim=32, key_dim=8, num_heads=2).eval()
    randomize(attn, seed=1)
    torch.nn.init.normal_(attn.squeeze_mask.c.weight)
    x = torch.randn(1, 32, 6, 10)
    rows, cols = attn.squeeze_weights(x)
    assert rows.shape == (1, 2, 1, 6, 10) and cols.shape == (1, 2, 1, 6, 10)
    torch.testing.assert_close(rows.sum(-1), torch.ones(1, 2, 1, 6))   # convex weights per row
    torch.testing.assert_close(cols.sum(-2), torch.ones(1, 2, 1, 10))  # and per column
    assert not torch.allclose(rows, torch.full_like(rows, 0.1))          # not the plain mean
    t = torch.randn(1, 16, 6, 10)
    row, col = attn.squeeze(t, (rows, cols))
    assert row.shape == (1, 16, 6) and col.shape == (1, 16, 10)


def test_kd_student_runs_at_half_resolution():
    student = randomize(build("seaformer-t++-kd"), seed=2)
    image = torch.randn(1, 3, 256, 384)
    with torch.no_grad():
        logits = student(image)
        stem_out = student.components()[0](image)
    assert logits.shape == (1, 150, 32, 48)          # logits at 1/8 of the input, like the teacher
    assert stem_out[1].shape[-2:] == (16, 24)         # the shared feature at 1/16: half resolution
    teacher = build("seaformer-t++")
    head_keys = {k for k in teacher.state_dict() if k.startswith("decode_head.")}
    assert head_keys <= set(student.state_dict())     # the teacher's head loads into the student
