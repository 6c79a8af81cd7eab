"""What every model of the zoo shares: its name, its input-size contract, its components."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from .components import LOGITS, Component, check_chain, run_chain


class InputSizeError(UserError, ValueError):
    """An input size the model cannot run faithfully or export with static shapes."""


# Largest height or width: 4K frames fit; beyond, tracing and parity need tens of GB of memory
# and no phone runs the model anyway.
MAX_SIDE = 4096


@dataclass(frozen=True)
class InputContract:
    """Which input sizes give a faithful, exportable graph, and why."""

    multiple: int
    minimum: int
    reason: str
    maximum: int = MAX_SIDE

    def check(self, model_name: str, height: int, width: int) -> None:
        sides = (height, width)
        if any(v > self.maximum for v in sides):
            raise InputSizeError(
                f"{model_name} cannot take a {height}x{width} input: height and width must be "
                f"at most {self.maximum} (larger inputs need tens of GB to export and no phone "
                f"runs them). Try {self.nearest(height)}x{self.nearest(width)}.")
        if any(v < self.minimum or v % self.multiple for v in sides):
            raise InputSizeError(
                f"{model_name} cannot take a {height}x{width} input: height and width must be "
                f"multiples of {self.multiple} and at least {self.minimum} ({self.reason}). "
                f"Try {self.nearest(height)}x{self.nearest(width)}.")

    def nearest(self, value: int) -> int:
        top = self.maximum // self.multiple * self.multiple
        return min(top, max(self.minimum, int(round(value / self.multiple)) * self.multiple))


class ZooModel(nn.Module):
    """Base of every registered model; ``name`` is its registry name."""

    name: str = ""
    contract: InputContract
    default_input_size: tuple[int, int] = (512, 512)

    def check_input_size(self, height: int, width: int) -> None:
        self.contract.check(self.name, height, width)

    def example_input(self, height: int | None = None, width: int | None = None) -> torch.Tensor:
        h, w = (height, width) if height and width else self.default_input_size
        self.check_input_size(h, w)
        return torch.zeros(1, 3, h, w)


class SegmentationModel(ZooModel):
    """A segmentation model: logits at 1/8 of the input, and four deployable components."""

    num_classes: int
    output_stride: int = 8

    def components(self) -> list[Component]:
        """The stem, context, spatial and head components, as views over this model's modules."""
        raise NotImplementedError

    def forward_components(self, image: torch.Tensor) -> torch.Tensor:
        """The logits computed by running the four components in sequence."""
        components = self.components()
        check_chain(components)
        return run_chain(components, image)[LOGITS]
