"""Which native runner a bench or an A/B run asked for, checked before any export or device."""

from __future__ import annotations

from ..errors import OptionError, option
from .session import RunnerChoice


def check_runner_choice(choice: RunnerChoice) -> RunnerChoice:
    """Refuse a prebuilt folder together with build options, and read the prebuilt folder now
    (a broken one must fail before an export, not after it). Returns ``choice``."""
    if choice.prebuilt is None:
        return choice
    if choice.target or choice.ndk or choice.executorch_prefix:
        raise OptionError(f"{option('prebuilt')} names a prebuilt runner folder; "
                          f"{option('target')}, {option('ndk')} and "
                          f"{option('executorch_prefix')} build one: pass one or the other.")
    from .native import load_prebuilt

    load_prebuilt(choice.prebuilt)
    return choice
