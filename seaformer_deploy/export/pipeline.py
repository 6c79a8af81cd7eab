"""``seaformer-deploy export``: model -> folded units -> ONNX / .pte -> parity -> manifest.

Every artifact is run on its host runtime over the sample images and compared with PyTorch FP32
eager on the original (unfolded) model. Artifacts are written into a staging folder that only
replaces the output folder once everything, manifest included, is complete and (unless the gate
is off) every artifact passed.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..paths import check_writable_folder
from ..models import SegmentationModel, create, get_spec
from ..models.registry import build_skeleton, check_num_classes
from ..models.checkpoint import check_checkpoint_file, sha256_file
from ..models.complexity import count_params
from ..models.components import IMAGE
from . import manifest as mf
from . import onnx_export, pte_export
from .fold import fold_batchnorm
from .parity import THRESHOLDS, Metrics, compare, failures, worst
from .rewrites import deploy_form, runtime_form
from .runtimes import RUNNERS
from .samples import MEAN, SAMPLE_NAMES, STD, sample_batch
from .units import OUTPUT_MODES, WHOLE, Unit, build_units, reference_tensors
from .weights import synthetic_model

FORMATS = ("onnx", "pte")
PRECISIONS = ("fp32", "fp16")
REFERENCE = "PyTorch FP32 eager, original model (BatchNorm not folded)"
TENSORS = "tensors"


@dataclass(frozen=True)
class ExportOptions:
    model: str
    checkpoint: Path | None = None
    trust_checkpoint: bool = False
    num_classes: int | None = None
    input_size: tuple[int, int] | None = None
    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = PRECISIONS
    components: bool = True
    output: str = "logits"
    out_root: Path = Path("models")
    parity_gate: bool = True
    fp32_io: bool = False
    rewrites: bool = True
    ort_forms: bool = False
    pte_layout: str = "nhwc"
    seed: int = 0
    samples: int = len(SAMPLE_NAMES)
    extra_work: int = 0            # identity convolutions on the logits (gate validation only)
    force: bool = False

    def folder(self, size: tuple[int, int]) -> Path:
        naive = "" if self.rewrites else "_naive"
        extra = f"_extra{self.extra_work}" if self.extra_work else ""
        return (self.out_root / f"{get_spec(self.model).name}_{size[0]}x{size[1]}_{self.output}"
                                f"{naive}{extra}")


@dataclass
class ExportResult:
    folder: Path
    manifest: dict
    cached: bool
    warnings: list[str] = field(default_factory=list)


class ParityError(UserError):
    """An artifact does not match PyTorch: the export fails and hands nothing over."""

    exit_code = 1

    def __init__(self, manifest: dict) -> None:
        self.manifest = manifest
        bad = [f"{a['path']}: {'; '.join(a['parity']['failures'])}"
               for a in manifest["artifacts"] if not a["parity"]["passed"]]
        bad += [f"{c['format']} {c['precision']} component chain: "
                f"{'; '.join(c['parity']['failures'])}"
                for c in manifest["chains"] if not c["parity"]["passed"]]
        super().__init__("parity gate failed, no artifact was written:\n  " + "\n  ".join(bad)
                         + "\n(--no-parity-gate writes them anyway, marked as failed)")


Progress = Callable[[str, int, int], None]


def export(opts: ExportOptions, progress: Progress | None = None) -> ExportResult:
    """Export ``opts.model`` as configured; reuse the previous export when nothing changed.

    Bad options, sizes, checkpoint paths and output roots fail before any work. A Ctrl-C stops
    the export at once and leaves nothing behind: no export folder, no staging folder, and no
    output root that the export created."""
    size = check(opts)
    spec = get_spec(opts.model)
    images = sample_batch(*size, count=opts.samples)
    folder = opts.folder(size)
    key = mf.cache_key(_identity(opts, size, images))
    if not opts.force:
        cached = mf.load(folder)
        if cached and cached["cache_key"] == key and mf.artifacts_intact(folder, cached):
            if opts.parity_gate and not cached["parity_passed"]:
                raise ParityError(cached)
            return ExportResult(folder, cached, cached=True)
    with InterruptGuard() as interrupts, _removed_if_left_empty(opts.out_root):
        started = time.perf_counter()
        model, weights = _load(opts, spec.name, images)
        with mf.StagingDir(folder) as staging:
            manifest = _export_into(staging.path, model, weights, opts, size, images, key,
                                    interrupts.checked(progress))
            manifest["export_seconds"] = round(time.perf_counter() - started, 2)
            mf.validate(manifest)
            mf.write_json(staging.path / mf.MANIFEST, manifest)
            if opts.parity_gate and not manifest["parity_passed"]:
                raise ParityError(manifest)
            interrupts.commit(staging)
    return ExportResult(folder, manifest, cached=False, warnings=delegation_warnings(manifest))


def check(opts: ExportOptions) -> tuple[int, int]:
    """Every check that needs no work: the options, the input size (returned), the checkpoint's
    path and the output root. ``export`` starts with it; the CLI runs it first, too."""
    _check_options(opts)
    probe = build_skeleton(get_spec(opts.model).name)
    size = opts.input_size or probe.default_input_size
    probe.check_input_size(*size)
    check_out_root(opts.out_root, opts.folder(size))
    return size


def check_out_root(root: Path, folder: Path) -> None:
    """Refuse an output root that cannot take the export, without creating anything."""
    check_writable_folder(root, "--out")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, where the export folder would go: move it away "
                        f"or pass another --out.")


@contextlib.contextmanager
def _removed_if_left_empty(root: Path) -> Iterator[None]:
    """An export that fails or is interrupted removes the output root (and the parents) it
    created, if they are still empty: nothing was written, so nothing is left."""
    created = [p for p in (root, *root.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for path in created:            # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


class InterruptGuard:
    """Makes the first Ctrl-C stop the export, whatever the libraries in between do with it.

    Tracing and lowering code catches exceptions broadly, and a KeyboardInterrupt that lands in
    it can come out as another exception or not at all (see ``onnx_export.capture``). The guard
    remembers the interrupt: any exception raised after it, a step that starts after it and the
    final commit all turn it back into a KeyboardInterrupt. Installed only over the default
    handler, in the main thread; elsewhere it checks nothing and changes nothing.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self.committed = False          # the export is in place: an interrupt stops nothing
        self._holding = False           # during the commit: note an interrupt, raise nothing
        self._previous: object = None

    def __enter__(self) -> InterruptGuard:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.interrupted = True
        if not (self._holding or self.committed):
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.interrupted and not self.committed:
            raise KeyboardInterrupt

    def checked(self, progress: Progress | None) -> Progress:
        """``progress``, checking for a lost interrupt at every step."""
        def report(step: str, done: int, total: int) -> None:
            self.check()
            if progress:
                progress(step, done, total)
        return report

    def commit(self, staging: mf.StagingDir) -> None:
        """Swap the staging folder into place, holding back an interrupt meanwhile: one between
        its two renames would lose the previous export. It comes too late to stop anything,
        so the export completes."""
        self.check()
        self._holding = True
        try:
            staging.commit()
            self.committed = True
        finally:
            self._holding = False

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if self.interrupted and not self.committed and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from exc    # an interrupt turned into an error, or dropped


