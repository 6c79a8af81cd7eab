"""``seaformer-deploy export``: model -> folded units -> each format's artifacts -> parity ->
manifest.

What each format does (exporter, host runtime, runtime rewrites) is declared in ``formats``.
Every artifact is run on its host runtime over the sample images and compared with PyTorch FP32
eager on the original (unfolded) model. Artifacts are written into a staging folder that only
replaces the output folder once everything, manifest included, is complete and (unless the gate
is off) every artifact passed.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..errors import OptionError, UserError, option
from ..models import SegmentationModel, create, get_spec
from ..models.registry import build_skeleton, check_num_classes
from ..models.checkpoint import check_checkpoint_file, sha256_file
from ..models.complexity import count_params
from ..models.components import IMAGE
from . import formats as fmts
from . import manifest as mf
from . import int8
from .artifacts import Calibration, chain_parity, export_artifact
from .calibration import image_files, load_images, unit_inputs
from .calibration import source as calibration_source
from .fold import fold_batchnorm
from .precision import Precision
from .records import Artifact, Component, Input, Manifest, Model, Output, Sample, TensorFile
from .sensitivity import check_blocks, check_target, unit_modules
from .layouts import ambiguous
from .guard import InterruptGuard, Progress, check_out_root, removed_if_left_empty
from .rewrites import deploy_form, runtime_form
from .samples import MEAN, SAMPLE_NAMES, STD, sample_batch
from .tensors import describe, write_tensors
from .timings import Stopwatch
from .units import OUTPUT_MODES, WHOLE, build_units, reference_tensors
from .weights import synthetic_model
from .workers import run_jobs, usable_cores

__all__ = ["ExportOptions", "ExportResult", "InterruptGuard", "ParityError", "check",
           "check_out_root", "delegation_warnings", "export"]

PRECISIONS = Precision.names()


def _option(default, *, recorded: bool = False, keyed: bool = False):
    """An export option. ``recorded``: written in the manifest's ``options``; ``keyed``: part
    of the cache key (it changes the artifacts' bytes or their checks)."""
    return field(default=default, metadata={"recorded": recorded, "keyed": keyed})


@dataclass(frozen=True)
class ExportOptions:
    model: str
    checkpoint: Path | None = None        # keyed by its sha256 (with the seed: the weights)
    trust_checkpoint: bool = False
    num_classes: int | None = _option(None, keyed=True)
    input_size: tuple[int, int] | None = None           # keyed as the size it resolves to
    formats: tuple[str, ...] = _option(fmts.export_defaults(), recorded=True, keyed=True)
    precisions: tuple[str, ...] = _option(Precision.defaults(), recorded=True, keyed=True)
    components: bool = _option(True, recorded=True, keyed=True)
    output: str = _option("logits", recorded=True, keyed=True)
    out_root: Path = Path("models")
    parity_gate: bool = _option(True, recorded=True)
    fp32_io: bool = _option(False, recorded=True, keyed=True)
    rewrites: bool = _option(True, recorded=True, keyed=True)
    ort_forms: bool = _option(False, recorded=True, keyed=True)
    pte_layout: str = _option("nhwc", recorded=True, keyed=True)
    seed: int = 0
    samples: int = len(SAMPLE_NAMES)      # keyed by the sample images' hash
    extra_work: int = _option(0, keyed=True)   # identity convs on the logits (gate validation)
    force: bool = False
    jobs: int | None = None               # worker processes (None: one per usable core)
    # INT8 (export/sensitivity.py): blocks left FP32, a label agreement that picks them, the
    # sensitivity report, and a folder of calibration images (keyed by the images' hash).
    # The manifest's ``int8`` records what they chose.
    keep_fp32: tuple[str, ...] = _option((), keyed=True)
    int8_target_agreement: float | None = _option(None, keyed=True)
    int8_report: bool = _option(False, keyed=True)
    calibration: Path | None = None

    def recorded(self) -> dict:
        """The manifest's ``options``: the fields marked ``recorded``, as JSON values."""
        return {f.name: _json(getattr(self, f.name)) for f in fields(self)
                if f.metadata.get("recorded")}

    def keyed(self) -> dict:
        """The fields marked ``keyed``; the order of formats and precisions does not count."""
        return {f.name: sorted(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self) if f.metadata.get("keyed")}

    def folder(self, size: tuple[int, int]) -> Path:
        """One folder per set of artifacts a user keeps side by side: the non-default forms
        get a suffix, so exporting one never replaces the other."""
        naive = "" if self.rewrites else "_naive"
        nchw = "_nchw" if self.pte_layout == "nchw" and any(
            fmts.get(f).layout_option for f in self.formats) else ""
        extra = f"_extra{self.extra_work}" if self.extra_work else ""
        return (self.out_root / f"{get_spec(self.model).name}_{size[0]}x{size[1]}_{self.output}"
                                f"{naive}{nchw}{extra}")


def _json(value):
    return list(value) if isinstance(value, tuple) else value


@dataclass
class ExportResult:
    folder: Path
    manifest: Manifest
    cached: bool
    warnings: list[str] = field(default_factory=list)


class ParityError(UserError):
    """An artifact does not match PyTorch: the export fails and hands nothing over."""

    exit_code = 1

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        bad = [f"{a.path}: {'; '.join(a.parity.failures)}"
               for a in manifest.artifacts if not a.parity.passed]
        bad += [f"{c.format} {c.precision} component chain: {'; '.join(c.parity.failures)}"
                for c in manifest.chains if not c.parity.passed]
        super().__init__("parity gate failed, no artifact was written:\n  " + "\n  ".join(bad)
                         + "\n(--no-parity-gate writes them anyway, marked as failed)")


def export(opts: ExportOptions, progress: Progress | None = None) -> ExportResult:
    """Export ``opts.model`` as configured; reuse the previous export when nothing changed.

    Bad options, sizes, checkpoint paths and output roots fail before any work. A Ctrl-C stops
    the export at once and leaves nothing behind: no export folder, no staging folder, and no
    output root that the export created."""
    size = check(opts)
    spec = get_spec(opts.model)
    images = sample_batch(*size, count=opts.samples)
    cal_images = (load_images(image_files(Path(opts.calibration)), size)
                  if opts.calibration is not None else None)
    folder = opts.folder(size)
    key = mf.cache_key(_identity(opts, size, images, cal_images))
    if not opts.force:
        cached = mf.load(folder)
        if cached and cached.cache_key == key and mf.artifacts_intact(folder, cached):
            if opts.parity_gate and not cached.parity_passed:
                raise ParityError(cached)
            return ExportResult(folder, cached, cached=True)
    with InterruptGuard() as interrupts, removed_if_left_empty(opts.out_root):
        started = time.perf_counter()
        watch = Stopwatch()
        with watch.step("weights"):
            model, weights = _load(opts, spec.name, images)
        with mf.StagingDir(folder) as staging:
            manifest = _export_into(staging.path, model, weights, opts, size, images, key,
                                    interrupts.checked(progress), cal_images, watch)
            manifest.export_seconds = round(time.perf_counter() - started, 2)
            mf.write(staging.path, manifest)
            if opts.parity_gate and not manifest.parity_passed:
                raise ParityError(manifest)
            interrupts.commit(staging)
    return ExportResult(folder, manifest, cached=False,
                        warnings=delegation_warnings(manifest) + layout_warnings(manifest)
                        + int8.target_warnings(manifest))


def check(opts: ExportOptions) -> tuple[int, int]:
    """Every check that needs no work: the options, the input size (returned), the checkpoint's
    path and the output root. ``export`` starts with it; the CLI runs it first, too."""
    _check_options(opts)
    probe = build_skeleton(get_spec(opts.model).name)
    size = opts.input_size or probe.default_input_size
    probe.check_input_size(*size)
    check_blocks(probe, opts.keep_fp32)
    check_out_root(opts.out_root, opts.folder(size))
    return size


def _check_options(opts: ExportOptions) -> None:
    spec = get_spec(opts.model)
    if spec.task != "segmentation":
        raise UserError(f"{spec.name} is a classifier; export takes segmentation models "
                        f"(e.g. {spec.name.removesuffix('-cls')}).")
    for values, allowed, field in ((opts.formats, fmts.names(), "formats"),
                                   (opts.precisions, PRECISIONS, "precisions")):
        flag = option(field)
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            got = f"{', '.join(bad)} is not one of them" if bad else "got nothing"
            raise OptionError(f"{flag} takes a comma-separated subset of {', '.join(allowed)}; "
                            f"{got} (e.g. {flag} {','.join(allowed)}).")
    if opts.pte_layout not in ("nchw", "nhwc"):
        raise OptionError(f"{option('pte_layout')} takes nchw or nhwc, got {opts.pte_layout!r}.")
    if opts.output not in OUTPUT_MODES:
        raise OptionError(f"{option('output')} takes {' or '.join(OUTPUT_MODES)}, got {opts.output!r}.")
    if opts.extra_work < 0:
        raise OptionError(f"{option('extra_work')} takes a count >= 0, got {opts.extra_work}.")
    if opts.jobs is not None and opts.jobs < 1:
        raise OptionError(f"{option('jobs')} takes a count >= 1, got {opts.jobs}.")
    if not 1 <= opts.samples <= len(SAMPLE_NAMES):
        raise OptionError(f"{option('samples')} takes 1..{len(SAMPLE_NAMES)}, got {opts.samples}.")
    if not 0 <= opts.seed < 2**63:
        raise OptionError(f"{option('seed')} takes an integer from 0 to 2**63 - 1, got {opts.seed}.")
    _check_int8_options(opts)
    check_num_classes(opts.num_classes)
    if opts.checkpoint is not None:     # its sha256 goes into the cache key: check it first
        check_checkpoint_file(Path(opts.checkpoint))


def _check_int8_options(opts: ExportOptions) -> None:
    given = [f for f in ("keep_fp32", "int8_target_agreement", "int8_report", "calibration")
             if getattr(opts, f) not in ((), None, False)]
    if given and Precision.INT8.value not in opts.precisions:
        raise OptionError(f"{option(given[0])} applies to INT8 artifacts, and none is exported; "
                          f"add int8 to {option('precisions')} (e.g. {option('precisions')} "
                          f"fp32,int8).", field=given[0])
    check_target(opts.int8_target_agreement)
    if opts.calibration is not None:
        image_files(Path(opts.calibration))


def _identity(opts: ExportOptions, size: tuple[int, int], images: torch.Tensor,
              cal_images: torch.Tensor | None) -> dict:
    """Everything the artifacts' bytes and checks depend on: the cache key's input."""
    weights = (f"checkpoint:{sha256_file(opts.checkpoint)}" if opts.checkpoint is not None
               else f"synthetic:seed={opts.seed}")
    calibration = (mf.sha256_bytes(cal_images.numpy().tobytes()) if cal_images is not None
                   else "samples")
    return {"model": get_spec(opts.model).name, "weights": weights, "size": list(size),
            **opts.keyed(), "samples": mf.sha256_bytes(images.numpy().tobytes()),
            "calibration": calibration, "tools": mf.tool_versions()}


def _load(opts: ExportOptions, name: str, images: torch.Tensor) -> tuple[SegmentationModel, dict]:
    if opts.checkpoint is not None:
        model = create(name, opts.num_classes, opts.checkpoint, opts.trust_checkpoint)
        ckpt = model.checkpoint
        return model, {"source": "checkpoint", "path": str(ckpt.path), "sha256": ckpt.sha256,
                       "entry": ckpt.source_key}
    size = tuple(images.shape[-2:])
    model = synthetic_model(name, size, seed=opts.seed, num_classes=opts.num_classes)
    return model, {"source": "synthetic", "seed": opts.seed,
                   "bn_calibration": "seeded weights; BatchNorm statistics from a train-mode "
                                     "pass over the sample images and their mirror images; "
                                     "nearest-prototype classifier (see export/weights.py)"}


def _export_into(staging: Path, model: SegmentationModel, weights: dict, opts: ExportOptions,
                 size: tuple[int, int], images: torch.Tensor, key: str,
                 progress: Progress | None, cal_images: torch.Tensor | None,
                 watch: Stopwatch) -> Manifest:
    with watch.step("reference tensors"):
        env = reference_tensors(model, images, opts.output, size)
        tensors = _write_tensors(staging, env, opts)
    with watch.step("deploy form"):
        deploy = fold_batchnorm(model)
        applied = deploy_form(deploy, images[:1]) if opts.rewrites else []
    with watch.step("INT8 plan"):
        cal = Calibration(env if cal_images is None else
                          unit_inputs(model, cal_images, opts.output, size),
                          calibration_source(opts.calibration,
                                             len(images if cal_images is None else cal_images)))
        plan = int8.plan(staging, deploy, opts, images, cal, size, progress)
    with watch.step("runtime forms, units"):
        per_format = {}            # format -> (its units, the rewrites for its runtime only)
        for fmt in opts.formats:
            form = copy.deepcopy(deploy)
            extra = runtime_form(form, images[:1], fmt) if opts.rewrites else []
            units = build_units(form, opts.output, size, opts.components, opts.extra_work)
            if plan:
                units = [replace(u, fp32_modules=unit_modules(form, u.module, plan.fp32_blocks))
                         for u in units]
            per_format[fmt] = (units, extra)
    units = per_format[opts.formats[0]][0]          # names and shapes agree across formats
    jobs = [(u, f, p) for f in opts.formats for u in per_format[f][0] for p in opts.precisions]
    workers = opts.jobs or usable_cores()
    with watch.step("artifacts"):
        artifacts = _export_jobs(staging, jobs, env, opts, progress, cal, workers)
    chains = []
    if opts.components:
        if progress:
            progress("component chains", len(jobs), len(jobs))
        with watch.step("component chains"):
            chains = [chain_parity(staging, artifacts, units, env, f, p, opts.fp32_io)
                      for f in opts.formats for p in opts.precisions]
    spec = get_spec(opts.model)
    ckpt = getattr(model, "checkpoint", None)
    manifest = Manifest(
        schema=mf.SCHEMA_NAME, schema_version=mf.SCHEMA_VERSION,
        model=Model(spec.name, spec.family, spec.variant, model.num_classes,
                    count_params(model), ckpt.class_names if ckpt else None),
        weights=weights,
        deploy_form={"batchnorm_folded": True, "rewrites": [asdict(a) for a in applied],
                     "runtime_rewrites": {fmt: [asdict(a) for a in extra]
                                          for fmt, (_, extra) in per_format.items()},
                     "extra_work": opts.extra_work},
        input=Input(IMAGE, list(size), "NCHW", "float32",
                    {"color": "RGB", "mean": list(MEAN), "std": list(STD)}),
        output=Output(opts.output, units[0].output_names[0]),
        samples=[Sample(n, mf.sha256_bytes(images[i].numpy().tobytes()))
                 for i, n in enumerate(SAMPLE_NAMES[:len(images)])],
        components=[Component(u.name, describe(u.input_names, env, u, "float32"),
                              describe(u.output_names, env, u, "float32"))
                    for u in units if u.name != WHOLE],
        options=opts.recorded(), tools=mf.tool_versions(), cache_key=key,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=mf.command_line(), tensors=tensors, artifacts=artifacts, chains=chains,
        parity_passed=False, export_seconds=0.0, int8=plan,
        timings=watch.record(artifacts, workers))
    manifest.parity_passed = all(check.passed for check in manifest.checks())
    return manifest


def _export_jobs(staging: Path, jobs: list[tuple], env: dict, opts: ExportOptions,
                 progress: Progress | None, cal: Calibration, workers: int) -> list[Artifact]:
    """Every (unit, format, precision) job's artifact, in the order of ``jobs``. The precisions
    of one unit and format run in one worker process (FP16 ONNX converts the FP32 graph), and
    with --ort-forms all of a unit's jobs (so the check that no two outputs share a name sees
    them in order); the groups run side by side (export/workers.py)."""
    shared: dict = {}                  # what the exporters reuse within one group's jobs
    grouped: dict[tuple, list[int]] = {}
    for i, (unit, fmt, _) in enumerate(jobs):
        grouped.setdefault((unit.name, None if opts.ort_forms else fmt), []).append(i)
    order = [i for indices in grouped.values() for i in indices]
    groups = [[(f"{jobs[i][0].name} {jobs[i][1]} {jobs[i][2]}", jobs[i]) for i in indices]
              for indices in grouped.values()]
    # A group's cost: its job count times its unit's module count (the size of what is traced).
    costs = [len(indices) * sum(1 for _ in jobs[indices[0]][0].module.modules())
             for indices in grouped.values()]

    def run(job: tuple) -> Artifact:
        unit, fmt, precision = job
        return export_artifact(staging, unit, fmts.get(fmt), precision, env, opts, shared, cal)

    done = run_jobs(groups, run, workers, progress, costs)
    artifacts: list[Artifact] = [None] * len(jobs)
    for i, artifact in zip(order, done):
        artifacts[i] = artifact
    return artifacts


def _write_tensors(staging: Path, env: dict, opts: ExportOptions) -> list[TensorFile]:
    """The tensor files every selected artifact reads or is checked against."""
    fp16_io = "fp16" in opts.precisions and not opts.fp32_io
    nhwc = any(fmts.get(f).channels_last(opts.pte_layout) for f in opts.formats)
    return write_tensors(staging, env, {"float32", "float16"} if fp16_io else {"float32"}, nhwc)


def delegation_warnings(manifest: Manifest) -> list[str]:
    """Compute operators an XNNPACK artifact leaves to ExecuTorch's portable kernels."""
    found = []
    for art in manifest.artifacts:
        ops = art.non_delegated_ops()
        compute = {op: n for op, n in ops.items() if not _is_data_movement(op)}
        if compute:
            listed = ", ".join(f"{op} x{n}" for op, n in compute.items())
            found.append(f"{art.path}: outside the XNNPACK delegate: {listed}")
    return found


def layout_warnings(manifest: Manifest) -> list[str]:
    """NHWC tensors with C == H == W: their shape is the same in NCHW, so a tensor passed in
    the wrong layout is not caught by the program's shape check."""
    users: dict[tuple[str, tuple[int, ...]], list[str]] = {}
    for art in manifest.artifacts:
        for t in art.inputs + art.outputs:
            if t.layout and ambiguous(t.shape, t.layout):
                users.setdefault((t.name, tuple(t.shape)), []).append(art.path)
    return [f"{name} {list(shape)} has the same shape in NHWC and NCHW, so a tensor in the "
            f"wrong layout is not rejected ({', '.join(paths)}): pass it as NHWC (transpose "
            f"NCHW by (0, 2, 3, 1)), or pick an input size where C, H and W differ"
            for (name, shape), paths in users.items()]


# Operators that only move, view or convert data; anything else outside the delegate computes.
_DATA_MOVEMENT = ("copy", "view", "permute", "expand", "getitem", "clone", "squeeze", "cat",
                  "slice", "select", "alloc")


def _is_data_movement(op: str) -> bool:
    return any(word in op for word in _DATA_MOVEMENT)
