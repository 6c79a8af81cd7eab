"""Artifact formats: one registry of what each format is, and what every stage does with it.

A format declares its file suffix, its exporter, the host runtime that checks its parity, the
bench runner that times it (and so the devices that run it), its memory order, the runtime-only
rewrites its copy of the model gets, its ExecuTorch partitioners and where it sorts in tables.
Export, parity, rewrites, bench, gate and the devices read these declarations instead of
branching on a format's name, so registering a format (``register``) is all it takes for its
artifacts to be exported, checked and benched.

The registry is cheap to read: exporters and runtimes import torch, ONNX or ExecuTorch only when
they run (``_lazy``), so the devices and the CLI's help can consult it without them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from .precision import Precision

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .units import Unit

Orders = list[list[int]]
# (artifact, one input list per sample in the artifact's layout, each input's layout) ->
# (outputs per sample in the artifact's layout, their dim orders): runs an artifact on this
# machine for the parity gate (see export/runtimes.py and export/layouts.py).
HostRuntime = Callable[[Path, Sequence[Sequence["np.ndarray"]], "Sequence[str] | None"],
                       tuple[list[list["np.ndarray"]], Orders]]
# One artifact: its bytes, and its manifest record's format fields (records.Artifact: operators
# and the format's own block, onnx, executorch or ort; any other key is an error).
Exporter = Callable[["ExportJob"], tuple[bytes, dict]]


class FormatError(UserError):
    """A format name nobody registered."""


class RunnerKind(Enum):
    """The bench runner that times a format's artifacts: which device kinds it runs on, and
    whether it is started once with ``--version`` before any timing (runners/session.py)."""

    NATIVE = ("native", ("local", "adb"), True)          # the C++ ExecuTorch runner
    ONNXRUNTIME = ("onnxruntime", ("local",), False)     # runners/onnx_runner.py, this Python

    def __init__(self, label: str, devices: tuple[str, ...], check_start: bool) -> None:
        self.label = label
        self.devices = devices
        self.check_start = check_start


@dataclass(frozen=True)
class Format:
    name: str                           # in --formats, the manifest and the reports
    suffix: str                         # artifacts are {unit}.{precision}{suffix}
    title: str                          # what it is, for help texts
    exporter: Exporter
    host_runtime: HostRuntime
    runner: RunnerKind
    rank: int                           # order in bench blocks, reports and gate tables
    default: bool = False               # exported and benched when no formats are given
    layout_option: bool = False         # follows ExportOptions.pte_layout; else always NCHW
    runtime_rewrites: tuple[str, ...] = ()   # names in rewrites.RUNTIME_REPLACEMENTS/FUSIONS
    partitioners: tuple[str, ...] = ()  # ExecuTorch backends, in order (pte_export.BACKENDS)
    ort_forms: bool = False             # ExportOptions.ort_forms adds ONNX Runtime's forms

    @property
    def devices(self) -> tuple[str, ...]:
        """Device kinds (``Device.kind``) whose bench can run these artifacts."""
        return self.runner.devices

    @property
    def check_start(self) -> bool:
        return self.runner.check_start

    def file_name(self, unit: str, precision: str) -> str:
        return f"{unit}.{precision}{self.suffix}"

    def channels_last(self, pte_layout: str) -> bool:
        """Whether the artifacts take and return 4-D tensors as (N, H, W, C) under this layout
        option (see export/layouts.py)."""
        return self.layout_option and pte_layout == "nhwc"


@dataclass(frozen=True)
class ExportJob:
    """One artifact to export: what a format's exporter is given."""

    unit: Unit
    example: tuple[torch.Tensor, ...]   # the unit's FP32 inputs (first sample), NCHW-contiguous
    precision: str                      # fp32, fp16 or int8
    fp32_io: bool                       # an FP16 artifact keeps FP32 inputs and outputs
    nhwc: bool                          # 4-D inputs and outputs as (N, H, W, C)
    fmt: Format
    shared: dict = field(default_factory=dict, compare=False)   # reused across one export
    # INT8: the unit's FP32 inputs for every calibration sample (NCHW), one tuple per sample.
    calibration: tuple[tuple[torch.Tensor, ...], ...] = field(default=(), compare=False)
    calibration_source: str = ""        # the manifest's words for where it came from

    @property
    def io_dtype(self) -> str:
        return io_dtype(self.precision, self.fp32_io)


def io_dtype(precision: str, fp32_io: bool) -> str:
    """The dtype of an artifact's floating inputs and outputs."""
    return Precision(precision).io_dtype(fp32_io)