def _check_options(opts: ExportOptions) -> None:
    spec = get_spec(opts.model)
    if spec.task != "segmentation":
        raise UserError(f"{spec.name} is a classifier; export takes segmentation models "
                        f"(e.g. {spec.name.removesuffix('-cls')}).")
    for values, allowed, flag in ((opts.formats, FORMATS, "--formats"),
                                  (opts.precisions, PRECISIONS, "--precisions")):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            got = f"{', '.join(bad)} is not one of them" if bad else "got nothing"
            raise UserError(f"{flag} takes a comma-separated subset of {', '.join(allowed)}; "
                            f"{got} (e.g. {flag} {','.join(allowed)}).")
    if opts.pte_layout not in ("nchw", "nhwc"):
        raise UserError(f"--pte-layout takes nchw or nhwc, got {opts.pte_layout!r}.")
    if opts.output not in OUTPUT_MODES:
        raise UserError(f"--output takes {' or '.join(OUTPUT_MODES)}, got {opts.output!r}.")
    if opts.extra_work < 0:
        raise UserError(f"--extra-work takes a count >= 0, got {opts.extra_work}.")
    if not 1 <= opts.samples <= len(SAMPLE_NAMES):
        raise UserError(f"--samples takes 1..{len(SAMPLE_NAMES)}, got {opts.samples}.")
    if not 0 <= opts.seed < 2**63:
        raise UserError(f"--seed takes an integer from 0 to 2**63 - 1, got {opts.seed}.")
    check_num_classes(opts.num_classes)
    if opts.checkpoint is not None:     # its sha256 goes into the cache key: check it first
        check_checkpoint_file(Path(opts.checkpoint))


