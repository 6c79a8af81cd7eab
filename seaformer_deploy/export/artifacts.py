"""One artifact: exported by its format's exporter, written, and checked on its host runtime.

Every artifact runs over the sample images on the runtime its format declares and is compared
with PyTorch FP32 eager on the original model; the component artifacts are also chained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from ..models.components import IMAGE
from . import formats as fmts
from . import manifest as mf
from .formats import ExportJob, Format, io_dtype
from .parity import compare, parity
from .precision import Precision
from .records import Artifact, Chain, OrtForm, Parity
from .layouts import from_layout, layout_of, to_layout
from .tensors import as_dtype, describe
from .units import WHOLE, Unit

if TYPE_CHECKING:
    from .pipeline import ExportOptions

REFERENCE = "PyTorch FP32 eager, original model (BatchNorm not folded)"


@dataclass(frozen=True)
class Calibration:
    """What INT8 artifacts are calibrated on: every named tensor of the FP32 chain for the
    calibration images, and the manifest's words for where they came from."""

    env: dict
    source: str


def export_artifact(staging: Path, unit: Unit, fmt: Format, precision: str, env: dict,
                    opts: ExportOptions, shared: dict, calibration: Calibration) -> Artifact:
    """Export, write and check ``unit`` as ``fmt`` in ``precision``; its manifest record.
    ``shared`` carries what the exporters reuse within one export."""
    started = time.perf_counter()
    nhwc = fmt.channels_last(opts.pte_layout)
    quantized = Precision(precision).quantized
    cal = calibration.env
    batches = (tuple(tuple(cal[n][i:i + 1] for n in unit.input_names)
                     for i in range(len(cal[IMAGE]))) if quantized else ())
    job = ExportJob(unit, tuple(env[n][:1] for n in unit.input_names), precision, opts.fp32_io,
                    nhwc, fmt, shared, batches, calibration.source if quantized else "")
    data, details = fmt.exporter(job)
    path = staging / fmt.file_name(unit.name, precision)
    _refuse_clash([path.name], _names(staging), f"the {fmt.name} artifact")
    path.write_bytes(data)
    forms = _ort_forms(path, fmt, job, env) if fmt.ort_forms and opts.ort_forms else None
    seconds = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    checked = _parity(path, fmt, precision, unit, env, job.io_dtype, nhwc)
    check_seconds = round(time.perf_counter() - started, 2)
    return Artifact(path=path.name, unit=unit.name, format=fmt.name, precision=precision,
                    sha256=mf.sha256_bytes(data), bytes=len(data),
                    inputs=describe(unit.input_names, env, unit, job.io_dtype, nhwc,
                                    inputs=True),
                    outputs=describe(unit.output_names, env, unit, job.io_dtype, nhwc),
                    **details, ort_forms=forms, export_seconds=seconds, parity=checked,
                    check_seconds=check_seconds)


def _ort_forms(path: Path, fmt: Format, job: ExportJob, env: dict) -> list[OrtForm]:
    """ONNX Runtime's optimised graph and ORT format of the artifact, each checked too."""
    from .onnx_export import save_ort_forms

    before = _names(path.parent)
    forms = save_ort_forms(path)
    _refuse_clash([f.name for f in forms.values()], before, f"--ort-forms of {path.name}")
    return [OrtForm(kind, form.name, mf.sha256_path(form), form.stat().st_size,
                    _parity(form, fmt, job.precision, job.unit, env, job.io_dtype, job.nhwc))
            for kind, form in forms.items()]


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _refuse_clash(names: list[str], taken: set[str], what: str) -> None:
    """Two outputs of one export must not share a file name: one would replace the other."""
    if clash := sorted(set(names) & taken):
        raise UserError(f"{', '.join(clash)}: {what} would replace a file this export already "
                        f"wrote; export those formats into separate folders (--out), or drop "
                        f"the option that writes the other file (such as --ort-forms).")


def _parity(path: Path, fmt: Format, precision: str, unit: Unit, env: dict, dtype: str,
            nhwc: bool) -> Parity:
    """Run every sample through the artifact on its host runtime (in the artifact's layouts,
    ``nhwc``: 4-D tensors as (N, H, W, C)); compare with the reference."""
    count = len(env[IMAGE])
    ins = [layout_of(env[n].dim(), nhwc) for n in unit.input_names]
    batches = [[to_layout(as_dtype(env[n][i:i + 1], dtype), lay)
                for n, lay in zip(unit.input_names, ins)] for i in range(count)]
    results, _ = fmt.host_runtime(path, batches, ins)
    outputs = {name: from_layout(np.concatenate([r[j] for r in results]),
                                 layout_of(env[name].dim(), nhwc))
               for j, name in enumerate(unit.output_names)}
    metrics = {name: compare(env[name].numpy(), got, unit.output_kind(name))
               for name, got in outputs.items()}
    return parity(metrics, precision, count, REFERENCE)


def chain_parity(staging: Path, artifacts: list[Artifact], units: list[Unit], env: dict,
                 fmt: str, precision: str, fp32_io: bool) -> Chain:
    """Feed each component artifact the previous ones' outputs; compare the final output."""
    dtype = io_dtype(precision, fp32_io)
    run = fmts.get(fmt).host_runtime
    count = len(env[IMAGE])
    components = [u for u in units if u.name != WHOLE]
    arts = [next(a for a in artifacts if a.unit == unit.name and a.format == fmt
                 and a.precision == precision) for unit in components]
    # The components pass each other tensors in their own layout; only the ends convert.
    produced = {IMAGE: [to_layout(as_dtype(env[IMAGE][i:i + 1], dtype), arts[0].inputs[0].layout)
                        for i in range(count)]}
    for unit, art in zip(components, arts):
        batches = [[produced[n][i] for n in unit.input_names] for i in range(count)]
        results, _ = run(staging / art.path, batches, [t.layout for t in art.inputs])
        for j, name in enumerate(unit.output_names):
            produced[name] = [r[j] for r in results]
    final = components[-1].output_names[0]
    got = from_layout(np.concatenate(produced[final]), arts[-1].outputs[0].layout)
    metrics = {final: compare(env[final].numpy(), got, components[-1].output_kind(final))}
    return Chain(fmt, precision, parity(metrics, precision, count, REFERENCE))
