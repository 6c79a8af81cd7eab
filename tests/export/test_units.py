"""Export units: output modes and the gate-validation extra work."""

from __future__ import annotations

import torch

from helpers import randomize
from seaformer_deploy.export.units import ExtraWork, build_units
from seaformer_deploy.models import create


def test_extra_work_is_exactly_the_identity_in_fp32_and_fp16():
    x = torch.randn(1, 19, 16, 16) * 100
    work = ExtraWork(19, 7).eval()
    with torch.no_grad():
        assert torch.equal(work(x), x)
        assert torch.equal(work.half()(x.half()), x.half())
    assert len(work.convs) == 7


def test_extra_work_goes_on_the_model_and_head_only():
    model = randomize(create("seaformer-t", num_classes=19))
    units = {u.name: u for u in build_units(model, "logits", (64, 64), extra_work=3)}
    assert units["model"].module.extra is units["head"].module.extra
    assert len(units["model"].module.extra.convs) == 3
    plain = {u.name: u for u in build_units(model, "logits", (64, 64))}
    assert plain["model"].module.extra is None
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(units["model"].module(image)[0], plain["model"].module(image)[0])