def _identity(opts: ExportOptions, size: tuple[int, int], images: torch.Tensor) -> dict:
    """Everything the artifacts' bytes and checks depend on: the cache key's input."""
    weights = (f"checkpoint:{sha256_file(opts.checkpoint)}" if opts.checkpoint is not None
               else f"synthetic:seed={opts.seed}")
    return {"model": get_spec(opts.model).name, "weights": weights, "size": list(size),
            "num_classes": opts.num_classes, "output": opts.output,
            "formats": sorted(opts.formats), "precisions": sorted(opts.precisions),
            "components": opts.components, "fp32_io": opts.fp32_io, "rewrites": opts.rewrites,
            "ort_forms": opts.ort_forms, "pte_layout": opts.pte_layout,
            "extra_work": opts.extra_work,
            "samples": mf.sha256_bytes(images.numpy().tobytes()), "tools": mf.tool_versions()}


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
                 progress: Progress | None) -> dict:
    env = reference_tensors(model, images, opts.output, size)
    tensors = _write_tensors(staging, env, opts)
    deploy = fold_batchnorm(model)
    applied = deploy_form(deploy, images[:1]) if opts.rewrites else []
    per_format = {}                # format -> (its units, the rewrites for its runtime only)
    for fmt in opts.formats:
        form = copy.deepcopy(deploy)
        extra = runtime_form(form, images[:1], fmt) if opts.rewrites else []
        per_format[fmt] = (build_units(form, opts.output, size, opts.components,
                                       opts.extra_work), extra)
    units = per_format[opts.formats[0]][0]          # names and shapes agree across formats
    jobs = [(u, f, p) for f in opts.formats for u in per_format[f][0] for p in opts.precisions]
    artifacts, fp32_onnx = [], {}
    for done, (unit, fmt, precision) in enumerate(jobs):
        if progress:
            progress(f"{unit.name} {fmt} {precision}", done, len(jobs))
        artifacts.append(_export_artifact(staging, unit, fmt, precision, env, opts, fp32_onnx))
    chains = []
    if opts.components:
        if progress:
            progress("component chains", len(jobs), len(jobs))
        chains = [_chain_parity(staging, artifacts, units, env, f, p, opts)
                  for f in opts.formats for p in opts.precisions]
    checks = [a["parity"] for a in artifacts] + [c["parity"] for c in chains]
    checks += [f["parity"] for a in artifacts for f in a.get("ort_forms", [])]
    passed = all(check["passed"] for check in checks)
    spec = get_spec(opts.model)
    ckpt = getattr(model, "checkpoint", None)
    return {
        "schema": mf.SCHEMA_NAME, "schema_version": mf.SCHEMA_VERSION,
        "model": {"name": spec.name, "family": spec.family, "variant": spec.variant,
                  "num_classes": model.num_classes, "params": count_params(model),
                  "class_names": ckpt.class_names if ckpt else None},
        "weights": weights,
        "deploy_form": {"batchnorm_folded": True, "rewrites": [asdict(a) for a in applied],
                        "runtime_rewrites": {fmt: [asdict(a) for a in extra]
                                             for fmt, (_, extra) in per_format.items()},
                        "extra_work": opts.extra_work},
        "input": {"name": IMAGE, "size": list(size), "layout": "NCHW", "dtype": "float32",
                  "normalization": {"color": "RGB", "mean": list(MEAN), "std": list(STD)}},
        "output": {"mode": opts.output, "name": units[0].output_names[0]},
        "samples": [{"name": n, "sha256": mf.sha256_bytes(images[i].numpy().tobytes())}
                    for i, n in enumerate(SAMPLE_NAMES[:len(images)])],
        "components": [{"name": u.name, "inputs": _tensors(u.input_names, env, u, "float32"),
                        "outputs": _tensors(u.output_names, env, u, "float32")}
                       for u in units if u.name != WHOLE],
        "options": {"formats": list(opts.formats), "precisions": list(opts.precisions),
                    "components": opts.components, "output": opts.output,
                    "fp32_io": opts.fp32_io, "rewrites": opts.rewrites,
                    "ort_forms": opts.ort_forms, "pte_layout": opts.pte_layout,
                    "parity_gate": opts.parity_gate},
        "tools": mf.tool_versions(), "cache_key": key,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": mf.command_line(), "tensors": tensors, "artifacts": artifacts,
        "chains": chains,
        "parity_passed": passed, "export_seconds": 0.0,
    }


