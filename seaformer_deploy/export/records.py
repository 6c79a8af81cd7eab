"""The export manifest as typed records: what ``export`` writes and every later stage reads.

``to_dict`` gives a record's JSON form, the one ``manifest.schema.json`` describes; ``from_dict``
reads it back (after the schema check, in ``manifest.read``). Fields marked ``optional()`` are
left out of the JSON when they are None, as the schema allows; every other field is written.
The conversion is cattrs' (nested records, lists, dicts and Optionals), so these classes hold
no serialisation code of their own. tests/export/test_records.py checks each record against its
schema definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

_OPTIONAL = "optional"


def optional() -> Any:
    """A field that is None when it does not apply, and then absent from the JSON."""
    return field(default=None, metadata={_OPTIONAL: True})


def _unstructure_fn(cls: type) -> Any:
    skip = {f.name: override(omit_if_default=True) for f in fields(cls)
            if f.metadata.get(_OPTIONAL)}
    return make_dict_unstructure_fn(cls, _converter, **skip)


_converter = cattrs.Converter()
_converter.register_unstructure_hook_factory(is_dataclass, _unstructure_fn)
# A tuple field (a pair such as a confidence interval) is a JSON array, as json reads it back.
_converter.register_unstructure_hook_func(
    lambda t: getattr(t, "__origin__", t) is tuple,
    lambda value: [_converter.unstructure(v) for v in value])


class Record:
    """A dataclass with a JSON form."""

    def to_dict(self) -> dict:
        return _converter.unstructure(self)

    @classmethod
    def from_dict(cls, data: dict) -> Any:
        return _converter.structure(data, cls)


@dataclass
class Metrics(Record):
    """How far an output is from the reference; ``None`` where a metric does not apply."""

    max_abs_err: float | None
    mean_abs_err: float | None
    psnr_db: float | None
    cosine: float | None
    label_agreement: float | None      # % of pixels whose argmax (or label) equals the reference


@dataclass
class Parity(Record):
    """An artifact's (or a chain's) outputs against PyTorch FP32, and the gate's verdict."""

    reference: str
    samples: int
    outputs: dict[str, Metrics]
    worst: Metrics
    thresholds: dict[str, float]
    passed: bool
    failures: list[str]


@dataclass(kw_only=True)
class Tensor(Record):
    """A unit's input or output; an artifact's also names its file and memory order."""

    name: str
    shape: list[int]
    dtype: str
    kind: str | None = optional()               # image, features, logits or labels
    layout: str | None = optional()             # NCHW, NHWC or NHW (export/layouts.py)
    dim_order: list[int] | None = optional()    # artifacts only: the memory order fed
    file: str | None = optional()               # artifacts only: input, or FP32 reference


@dataclass
class TensorFile(Record):
    """One tensor of the first sample, written raw (little-endian) under ``tensors/``."""

    name: str
    dtype: str
    shape: list[int]
    dim_order: list[int]
    layout: str
    path: str
    sha256: str


@dataclass
class OrtForm(Record):
    """ONNX Runtime's optimised graph or ORT-format file of an ONNX artifact, checked too."""

    kind: str
    path: str
    sha256: str
    bytes: int
    parity: Parity


@dataclass(kw_only=True)
class Artifact(Record):
    """One exported file: what it is, what it takes and gives, how it was made, its parity."""

    path: str
    unit: str
    format: str
    precision: str
    sha256: str
    bytes: int
    inputs: list[Tensor]
    outputs: list[Tensor]
    operators: dict[str, int]
    onnx: dict | None = optional()              # ONNX: opset, IR version, operator sets
    executorch: dict | None = optional()        # .pte: version, backend, partitions, ...
    ort: dict | None = optional()               # .ort: ONNX Runtime version, optimisation
    ort_forms: list[OrtForm] | None = optional()
    quantization: dict | None = optional()      # INT8: scheme, tool, calibration set
    export_seconds: float
    parity: Parity
    check_seconds: float | None = optional()    # its host-runtime parity check

    def files(self) -> list[str]:
        """Every file the artifact needs besides itself: its inputs and output references."""
        return [t.file for t in [*self.inputs, *self.outputs] if t.file is not None]

    def non_delegated_ops(self) -> dict[str, int]:
        """Operators an ExecuTorch artifact leaves outside its delegate (none for others)."""
        return dict((self.executorch or {}).get("non_delegated_ops", {}))


