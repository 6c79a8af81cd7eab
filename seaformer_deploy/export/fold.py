"""BatchNorm folding: rewrite conv weights and biases so no normalisation runs at inference."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..models.layers import Conv2d_BN, ConvBN


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every conv + BN pair fused into one conv with bias."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, Conv2d_BN):
            module.c = fuse_conv_bn_eval(module.c, module.bn)
            module.bn = nn.Identity()
        elif isinstance(module, ConvBN):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
    left = [name for name, m in model.named_modules() if isinstance(m, _BatchNorm)]
    if left:
        raise RuntimeError(f"BatchNorm layers without a conv to fold into: {left[:5]}")
    return model