NCHW, NHWC = [0, 1, 2, 3], [0, 2, 3, 1]


def _write_tensors(staging: Path, env: dict, opts: ExportOptions) -> list[dict]:
    """Every named tensor of the first sample, as raw little-endian files under ``tensors/``.

    They are the device-side inputs of each artifact (the image, or the true intermediate
    tensors for components) and the references its outputs are checked against on the device.
    Channels-last .pte artifacts get their 4-D inputs in that memory order (``*.nhwc.bin``).
    """
    folder = staging / TENSORS
    folder.mkdir()
    fp16_io = "fp16" in opts.precisions and not opts.fp32_io
    dtypes = {"float32", "float16"} if fp16_io else {"float32"}
    nhwc = "pte" in opts.formats and opts.pte_layout == "nhwc"
    records = []
    for name, tensor in env.items():
        array = tensor[:1].numpy()
        orders = [NCHW, NHWC] if nhwc and array.ndim == 4 else [list(range(array.ndim))]
        for dtype in sorted(dtypes) if array.dtype.kind == "f" else [str(array.dtype)]:
            for order in orders:
                data = np.ascontiguousarray(
                    array.astype(np.dtype(dtype).newbyteorder("<")).transpose(order))
                path = folder / _tensor_file(name, dtype, order)
                path.write_bytes(data.tobytes())
                records.append({"name": name, "dtype": dtype, "shape": list(array.shape),
                                "dim_order": order, "path": f"{TENSORS}/{path.name}",
                                "sha256": mf.sha256_bytes(data.tobytes())})
    return records


def _tensor_file(name: str, dtype: str, order: list[int]) -> str:
    return f"{name}.{dtype}{'.nhwc' if order == NHWC else ''}.bin"


def _io_dtype(precision: str, opts: ExportOptions) -> str:
    return "float16" if precision == "fp16" and not opts.fp32_io else "float32"


def _input_orders(fmt: str, unit: Unit, env: dict, opts: ExportOptions) -> list[list[int]]:
    channels_last = (fmt == "pte" and opts.pte_layout == "nhwc"
                     and not any(_single_pixel(env[n]) for n in (*unit.input_names,
                                                                 *unit.output_names)))
    return [NHWC if channels_last and env[n].dim() == 4 else list(range(env[n].dim()))
            for n in unit.input_names]


