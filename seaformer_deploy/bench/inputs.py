"""What a bench is given, checked before any work: options, and the export's files.

A bench that measures for minutes and only then finds a bad option, a missing tensor or an
edited artifact wastes the user's time and, worse, may report what did not run. So every
option is range-checked up front, and every file a selected artifact needs (the artifact, its
input tensors, its reference outputs) is hashed and compared with the manifest before the
device is touched; the report then records the hashes computed here, from the files.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import OptionError, option
from ..export import formats as fmts
from ..export import manifest as mf
from ..export.precision import Precision
from ..export.records import Artifact, Manifest
from .instructions import METRICS

PRECISIONS = Precision.names()


class BenchInputError(OptionError):
    pass


def check_options(opts) -> None:
    """Range checks on BenchOptions; each message names the option (its field: the CLI shows
    the flag) and what it accepts."""
    p = opts.protocol
    counts = {"iterations": p.iterations, "rounds": p.rounds, "blocks": opts.blocks}
    for name, value in counts.items():
        if value < 1:
            raise BenchInputError(f"{option(name)} {value}: must be at least 1.")
    if p.warmup_iterations < 0:
        raise BenchInputError(f"{option('warmup_iterations')} {p.warmup_iterations}: must be 0 "
                              f"or more.")
    seconds = {"warmup_seconds": p.warmup_seconds, "min_seconds": p.min_seconds,
               "cooldown_seconds": p.cooldown_seconds, "wait_seconds": opts.wait_seconds,
               "pause_seconds": opts.thermal.pause_seconds,
               "max_wait_seconds": opts.thermal.max_wait_seconds}
    for name, value in seconds.items():
        if not math.isfinite(value) or value < 0:
            raise BenchInputError(f"{option(name)} {value}: must be a finite number of seconds "
                                  f">= 0.")
    if opts.runner_timeout is not None and not opts.runner_timeout > 0:
        raise BenchInputError(f"{option('runner_timeout')} {opts.runner_timeout}: must be > 0 "
                              f"seconds.")
    if not 0 <= opts.precision < 0.5:
        raise BenchInputError(f"{option('precision')} {opts.precision}: must be a fraction "
                              f"such as 0.01 (the median's 95 % CI within +-1 %), or 0 for the "
                              f"fixed protocol alone.")
    if opts.metric not in METRICS:
        raise BenchInputError(f"{option('metric')} {opts.metric!r}: must be one of "
                              f"{', '.join(METRICS)}.")
    if opts.counted_iterations < 1:
        raise BenchInputError(f"{option('counted_iterations')} {opts.counted_iterations}: must "
                              f"be 1 or more.")
    if not opts.max_seconds > 0:
        raise BenchInputError(f"{option('max_seconds')} {opts.max_seconds}: must be > 0 "
                              f"seconds.")
    if opts.core is not None and opts.core < 0:
        raise BenchInputError(f"{option('core')} {opts.core}: must be a CPU number (0 or more).")
    _known("formats", opts.formats, fmts.by_rank())
    _known("precisions", opts.precisions, PRECISIONS)


def _known(field: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    name = option(field)
    if not values:
        raise BenchInputError(f"{name} is empty: pass one or more of {', '.join(allowed)}.")
    if unknown := [v for v in values if v not in allowed]:
        raise BenchInputError(f"{name} {','.join(unknown)}: exports hold "
                              f"{_listed(allowed)} artifacts; pass those.")


def _listed(words: tuple[str, ...]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(filter(None, (", ".join(words[:-1]), words[-1])))


def check_export_matches(manifest: Manifest, folder: Path, model: str | None,
                         input_size: tuple[int, int] | None) -> None:
    """``--variant/--model/--input-size`` given with ``--artifacts`` must describe that export
    (they are not ignored: a bench of the wrong model would look like the right one)."""
    have_model = manifest.model.name
    have_size = tuple(manifest.input.size)
    if model is not None and model != have_model:
        raise BenchInputError(f"{option('artifacts')} {folder} holds {have_model}, not "
                              f"{model}: drop {option('variant')}/{option('model')}, or pass "
                              f"the export of {model}.")
    if input_size is not None and tuple(input_size) != have_size:
        raise BenchInputError(f"{option('artifacts')} {folder} was exported at "
                              f"{have_size[0]}x{have_size[1]}, not "
                              f"{input_size[0]}x{input_size[1]}: drop {option('input_size')}, "
                              f"or pass "
                              f"that export.")


def verify_files(folder: Path, manifest: Manifest, selected: list[Artifact]) -> dict[str, str]:
    """Hash every file the selected artifacts need; path -> sha256 of the file as it is.
    A missing file or one that differs from the manifest is an error listing them all."""
    claimed = {t.path: t.sha256 for t in manifest.tensors}
    claimed |= {a.path: a.sha256 for a in selected}
    needed = [a.path for a in selected]
    needed += [file for a in selected for file in a.files()]
    hashes, problems = {}, []
    for path in dict.fromkeys(needed):
        file = Path(folder) / path
        if not file.is_file():
            problems.append(f"{path} is missing")
            continue
        hashes[path] = mf.sha256_path(file)
        if path not in claimed:
            problems.append(f"{path} is not listed with a sha256 in the manifest")
        elif hashes[path] != claimed[path]:
            problems.append(f"{path} differs from the manifest's sha256 "
                            f"({hashes[path][:12]} != {claimed[path][:12]})")
    if problems:
        raise BenchInputError(f"the export in {folder} is not what its manifest describes: "
                              + "; ".join(problems[:6])
                              + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
                              + ". Re-export it (`seaformer-deploy export ... --force`); "
                                "nothing was measured.")
    return hashes
