"""The package's layers, read from its source with ``ast`` (nothing of the package is imported).

Data flows one way (``seaformer_deploy/__init__.py``): a module imports only its own layer or
lower ones, and only public names of other modules. Lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seaformer_deploy"
ROOT = PACKAGE.name
# Lowest first. "base" holds the modules every layer may use; "cli" is the top: the command line
# and the public Python API (cli.py or a cli/ package, api.py) and the package's own face,
# __init__.py, which may re-export that API. Its dunder metadata (__version__) is base.
LAYERS = ("base", "models", "export", "evaluate", "devices", "runners", "bench", "reports", "gate", "cli")
BASE = {"errors", "paths", "quiet"}
TOP = {"cli", "api"}
# Narrower than the layers: all a layer may take from a lower module (and its submodules). The
# gate drives runners itself for latency (its A/B interleaves both sides in one process) and
# runs a whole bench only to count instructions, which need no interleaving; it also measures
# how far a report's speed wandered (a pure function of its samples), which widens a
# report-against-report interval; reports read only the bench's result record.
NARROW = {("reports", "bench.run"): {"BenchRun", "Measurement"},
          ("gate", "bench"): {"BenchOptions", "bench", "METRICS", "Wander", "wander"}}
# Known violations in files owned by other branches, each with its reason; emptied at merge.
# (file, target) pairs tolerated while a fix is under way; each entry says why. Empty: none is.
ALLOWED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Violation:
    file: str              # relative to the package
    line: int
    target: str            # module (and name) imported, relative to the package
    why: str

    def __str__(self) -> str:
        return f"{ROOT}/{self.file}:{self.line}: {self.target}: {self.why}"


def module_name(file: str) -> str:
    """``bench/run.py`` -> ``bench.run``; ``gate/__init__.py`` -> ``gate``; the root -> ``""``."""
    parts = list(Path(file).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str, name: str | None = None) -> str | None:
    """The layer of ``module`` (relative to the package), None when it is in none."""
    head = module.split(".")[0]
    if head == "":
        return "base" if name and _dunder(name) else "cli"
    if head in BASE:
        return "base"
    if head in TOP:
        return "cli"
    return head if head in LAYERS else None


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _private(name: str) -> bool:
    return name.startswith("_") and not _dunder(name)


@dataclass(frozen=True)
class Import:
    line: int
    target: str            # the imported module, relative to the package
    name: str | None       # the name taken from it; None when the import is the module itself
    local: str | None      # the name bound to the import (None: `import a.b` binds `a`)


def imports(file: str, tree: ast.Module, modules: set[str]) -> list[Import]:
    """Every import of a package module in ``tree``, relative imports resolved; ``from pkg
    import sub`` of a submodule counts as importing the submodule itself."""
    here = module_name(file)
    package = here if file.endswith("__init__.py") else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name[len(ROOT) + 1:], None, alias.asname)
                      for alias in node.names
                      if alias.name == ROOT or alias.name.startswith(ROOT + ".")]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(package, node.level, node.module)
            for alias in node.names if base is not None else ():
                sub = f"{base}.{alias.name}".lstrip(".")
                found.append(Import(node.lineno, sub, None, alias.asname or alias.name)
                             if sub in modules else
                             Import(node.lineno, base, alias.name, alias.asname or alias.name))
    return found


def _resolve(package: str, level: int, module: str | None) -> str | None:
    """A ``from`` import's module relative to the package; None outside the package."""
    if level == 0:
        if module != ROOT and not (module or "").startswith(ROOT + "."):
            return None
        return module[len(ROOT) + 1:]
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    parts = parts[:len(parts) - (level - 1)]
    return ".".join(parts + ([module] if module else []))


def check_module(file: str, source: str, modules: set[str]) -> list[Violation]:
    """The layer and privacy violations of one module of the package."""
    here = module_name(file)
    mine = layer(here)
    if mine is None:
        return [Violation(file, 1, here, f"in no layer: add it to LAYERS, BASE or TOP in "
                                         f"{Path(__file__).name}")]
    tree = ast.parse(source, file)
    found = []
    for imp in imports(file, tree, modules):
        shown = f"{imp.target}.{imp.name}" if imp.name else imp.target
        theirs = layer(imp.target, imp.name)
        if theirs is None:
            found.append(Violation(file, imp.line, shown, "in no layer"))
        elif LAYERS.index(theirs) > LAYERS.index(mine):
            found.append(Violation(file, imp.line, shown,
                                   f"layer {mine} imports the higher layer {theirs}"))
        if any(_private(part) for part in shown.split(".")) and imp.target != here:
            found.append(Violation(file, imp.line, shown, "private name of another module"))
        found += _narrow(file, imp, mine, shown)
    return found + _private_attributes(file, tree, modules)