@dataclass
class Chain(Record):
    """The component artifacts of one format and precision run one after another."""

    format: str
    precision: str
    parity: Parity


@dataclass
class Model(Record):
    name: str
    family: str
    variant: str
    num_classes: int
    params: int
    class_names: list[str] | None       # from the checkpoint; written as null when absent


@dataclass
class Input(Record):
    name: str
    size: list[int]
    layout: str
    dtype: str
    normalization: dict


@dataclass
class Output(Record):
    mode: str
    name: str


@dataclass
class Sample(Record):
    name: str
    sha256: str


@dataclass
class Component(Record):
    name: str
    inputs: list[Tensor]
    outputs: list[Tensor]


@dataclass
class Int8Block(Record):
    """One block quantized alone, everything else FP32 (export/sensitivity.py)."""

    block: str
    params: int
    psnr_db: float
    label_agreement: float         # % of pixels whose class is FP32's, on the sample images


@dataclass
class Int8Step(Record):
    """The model with every block quantized except ``fp32_blocks``."""

    fp32_blocks: list[str]
    psnr_db: float
    label_agreement: float


@dataclass
class Int8Plan(Record):
    """What stays FP32 in every INT8 artifact, and why: the manifest's ``int8``."""

    fp32_blocks: list[str]                  # model-level module names
    chosen_by: str                          # none, keep_fp32 or int8_target_agreement
    classifiers_fp32: list[str]
    calibration: str                        # where the calibration images came from
    target_agreement: float | None = optional()
    steps: list[Int8Step] | None = optional()        # the greedy search, from the user's set
    ranking: list[Int8Block] | None = optional()     # worst first
    simulated: str | None = optional()      # how the ranking and the steps were measured
    seconds: float | None = optional()
    report: list[str] | None = optional()   # the sensitivity report's files in the folder


@dataclass
class Manifest(Record):
    """``manifest.json``: what was exported, from what, with which tools, how faithful."""

    schema: str
    schema_version: int
    model: Model
    weights: dict                   # checkpoint (path, sha256, entry) or synthetic (seed, ...)
    deploy_form: dict               # BatchNorm folded, rewrites, runtime rewrites, extra work
    input: Input
    output: Output
    samples: list[Sample]
    components: list[Component]
    options: dict                   # ExportOptions' recorded fields (ExportOptions.recorded)
    tools: dict[str, str]
    cache_key: str
    created: str
    command: list[str]
    tensors: list[TensorFile]
    artifacts: list[Artifact]
    chains: list[Chain]
    parity_passed: bool
    export_seconds: float
    int8: Int8Plan | None = optional()      # exports with INT8 artifacts
    timings: dict | None = optional()       # export/timings.py: seconds per step

    def artifact(self, path: str) -> Artifact:
        """The artifact whose file is ``path``; KeyError if the export has none."""
        for art in self.artifacts:
            if art.path == path:
                return art
        raise KeyError(path)

    def checks(self) -> list[Parity]:
        """Every parity check of the export: artifacts, their ORT forms and the chains."""
        found = [a.parity for a in self.artifacts] + [c.parity for c in self.chains]
        return found + [f.parity for a in self.artifacts for f in a.ort_forms or []]

    def files(self) -> list[tuple[str, str]]:
        """(path, sha256) of every file the export lists: artifacts, ORT forms, tensors."""
        forms = [f for a in self.artifacts for f in a.ort_forms or []]
        return [(e.path, e.sha256) for e in [*self.artifacts, *forms, *self.tensors]]
