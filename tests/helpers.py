"""Helpers shared by the tests (importable as ``helpers``; see pyproject's pythonpath)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# The contract files of ``../shared/spec``, vendored so a clean clone can test against them.
SPEC_DIR = Path(__file__).resolve().parent / "data" / "spec"
SHARED_SPEC_DIR = Path(__file__).resolve().parents[2] / "shared" / "spec"
# Input size of the shared export fixture (see conftest.small_export).
SMALL = (256, 256)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and statistics.

    A model fresh from ``__init__`` has identity BN statistics and zero-initialised BN weights at
    the end of every attention branch, so whole branches output exactly zero; tests that compare
    computations must not be fooled by that.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                mod.weight.copy_(0.5 + torch.rand(n, generator=gen))
                mod.bias.copy_(0.2 * torch.randn(n, generator=gen))
                mod.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                mod.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    return model.eval()
