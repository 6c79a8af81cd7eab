"""The Python API: what ``seaformer-deploy export``, ``bench``, ``gate``, ``evaluate`` and
``devices`` do, as functions that take keyword arguments and return typed results. The command
line is a skin over these functions: it parses flags into these arguments and prints what they
return.

Keyword arguments are the fields of the library's option dataclasses (``ExportOptions``,
``BenchOptions``, ``GateOptions``, ``EvaluateOptions``), with a few conveniences: a
comma-separated string or any sequence for a tuple field, a string for a path, ``"HxW"`` for an input size, and a mapping for
a nested option (``protocol={"iterations": 20}``). Errors are ``UserError`` whose message names
the keyword argument at fault (``error.field``).

Importing this module is cheap: torch and the runtimes load when a function is called.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OptionError, option

if TYPE_CHECKING:
    from .bench.run import BenchRun
    from .devices.listing import Listing
    from .evaluate.run import Evaluation
    from .export.pipeline import ExportResult
    from .gate.run import GateOutcome
    from .models import ZooModel
    from .reports import Report

Progress = Callable[[str, int, int], None]
DEFAULT_MODEL = "seaformer-t"

__all__ = ["BenchOutcome", "EvaluateOutcome", "bench", "check_artifacts_options",
           "create_model", "devices", "evaluate", "export", "gate", "list_models", "parse_size"]


def export(model: str = DEFAULT_MODEL, *, progress: Progress | None = None,
           **options: Any) -> ExportResult:
    """Export ``model`` to ONNX and ExecuTorch artifacts with a parity gate; reuse the previous
    export of the same model and options.

    Args:
        model: a registered model name (``list_models()``), e.g. ``"seaformer-t"``.
        progress: called as ``progress(step, done, total)`` while it works.
        **options: fields of ``seaformer_deploy.export.pipeline.ExportOptions``: checkpoint,
            trust_checkpoint, num_classes, input_size (``(H, W)`` or ``"HxW"``), formats
            (``("onnx", "pte")``), precisions (``("fp32", "fp16")``), components, output
            (``"logits"`` or ``"labels"``), out_root (default ``models``), parity_gate,
            fp32_io, rewrites, ort_forms, pte_layout (``"nhwc"`` or ``"nchw"``), seed,
            samples, extra_work, force, jobs (worker processes; default one per usable
            core); INT8: calibration (a folder of images), keep_fp32 (blocks left FP32,
            e.g. ``("backbone.smb1",)``), int8_target_agreement (percent), int8_report.

    Returns:
        ExportResult: ``folder`` (the export folder), ``manifest`` (its manifest.json as a
        ``seaformer_deploy.export.records.Manifest``; ``to_dict()`` gives the JSON),
        ``cached`` (nothing was re-exported) and ``warnings``.

    Raises:
        UserError: a bad option, size, checkpoint or output folder, before any work.
        ParityError: an artifact missed the parity thresholds (nothing was written).
    """
    from .export.pipeline import ExportOptions
    from .export.pipeline import export as run_export

    return run_export(build_options(ExportOptions, options, model=model), progress)


@dataclass
class BenchOutcome:
    """What ``bench`` measured and wrote."""

    run: BenchRun                    # the raw measurements, device and protocol
    report: Report                   # the report; ``report.to_dict()`` is its report.json
    folder: Path | None              # where the report was written (None: ``out`` not given)
    export: ExportResult | None      # the export made first (None: ``artifacts`` was given)

    @property
    def exit_code(self) -> int:
        """130 interrupted; 1 when an artifact failed or missed on-device parity; else 0."""
        if self.run.status == "interrupted":
            return 130
        return 1 if self.report.failures or self.report.parity_failures() else 0


def bench(artifacts: str | Path | None = None, *, model: str | None = None,
          checkpoint: str | Path | None = None, input_size: Any = None,
          models_dir: str | Path = "models", out: str | Path | None = None,
          progress: Progress | None = None,
          on_export: Callable[[ExportResult], None] | None = None,
          **options: Any) -> BenchOutcome:
    """Measure an export's artifacts on one pinned core of a device (this machine unless
    ``device`` names a phone), and optionally write the report.

    Args:
        artifacts: an export folder. None: export ``model`` first (cached) under
            ``models_dir`` and measure that.
        model: the model to export when ``artifacts`` is None (default ``seaformer-t``); with
            ``artifacts``, the model it must hold.
        checkpoint: weights for that export (not with ``artifacts``).
        input_size: ``(H, W)`` or ``"HxW"`` of that export; with ``artifacts``, the size it
            must have.
        models_dir: where exports live.
        out: a reports root: the report is written to a new folder in it (inside the device
            lock, so a waiting bench starts after it). None: nothing is written.
        progress: called as ``progress(step, done, total)``; steps start with ``exporting:``
            or ``benchmarking:``.
        on_export: called with the ExportResult once the export is ready, before measuring.
        **options: fields of ``seaformer_deploy.bench.run.BenchOptions``: device (``"local"``,
            an adb serial, ``HOST:PORT`` or ``"adb"``), formats, precisions, core, protocol
            (a ``Protocol`` or a mapping of its fields), blocks, precision, max_seconds,
            metric, counted_iterations, parity, runner (a ``RunnerChoice`` or a mapping),
            transport, runner_timeout, wait_seconds, thermal (a ``ThermalPolicy`` or a
            mapping), lock_freq, cleanup.

    Returns:
        BenchOutcome: ``run``, ``report``, ``folder``, ``export`` and ``exit_code``.

    Raises:
        UserError: a bad option, an export that does not match its manifest, an unreachable
            device, or an unwritable ``out``, before anything is measured.
    """
    from .bench.inputs import check_options
    from .bench.run import BenchOptions
    from .bench.run import bench as run_bench
    from .paths import check_writable_folder
    from .runners.choice import check_runner_choice

    opts = build_options(BenchOptions, options, artifacts=Path(artifacts or models_dir))
    check_runner_choice(opts.runner)
    check_options(opts)                          # before any export or measurement
    if out is not None:
        check_writable_folder(Path(out), option("out"))
    made = None
    if artifacts is None:
        made = export(model or DEFAULT_MODEL, checkpoint=checkpoint, input_size=input_size,
                      out_root=models_dir, progress=_phase(progress, "exporting"))
        opts = replace(opts, artifacts=made.folder)
        if on_export is not None:
            on_export(made)
    else:
        check_artifacts_options(Path(artifacts), model, input_size, checkpoint)
    written: dict = {}
    run = run_bench(opts, _phase(progress, "benchmarking"),
                    finish=lambda run: written.update(_report(run, out)))
    return BenchOutcome(run, written["report"], written["folder"], made)


def _report(run: BenchRun, out: str | Path | None) -> dict:
    from .reports import build, write_report

    report = build(run)
    return {"report": report, "folder": write_report(report, Path(out)) if out else None}


def _phase(progress: Progress | None, phase: str) -> Progress | None:
    if progress is None:
        return None
    return lambda step, done, total: progress(f"{phase}: {step}", done, total)


def check_artifacts_options(artifacts: Path, model: str | None, input_size: Any,
                            checkpoint: str | Path | None) -> None:
    """With ``artifacts``, ``model`` and ``input_size`` must describe that export, and
    ``checkpoint`` (which only an export uses) is refused rather than ignored."""
    from .bench.inputs import check_export_matches
    from .export import manifest as mf
    from .models import get_spec

    if checkpoint is not None:
        raise OptionError(f"{option('checkpoint')} is for the export; with "
                          f"{option('artifacts')} the export is already made: drop one of the "
                          f"two.")
    if model is None and input_size is None:
        return
    name = get_spec(model).name if model else None
    check_export_matches(mf.read(artifacts), artifacts, name, _size(input_size))


def gate(candidate: str | Path | None = None, baseline: str | Path | None = None, *,
         progress: Progress | None = None, **options: Any) -> GateOutcome:
    """Decide whether a candidate is slower than a baseline, one verdict per artifact.

    Two modes. Reports (default): ``candidate`` is a bench report (folder or report.json),
    ``baseline`` another (default: the committed baseline for the candidate's device under
    ``baselines``). A/B (``ab=True``): ``baseline_artifacts`` and ``candidate_artifacts`` are
    export folders, measured now side by side on one core.

    Args:
        candidate: reports mode: the candidate report.
        baseline: reports mode: the baseline report (None: the committed one).
        progress: called as ``progress(step, done, total)`` during an A/B run.
        **options: fields of ``seaformer_deploy.gate.run.GateOptions``: ab,
            baseline_artifacts, candidate_artifacts, device, formats, precisions, units,
            min_effect (default 0.05 = 5 % of latency, 0.005 of instructions), alpha, metric
            (A/B: latency or instructions), unstable_is_failure, core, blocks, rounds,
            iterations (instructions: counted per artifact), warmup_iterations, runner,
            wait_seconds, out (a folder for the verdict
            folders; None: nothing is written), json_out, baselines.

    Returns:
        GateOutcome: ``result`` (a GateResult: rows with verdicts, notes), ``folder`` (where
        verdict.json went, or None) and ``exit_code`` (0 pass, 1 regression, 2 incomparable,
        3 unstable).

    Raises:
        UserError: options of the other mode, missing or unreadable reports or exports.
    """
    from .gate.run import GateOptions, run_gate

    fixed = {"candidate": candidate, "baseline": baseline}
    return run_gate(build_options(GateOptions, options, **fixed), progress)


@dataclass
class EvaluateOutcome:
    """What ``evaluate`` measured and wrote."""

    evaluation: Evaluation           # the confusion matrices, dataset, reference, options
    document: dict                   # evaluation.json's content
    folder: Path                     # where evaluation.json, .md and the plots were written


def evaluate(artifacts: str | Path, *, progress: Progress | None = None,
             **options: Any) -> EvaluateOutcome:
    """Task accuracy of an export's whole-model artifacts and of PyTorch FP32 on a dataset:
    mIoU, per-class IoU, pixel accuracy and confusion matrices (against the labels, and
    against PyTorch FP32's own labels), written as evaluation.json, evaluation.md and PNGs.

    Args:
        artifacts: an export folder (made by ``export``).
        progress: called as ``progress(step, done, total)`` while it works.
        **options: fields of ``seaformer_deploy.evaluate.run.EvaluateOptions``: data (an
            ADE20K or Cityscapes folder), images and labels (plain pairs matched by file
            stem; images alone: only the agreement with FP32), reduce_zero_label (pairs:
            label 0 ignored, the rest minus one, as ADE20K), artifact (shell patterns over
            the artifacts' file names, default ``("model.*",)``), checkpoint (the export's
            weights, default its recorded path), trust_checkpoint, limit (the first N
            images), out (default ``evaluations/<export folder name>``).

    Returns:
        EvaluateOutcome: ``evaluation`` (``results``: one per model with its confusion
        matrices), ``document`` (evaluation.json as a dict) and ``folder``.

    Raises:
        UserError: a bad option, an export that does not match its manifest, a dataset in no
            known layout, an image without its label, a label of the wrong size or with
            classes out of range, weights that do not reproduce the export; all before any
            model runs, and nothing is written.
    """
    from .evaluate import output
    from .evaluate.run import EvaluateOptions
    from .evaluate.run import evaluate as run_evaluate
    from .paths import check_writable_folder

    opts = build_options(EvaluateOptions, options, artifacts=Path(artifacts))
    folder = Path(opts.out) if opts.out is not None else output.default_folder(opts.artifacts)
    check_writable_folder(folder, option("out"))
    output.check_replaceable(folder)
    result = run_evaluate(opts, progress)
    doc = output.document(result)
    return EvaluateOutcome(result, doc, output.write(result, doc, folder))


def devices(direct: Sequence[str] = (), profiles: str | Path | None = None) -> Listing:
    """The phones within reach: the adb server's (never started here) and ``direct``, each
    probed and checked against the device profiles.

    Args:
        direct: serials or ``HOST:PORT`` to reach directly (adb-shell, no adb server).
        profiles: a folder of device profiles (default: the repository's devices/).

    Returns:
        Listing: ``server`` (address, running, version) and ``devices``, one record each:
        serial, state, model, SoC, clusters, the core a bench pins, temperatures, free space,
        the matching profile and its mismatches, or ``error`` / ``hint``.

    Raises:
        UserError: an unreadable profiles folder. A device that cannot be probed is not an
        error: its record says why (``Listing.failed``).
    """
    from .devices.listing import survey

    return survey(list(direct), Path(profiles) if profiles is not None else None)


def create_model(name: str = DEFAULT_MODEL, *, num_classes: int | None = None,
                 checkpoint: str | Path | None = None,
                 trust_checkpoint: bool = False) -> ZooModel:
    """Build a registered model in eval mode, loading an official checkpoint strictly.

    Args:
        name: a registered model name (``list_models()``).
        num_classes: default: the checkpoint's, else the model's (150 / 1000).
        checkpoint: an mmseg or timm checkpoint file.
        trust_checkpoint: unpickle it with full privileges (only for files you trust).

    Returns:
        ZooModel: a ``torch.nn.Module``; segmenters also have ``components()``.

    Raises:
        UserError: an unknown name, a bad class count, a checkpoint that does not fit.
    """
    from .models import create

    return create(name, num_classes, checkpoint, trust_checkpoint)


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Registered model names.

    Args:
        pattern: a shell-style filter, e.g. ``"seaformer-*++"``.
        task: ``"segmentation"`` or ``"classification"`` (default: both).

    Returns:
        list[str]: the names, in registry order.
    """
    from .models import model_names

    return [name for name in model_names(task) if fnmatch(name, pattern)]


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"512x512"``, ``"512x1024"`` or ``"512"`` as (height, width); None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX*,]\s*(\d+))?\s*", text)
    if not match:
        raise OptionError(f"{option('input_size')} {text!r} is not HEIGHTxWIDTH (e.g. 512x512 "
                          f"or 512x1024).")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


