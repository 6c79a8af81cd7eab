"""NHWC program edges: the wrong layout is an error, the right one is exact and costs nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seaformer_deploy.export import pte_export
from seaformer_deploy.export.pte_layout import (NHWC_TO_NCHW, NHWCInterface,
                                                inverse_transposes_cancelled, to_nhwc)


class TwoInTwoOut(nn.Module):
    """A component's shape: an image and a feature map in; a feature that is both an output
    and read further on (the output side's other-readers case), and logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Conv2d(8, 5, 1)

    def forward(self, image: torch.Tensor, feature: torch.Tensor):
        shared = torch.relu(self.stem(image)) + feature
        return shared, self.head(shared)


@pytest.fixture(scope="module")
def programs():
    torch.manual_seed(0)
    body = TwoInTwoOut().eval()
    nchw = [torch.randn(1, 3, 32, 48), torch.randn(1, 8, 16, 24)]
    example = [to_nhwc(t) for t in nchw]
    plain, _ = pte_export.export_pte(NHWCInterface(body).eval(), example)
    with inverse_transposes_cancelled() as removed:
        cancelled, stats = pte_export.export_pte(NHWCInterface(body).eval(), example)
    with torch.no_grad():
        expected = body(*nchw)
    return {"plain": plain, "cancelled": cancelled, "removed": removed, "stats": stats,
            "nchw": nchw, "expected": expected}


def _method(data: bytes):
    from executorch.runtime import Runtime

    return Runtime.get().load_program(data).load_method("forward")


def test_every_boundary_transpose_pair_is_removed(programs):
    assert programs["stats"]["partitions"] == 1 and not programs["stats"]["non_delegated_ops"]
    assert programs["removed"] == [4]        # two inputs and two outputs, a pair each


def test_the_right_layout_matches_pytorch_bit_for_bit_across_the_rewrite(programs):
    inputs = [to_nhwc(t) for t in programs["nchw"]]
    plain = _method(programs["plain"]).execute(inputs)
    cancelled = _method(programs["cancelled"]).execute(inputs)
    for got, same, want in zip(cancelled, plain, programs["expected"], strict=True):
        assert tuple(got.shape) == tuple(want.permute(0, 2, 3, 1).shape)
        assert torch.equal(got, same)
        torch.testing.assert_close(got.permute(NHWC_TO_NCHW), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("wrong", ["nchw", "nchw channels-last", "nhwc bytes in nchw shape"])
def test_a_wrong_layout_is_an_error(programs, which, wrong):
    good = [to_nhwc(t) for t in programs["nchw"]]
    tensor = programs["nchw"][which]
    bad = {"nchw": tensor, "nchw channels-last": tensor.to(memory_format=torch.channels_last),
           "nhwc bytes in nchw shape": to_nhwc(tensor).reshape(tensor.shape)}[wrong]
    inputs = [bad if i == which else t for i, t in enumerate(good)]
    with pytest.raises(RuntimeError, match="set_inputs"):
        _method(programs["cancelled"]).execute(inputs)
