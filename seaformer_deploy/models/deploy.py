"""The families' deploy rewrites: which module of a family export swaps for a faster exact form.

A rewrite names a module class (matched exactly, not its subclasses) and a factory that builds
its replacement from the module and the positional arguments it received at the export size.
Each family registers its own (``register_rewrite``) beside its modules; ``export/rewrites.py``
applies them, in registration order, before the generic rewrites. The name is what manifests
list under ``deploy_form.rewrites``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

# (qualified module name, the module, its call arguments) -> the replacement module
Rewrite = Callable[[str, nn.Module, tuple], nn.Module]


@dataclass(frozen=True)
class DeployRewrite:
    name: str
    match: type[nn.Module]
    make: Rewrite


REWRITES: dict[str, DeployRewrite] = {}


def register_rewrite(name: str, match: type[nn.Module], make: Rewrite) -> DeployRewrite:
    """Register the rewrite of every ``match`` module into ``make(name, module, args)``."""
    if name in REWRITES:
        raise ValueError(f"deploy rewrite {name!r} is already registered (for "
                         f"{REWRITES[name].match.__name__})")
    taken = [r.name for r in REWRITES.values() if r.match is match]
    if taken:
        raise ValueError(f"{match.__name__} already has the deploy rewrite {taken[0]!r}")
    REWRITES[name] = rewrite = DeployRewrite(name, match, make)
    return rewrite