def _size(value: Any) -> tuple[int, int] | None:
    if value is None or isinstance(value, str):
        return parse_size(value)
    if isinstance(value, int):
        return value, value
    return tuple(value)


def build_options(cls: type, given: Mapping[str, Any], **fixed: Any) -> Any:
    """``cls(**given, **fixed)`` with the conveniences of this module; an unknown keyword is an
    error that lists the ones there are."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in given:
        if name not in fields or name in fixed:
            known = ", ".join(f for f in fields if f not in fixed)
            raise OptionError(f"{option(name)} is not an option here; the options are "
                              f"{known}.", field=name)
    values = {name: _coerce(fields[name], value) for name, value in {**given, **fixed}.items()}
    return cls(**values)


def _coerce(spec: dataclasses.Field, value: Any) -> Any:
    kind = str(spec.type)
    if spec.name == "input_size":
        return _size(value)
    if isinstance(value, Mapping) and dataclasses.is_dataclass(spec.default):
        return build_options(type(spec.default), value)
    if "tuple" in kind and isinstance(value, str):
        return tuple(dict.fromkeys(v.strip().lower() for v in value.split(",") if v.strip()))
    if "tuple" in kind and isinstance(value, Sequence):
        return tuple(value)
    if "Path" in kind and isinstance(value, str):
        return Path(value)
    return value