_REGISTRY: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add ``fmt``; its name and suffix must be new (a suffix names a file's format)."""
    clash = [f.name for f in _REGISTRY.values() if fmt.name == f.name or fmt.suffix == f.suffix]
    if clash:
        raise ValueError(f"format {fmt.name!r} ({fmt.suffix}) clashes with the registered "
                         f"{', '.join(clash)}")
    _REGISTRY[fmt.name] = fmt
    return fmt


def unregister(name: str) -> None:
    get(name)
    del _REGISTRY[name]


def get(name: str) -> Format:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FormatError(f"unknown format {name!r}: the registered formats are "
                          f"{', '.join(names())}.") from None


def of_path(path: str) -> Format | None:
    """The format whose suffix ``path`` ends with (None: no registered format's)."""
    found = [f for f in _REGISTRY.values() if path.endswith(f.suffix)]
    return max(found, key=lambda f: len(f.suffix), default=None)


def names() -> tuple[str, ...]:
    """Every registered format, in registration order."""
    return tuple(_REGISTRY)


def by_rank(selected: Sequence[str] | set[str] | None = None) -> tuple[str, ...]:
    """``selected`` (default: every format) in table order; unknown names go last."""
    return tuple(sorted(names() if selected is None else selected, key=lambda n: (rank(n), n)))


def rank(name: str) -> int:
    fmt = _REGISTRY.get(name)
    return fmt.rank if fmt else max((f.rank for f in _REGISTRY.values()), default=0) + 1


def export_defaults() -> tuple[str, ...]:
    return tuple(f.name for f in _REGISTRY.values() if f.default)


def bench_defaults() -> tuple[str, ...]:
    return by_rank(export_defaults())


def runnable_on(device_kind: str) -> tuple[str, ...]:
    """The formats whose bench runner runs on devices of ``device_kind``, in table order."""
    return by_rank({f.name for f in _REGISTRY.values() if device_kind in f.devices})


def with_format_enum(schema: dict) -> dict:
    """``schema`` with its ``$defs/format`` listing the registered formats: the JSON schemas
    refer to that definition instead of naming formats themselves."""
    schema["$defs"]["format"] = {**schema["$defs"]["format"], "enum": list(names())}
    return schema


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """``module.name`` (``module`` relative to this package), imported when first called and
    looked up at every call, as a direct reference would be."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module, __package__), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


ONNX = register(Format(
    name="onnx", suffix=".onnx", title="ONNX graph, opset 18 (ONNX Runtime)",
    exporter=_lazy(".onnx_export", "export_artifact"),
    host_runtime=_lazy(".runtimes", "run_onnx"), runner=RunnerKind.ONNXRUNTIME, rank=1,
    default=True, runtime_rewrites=("matmul_upsampling",), ort_forms=True))

PTE = register(Format(
    name="pte", suffix=".pte", title="ExecuTorch program (XNNPACK delegate)",
    exporter=_lazy(".pte_export", "export_artifact"),
    host_runtime=_lazy(".runtimes", "run_pte"), runner=RunnerKind.NATIVE, rank=0,
    default=True, layout_option=True,
    runtime_rewrites=("aligned_classifier", "aligned_expansion"), partitioners=("xnnpack",)))


def _export_ort(job: ExportJob) -> tuple[bytes, dict]:
    """ONNX Runtime Mobile's ORT format of the job's ONNX graph, optimised at the extended level
    by ONNX Runtime itself (``onnx_export.save_ort_forms``: no x86-only layouts)."""
    import tempfile

    import onnx
    import onnxruntime

    from . import onnx_export

    proto = onnx_export.graph(job)
    with tempfile.TemporaryDirectory(prefix="seaformer-ort-") as tmp:
        source = Path(tmp) / f"{job.unit.name}.onnx"
        onnx_export.save(proto, source)
        forms = onnx_export.save_ort_forms(source)
        optimized = onnx.load(str(forms["optimized_onnx"]))
        data = forms["ort_format"].read_bytes()
    return data, {"onnx": onnx_export.describe(proto),          # the graph it was made from
                  "ort": {"onnxruntime": onnxruntime.__version__, "optimization": "extended",
                          "nodes": len(optimized.graph.node)},
                  "operators": onnx_export.operator_histogram(optimized),
                  **onnx_export.quantization_details(job)}


ORT = register(Format(
    name="ort", suffix=".ort", title="ORT format (ONNX Runtime Mobile)", exporter=_export_ort,
    host_runtime=_lazy(".runtimes", "run_onnx"), runner=RunnerKind.ONNXRUNTIME, rank=2,
    runtime_rewrites=ONNX.runtime_rewrites))