def _single_pixel(tensor: torch.Tensor) -> bool:
    """A 4-D tensor with 1x1 spatial size: its NCHW and NHWC strides coincide, and a program
    traced channels-last then disagrees with XNNPACK on that tensor's order (ExecuTorch 1.5.1
    fails to resize the output: SeaFormer's 1/64 context at 64x64). Such units stay NCHW."""
    return tensor.dim() == 4 and tuple(tensor.shape[-2:]) == (1, 1)


def _tensors(names: tuple[str, ...], env: dict, unit: Unit, float_dtype: str,
             orders: list[list[int]] | None = None, inputs: bool = False) -> list[dict]:
    """Descriptors of a unit's tensors; an artifact's also name their files and memory order."""
    out = []
    for i, name in enumerate(names):
        ref = env[name]
        kind = "image" if name == IMAGE else unit.output_kind(name)
        dtype = "int64" if not ref.is_floating_point() else float_dtype
        entry = {"name": name, "shape": [1, *ref.shape[1:]], "dtype": dtype, "kind": kind}
        if orders is not None:       # inputs: the file to feed; outputs: the FP32 reference
            entry["dim_order"] = orders[i]
            file = (_tensor_file(name, dtype, orders[i]) if inputs else
                    _tensor_file(name, "int64" if dtype == "int64" else "float32",
                                 list(range(ref.dim()))))
            entry["file"] = f"{TENSORS}/{file}"
        out.append(entry)
    return out


def _export_artifact(staging: Path, unit: Unit, fmt: str, precision: str, env: dict,
                     opts: ExportOptions, fp32_onnx: dict) -> dict:
    started = time.perf_counter()
    example = [env[n][:1] for n in unit.input_names]
    io_dtype = _io_dtype(precision, opts)
    in_orders = _input_orders(fmt, unit, env, opts)
    if fmt == "onnx":
        if unit.name not in fp32_onnx:
            fp32_onnx[unit.name] = onnx_export.export_onnx(unit, example)
        proto = fp32_onnx[unit.name]
        if precision == "fp16":
            proto = onnx_export.to_fp16(proto, keep_io_fp32=opts.fp32_io)
        data = proto.SerializeToString()
        details = {"onnx": onnx_export.describe(proto),
                   "operators": onnx_export.operator_histogram(proto)}
    else:
        module = unit.module
        if precision == "fp16":
            module = pte_export.half_module(unit.module, keep_io_fp32=opts.fp32_io)
            example = [e.half() if io_dtype == "float16" else e for e in example]
        # The example's memory order becomes the program's: channels-last I/O spares XNNPACK
        # the NCHW <-> NHWC transposes at every graph boundary (camera frames are HWC anyway).
        example = [e.to(memory_format=torch.channels_last) if order == NHWC else e
                   for e, order in zip(example, in_orders, strict=True)]
        data, stats = pte_export.export_pte(module, example)
        details = {"executorch": {"version": pte_export.executorch_version(), **stats},
                   "operators": pte_export.operator_histogram(stats)}
    path = staging / f"{unit.name}.{precision}.{fmt}"
    path.write_bytes(data)
    if fmt == "onnx" and opts.ort_forms:
        details["ort_forms"] = [
            {"kind": kind, "path": form.name, "sha256": mf.sha256_path(form),
             "bytes": form.stat().st_size,
             "parity": _parity(form, "onnx", precision, unit, env, io_dtype, in_orders)[0]}
            for kind, form in onnx_export.save_ort_forms(path).items()]
    seconds = round(time.perf_counter() - started, 2)
    parity, out_orders = _parity(path, fmt, precision, unit, env, io_dtype, in_orders)
    return {"path": path.name, "unit": unit.name, "format": fmt, "precision": precision,
            "sha256": mf.sha256_bytes(data), "bytes": len(data),
            "inputs": _tensors(unit.input_names, env, unit, io_dtype, in_orders, inputs=True),
            "outputs": _tensors(unit.output_names, env, unit, io_dtype, out_orders),
            **details, "export_seconds": seconds, "parity": parity}


