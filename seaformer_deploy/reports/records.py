"""The bench report as typed records: what ``bench`` writes and ``report show`` and the gate read.

``to_dict`` gives the JSON form ``report.schema.json`` describes, ``from_dict`` reads it back
once the schema check has passed (``reports.files``). Where a report holds open-ended facts of
a device or a runner (its properties, the device state per block), the record keeps them as
dicts: they are recorded for provenance and read by name only where a reader needs one.

A field with a default may be absent from a report written before it existed; every other
field is required by the schema (tests/reports/test_report_records.py checks both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..bench.noise import Noise
from ..bench.stats import Summary
from ..export.records import Input, Model, Output, Parity, Record, Sample

SCHEMA_NAME = "seaformer-deploy/bench-report"
SCHEMA_VERSION = 1
COMPONENTS = ("stem", "context", "spatial", "head")


@dataclass
class Core(Record):
    """The CPU core the runner was pinned to (-1: none), and why that one."""

    index: int
    reason: str


@dataclass
class Fingerprint(Record):
    """What must match for two reports' latencies to be comparable, and its digest."""

    fields: dict[str, Any]
    digest: str


@dataclass
class Device(Record):
    name: str
    kind: str
    transport: str
    topology: dict[str, Any]
    properties: dict[str, Any]
    core: Core
    fingerprint: Fingerprint
    profile: dict[str, Any] | None = None        # the device profile used, and its mismatches


@dataclass
class ExportInfo(Record):
    """The export that was benchmarked: the manifest's identity, and the hash of the file."""

    folder: str
    model: Model
    input: Input
    output: Output
    weights: dict[str, Any]
    samples: list[Sample]
    cache_key: str
    manifest_sha256: str
    export_tools: dict[str, str]


@dataclass
class Measured(Record):
    """One artifact's raw samples (with the CPU, block and round of each), their statistics
    and, where the runner wrote outputs, its parity on the device."""

    path: str
    unit: str
    format: str
    precision: str
    sha256: str
    bytes: int
    samples_ms: list[float]
    cpus: list[int]
    blocks: list[int]
    rounds: list[int]
    cpu_ok: bool
    load_ms: list[float]
    warmup_iterations: list[int]
    rss_after_load_kb: int
    stats: Summary
    parity: Parity | None
    # metric instructions: callgrind's events per counted iteration (Ir, I1mr, D1mr, ...);
    # samples_ms then hold the runner's timings under valgrind, not the program's latency
    counts: dict[str, list[int]] | None = None

    def instructions(self) -> float | None:
        """The median instructions per iteration (instruction mode)."""
        return float(np.median(self.counts["Ir"])) if self.counts else None


@dataclass
class Failure(Record):
    """An artifact the runner died or hung on, and what it measured before."""

    path: str
    unit: str
    format: str
    precision: str
    block: int
    reason: str
    returncode: int | None
    signal: str | None
    stderr_tail: str
    samples_ms: list[float]
    runner: str | None = None
    phase: str | None = None
    timeout_seconds: float | None = None


@dataclass
class Share(Record):
    median_ms: float
    share: float


@dataclass
class Breakdown(Record):
    """Per format and precision: each component's median, its share, and sum / whole."""

    format: str
    precision: str
    whole_median_ms: float | None
    sum_median_ms: float
    sum_over_whole: float | None
    components: dict[str, Share]


@dataclass
class Paper(Record):
    """The paper's component shares a report is set beside."""

    shares: dict[str, float]
    model: str = ""
    source: str = ""


@dataclass
class Report(Record):
    schema: str
    schema_version: int
    status: str                       # complete, or interrupted (what was measured is kept)
    created: str
    wall_seconds: float
    command: list[str]
    tools: dict[str, str]
    device: Device
    protocol: dict[str, Any]
    runners: dict[str, dict[str, Any]]
    export: ExportInfo
    blocks: list[dict[str, Any]]
    artifacts: list[Measured]
    components: list[Breakdown]
    paper: Paper | None
    events: list[str]
    warnings: list[str]
    failures: list[Failure] = field(default_factory=list)
    noise: Noise | None = None        # where the timing noise came from
    metric: str = "latency"           # or instructions (bench --metric): what was measured

    def formats(self) -> set[str]:
        return {a.format for a in self.artifacts}

    def parity_failures(self) -> list[str]:
        """Artifacts whose on-device outputs did not match PyTorch."""
        return [a.path for a in self.artifacts if a.parity is not None and not a.parity.passed]