def _narrow(file: str, imp: Import, mine: str, shown: str) -> list[Violation]:
    for (who, lower), allowed in NARROW.items():
        if who == mine and (imp.target == lower or imp.target.startswith(lower + ".")) \
                and imp.name not in allowed:
            what = ", ".join(sorted(allowed)) or "nothing"
            return [Violation(file, imp.line, shown, f"{mine} may take {what} from {lower}")]
    return []


def _private_attributes(file: str, tree: ast.Module, modules: set[str]) -> list[Violation]:
    """``mf._name`` where ``mf`` is bound to another package module."""
    here = module_name(file)
    bound = {i.local: i.target for i in imports(file, tree, modules)
             if i.name is None and i.local and i.target != here}
    return [Violation(file, node.lineno, f"{bound[node.value.id]}.{node.attr}",
                      "private name of another module")
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in bound and _private(node.attr)]


def package_sources() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(PACKAGE.rglob("*.py"))}


def violations(sources: dict[str, str]) -> list[Violation]:
    modules = {module_name(f) for f in sources}
    return [v for file, source in sources.items() for v in check_module(file, source, modules)]


def test_the_package_keeps_its_layers():
    found = [v for v in violations(package_sources()) if (v.file, v.target) not in ALLOWED]
    for v in found:
        print(v)
    assert not found, "layer violations:\n" + "\n".join(map(str, found))


def test_every_allowed_violation_still_exists():
    """An allow-list entry that no longer matches anything is stale: remove it."""
    found = {(v.file, v.target) for v in violations(package_sources())}
    assert ALLOWED <= found, f"stale ALLOWED entries: {sorted(ALLOWED - found)}"


BAD_GATE = """\
from ..bench.run import BenchError
from ..export import manifest as mf
from ..export.onnx_export import _quiet


def f():
    from ..cli import app
    return mf._private_helper(app)


def g():
    import seaformer_deploy.cli as top
    return top
"""

GOOD_GATE = """\
from .. import __version__
from ..devices import choice
from ..errors import UserError
from .compare import GateError
import seaformer_deploy.export.manifest as mf
from seaformer_deploy.export.onnx_export import export_onnx


def f():
    from ..reports.build import build_report
    return choice.pick_core, build_report, UserError, GateError, __version__, mf.read
"""


@pytest.fixture
def sources() -> dict[str, str]:
    """A small package: what the synthetic modules import must exist as modules."""
    names = ["__init__.py", "errors.py", "cli.py", "bench/__init__.py", "bench/run.py",
             "export/__init__.py", "export/manifest.py", "export/onnx_export.py",
             "devices/__init__.py", "devices/choice.py", "reports/__init__.py",
             "reports/build.py", "gate/__init__.py", "gate/compare.py"]
    return dict.fromkeys(names, "")


def test_the_checker_flags_a_bad_module(sources):
    found = violations({**sources, "gate/bad.py": BAD_GATE})
    assert [(v.line, v.target) for v in found] == [
        (1, "bench.run.BenchError"), (3, "export.onnx_export._quiet"), (7, "cli.app"),
        (12, "cli"), (8, "export.manifest._private_helper")]
    assert [v.why for v in found] == [
        "gate may take BenchOptions, METRICS, Wander, bench, wander from bench",
        "private name of another module",
        "layer gate imports the higher layer cli", "layer gate imports the higher layer cli",
        "private name of another module"]
    assert str(found[2]).startswith("seaformer_deploy/gate/bad.py:7: cli.app:")


def test_the_checker_passes_a_good_module(sources):
    assert violations({**sources, "gate/good.py": GOOD_GATE}) == []


def test_the_checker_flags_a_module_in_no_layer_and_the_narrow_rule(sources):
    found = violations({**sources, "extras/tool.py": "",
                        "reports/bad.py": "from ..bench.run import bench, BenchRun\n"})
    assert [(v.file, v.target) for v in found] == [("extras/tool.py", "extras.tool"),
                                                  ("reports/bad.py", "bench.run.bench")]
