"""The four deployable components of a segmentation model and how they chain.

Every segmentation model is cut into ``stem`` -> ``context`` -> ``spatial`` -> ``head`` (SeaFormer
paper, Fig. 2 and Fig. 10). Each component is a module whose ``forward`` takes named tensors
positionally and returns a tuple of named tensors; the names are the contract that per-component
export and per-component latency stand on. Components are built on demand as thin views over the
model's own submodules (they share parameters and are never registered on the model, so the
model's state-dict keys stay exactly the official ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

COMPONENT_NAMES = ("stem", "context", "spatial", "head")
IMAGE = "image"
LOGITS = "logits"


class Component(nn.Module):
    """A named slice of a model: ``forward(*inputs) -> tuple(outputs)``.

    Subclasses hold only the submodules they run, so an exported component carries only its own
    weights.
    """

    def __init__(self, name: str, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        super().__init__()
        if name not in COMPONENT_NAMES:
            raise ValueError(f"unknown component {name!r}; expected one of {COMPONENT_NAMES}")
        self.name = name
        self.input_names = tuple(inputs)
        self.output_names = tuple(outputs)

    def extra_repr(self) -> str:
        return f"{self.name}: ({', '.join(self.input_names)}) -> ({', '.join(self.output_names)})"


def run_chain(components: Sequence[Component], image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run components in order, feeding each the named tensors produced so far."""
    env: dict[str, torch.Tensor] = {IMAGE: image}
    for comp in components:
        missing = [n for n in comp.input_names if n not in env]
        if missing:
            raise KeyError(f"component {comp.name} needs {missing}, produced so far: {list(env)}")
        outputs = comp(*(env[n] for n in comp.input_names))
        env.update(zip(comp.output_names, outputs))
    return env


def check_chain(components: Sequence[Component]) -> None:
    """Validate the interface: canonical order, every input produced upstream, logits at the end."""
    names = tuple(c.name for c in components)
    if names != COMPONENT_NAMES:
        raise ValueError(f"components must be {COMPONENT_NAMES}, got {names}")
    produced = {IMAGE}
    for comp in components:
        for name in comp.input_names:
            if name not in produced:
                raise ValueError(f"{comp.name} consumes {name!r}, which no earlier component "
                                 f"produces")
        produced.update(comp.output_names)
    if components[-1].output_names != (LOGITS,):
        raise ValueError("the head must produce exactly one tensor named 'logits'")
