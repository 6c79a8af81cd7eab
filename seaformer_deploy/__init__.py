"""seaformer-deploy: SeaFormer-family segmenters from PyTorch to a phone, measured and verified.

Data flows one way: models -> export -> devices -> runners -> bench/reports -> gate -> cli;
evaluate reads exports and runs them on this machine's runtimes.

The Python API (``seaformer_deploy.api``) is also here: ``export(...)``, ``bench(...)``,
``gate(...)``, ``evaluate(...)``, ``devices(...)``, ``create_model(...)`` and
``list_models(...)``. Importing the package stays cheap: torch and the runtimes load when a
function is called.

``export``, ``bench``, ``gate``, ``evaluate`` and ``devices`` are also the names of the stages'
subpackages, and Python binds a subpackage to its name on the package as soon as anything imports it, so a
plain function of that name would be replaced by the module. Instead each of these subpackages
is made callable: ``seaformer_deploy.export(...)`` runs ``api.export(...)``, while
``seaformer_deploy.export.pipeline`` stays the module it always was.
"""

from __future__ import annotations

import importlib
import types

__version__ = "0.1.0"

_CALLABLE_STAGES = ("export", "bench", "gate", "evaluate", "devices")
_API_NAMES = ("api", "create_model", "list_models")


class _CallableStage(types.ModuleType):
    """A stage's subpackage that is also its API function (see the module docstring)."""

    def __call__(self, *args: object, **kwargs: object) -> object:
        from . import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


for _name in _CALLABLE_STAGES:        # their __init__ files import no heavy module
    importlib.import_module(f"{__name__}.{_name}").__class__ = _CallableStage
del _name


def __getattr__(name: str) -> object:
    if name in _API_NAMES:
        api = importlib.import_module(f"{__name__}.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API_NAMES})