def _parity(path: Path, fmt: str, precision: str, unit: Unit, env: dict, io_dtype: str,
            in_orders: list[list[int]]) -> tuple[dict, list[list[int]]]:
    """Run every sample through the artifact on its host runtime; compare with the reference.
    Also returns the memory order of each output, as the runtime produced it."""
    count = len(env[IMAGE])
    batches = [[_as(env[n][i:i + 1], io_dtype) for n in unit.input_names] for i in range(count)]
    results, out_orders = RUNNERS[fmt](path, batches, in_orders)
    outputs = {name: np.concatenate([r[j] for r in results])
               for j, name in enumerate(unit.output_names)}
    metrics = {name: compare(env[name].numpy(), got, unit.output_kind(name))
               for name, got in outputs.items()}
    return _parity_record(metrics, precision, count), out_orders


def _parity_record(metrics: dict[str, Metrics], precision: str, count: int) -> dict:
    summary = worst(list(metrics.values()))
    fails = failures(summary, precision)
    return {"reference": REFERENCE, "samples": count,
            "outputs": {k: m.to_dict() for k, m in metrics.items()},
            "worst": summary.to_dict(), "thresholds": THRESHOLDS[precision],
            "passed": not fails, "failures": fails}


def _as(tensor: torch.Tensor, dtype: str) -> np.ndarray:
    array = tensor.numpy()
    return array.astype(dtype) if array.dtype.kind == "f" else array


def _chain_parity(staging: Path, artifacts: list[dict], units: list[Unit], env: dict, fmt: str,
                  precision: str, opts: ExportOptions) -> dict:
    """Feed each component artifact the previous ones' outputs; compare the final output."""
    io_dtype = _io_dtype(precision, opts)
    count = len(env[IMAGE])
    produced = {IMAGE: [_as(env[IMAGE][i:i + 1], io_dtype) for i in range(count)]}
    components = [u for u in units if u.name != WHOLE]
    for unit in components:
        art = next(a for a in artifacts if a["unit"] == unit.name and a["format"] == fmt
                   and a["precision"] == precision)
        batches = [[produced[n][i] for n in unit.input_names] for i in range(count)]
        orders = [t["dim_order"] for t in art["inputs"]]
        results, _ = RUNNERS[fmt](staging / art["path"], batches, orders)
        for j, name in enumerate(unit.output_names):
            produced[name] = [r[j] for r in results]
    final = components[-1].output_names[0]
    got = np.concatenate(produced[final])
    metrics = {final: compare(env[final].numpy(), got, components[-1].output_kind(final))}
    return {"format": fmt, "precision": precision,
            "parity": _parity_record(metrics, precision, count)}


def delegation_warnings(manifest: dict) -> list[str]:
    """Compute operators an XNNPACK artifact leaves to ExecuTorch's portable kernels."""
    found = []
    for art in manifest["artifacts"]:
        ops = art.get("executorch", {}).get("non_delegated_ops", {})
        compute = {op: n for op, n in ops.items() if not _is_data_movement(op)}
        if compute:
            listed = ", ".join(f"{op} x{n}" for op, n in compute.items())
            found.append(f"{art['path']}: outside the XNNPACK delegate: {listed}")
    return found


# Operators that only move, view or convert data; anything else outside the delegate computes.
_DATA_MOVEMENT = ("copy", "view", "permute", "expand", "getitem", "clone", "squeeze", "cat",
                  "slice", "select", "alloc")


def _is_data_movement(op: str) -> bool:
    return any(word in op for word in _DATA_MOVEMENT)
