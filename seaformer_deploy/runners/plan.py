"""The contract every runner follows: a plan file in, a result JSON out.

Both runners (the native ExecuTorch one, ``native/runner.cpp``, and the ONNX Runtime one,
``onnx_runner.py``) take ``PLAN_FILE RESULT_JSON``. The plan is line-based so that C++ can read it
without a JSON library; the result is JSON with, per model, every timed iteration's nanoseconds,
the CPU it finished on and the round it ran in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Protocol:
    """How long to warm up and measure, and where."""

    core: int = -1                 # CPU to pin to; -1 leaves the process unpinned
    threads: int = 1
    warmup_iterations: int = 10
    warmup_seconds: float = 0.5
    iterations: int = 50
    min_seconds: float = 2.0
    rounds: int = 5
    cooldown_seconds: float = 0.0
    count_library: str | None = None   # ONNX runner, instruction mode: runners/counting.py


@dataclass(frozen=True)
class PlannedModel:
    id: str                        # artifact file name, unique within a plan
    path: str                      # where the runner finds the artifact (on the device)
    inputs: tuple[str, ...]        # raw input files, in the artifact's input order
    outputs_dir: str | None = None


def plan_text(protocol: Protocol, models: list[PlannedModel], progress: str | None = None
              ) -> str:
    """The plan file's text; rejects values that would break its line format. ``progress``: a
    file the runner appends ``<phase> <model id>`` lines to as it goes."""
    lines = [f"core {protocol.core}", f"threads {protocol.threads}",
             f"warmup {protocol.warmup_iterations} {protocol.warmup_seconds}",
             f"timed {protocol.iterations} {protocol.min_seconds}",
             f"rounds {protocol.rounds}", f"cooldown {protocol.cooldown_seconds}"]
    for key, value in (("progress", progress), ("count", protocol.count_library)):
        if value:
            if "\n" in value or "\r" in value:
                raise ValueError(f"the {key} path contains a line break")
            lines.append(f"{key} {value}")
    for model in models:
        values = [model.id, model.path, *model.inputs, model.outputs_dir or ""]
        if any("\n" in v or "\r" in v for v in values):
            raise ValueError(f"a path of {model.id!r} contains a line break")
        lines += [f"model {model.id}", f"path {model.path}"]
        lines += [f"input {i}" for i in model.inputs]
        if model.outputs_dir:
            lines.append(f"outputs {model.outputs_dir}")
    return "\n".join(lines) + "\n"


def current_model(progress_text: str) -> tuple[str, str] | None:
    """(phase, model id) of the last line a runner wrote to its progress file."""
    lines = [line for line in progress_text.splitlines() if " " in line]
    if not lines:
        return None
    phase, _, model_id = lines[-1].partition(" ")
    return phase, model_id


@dataclass
class ModelRun:
    """One model's measurements from a runner."""

    id: str
    load_ms: float
    warmup_iterations: int
    warmup_seconds: float
    samples_ms: np.ndarray
    cpus: np.ndarray
    rounds: np.ndarray
    rss_after_load_kb: int
    outputs: list[dict] = field(default_factory=list)


@dataclass
class RunResult:
    runner: str
    runtime: str
    runtime_version: str
    requested_core: int
    pinned: bool
    pin_error: str | None
    threads: int
    peak_rss_kb: int
    wall_seconds: float
    models: dict[str, ModelRun]


def parse_result(text: str) -> RunResult:
    raw = json.loads(text)
    models = {}
    for m in raw["models"]:
        models[m["id"]] = ModelRun(
            id=m["id"], load_ms=float(m["load_ms"]),
            warmup_iterations=int(m["warmup_iterations"]),
            warmup_seconds=float(m["warmup_seconds"]),
            samples_ms=np.asarray(m["samples_ns"], dtype=np.float64) / 1e6,
            cpus=np.asarray(m["cpus"], dtype=np.int64),
            rounds=np.asarray(m["rounds"], dtype=np.int64),
            rss_after_load_kb=int(m["rss_after_load_kb"]), outputs=list(m["outputs"]))
    return RunResult(raw["runner"], raw["runtime"], raw["runtime_version"],
                     int(raw["requested_core"]), bool(raw["pinned"]), raw.get("pin_error"),
                     int(raw["threads"]), int(raw["peak_rss_kb"]), float(raw["wall_seconds"]),
                     models)


def load_result(path: Path) -> RunResult:
    return parse_result(Path(path).read_text())


def read_output(record: dict, path: Path | None = None) -> np.ndarray:
    """A runner's output file as an array in the program's shape, whatever its memory order.

    ``record`` is the runner's description (dtype, shape, dim_order); ``path`` overrides where
    the bytes are (a copy pulled from a device)."""
    order = record.get("dim_order") or list(range(len(record["shape"])))
    stored = [record["shape"][d] for d in order]
    array = np.fromfile(path or record["path"], dtype=record["dtype"]).reshape(stored)
    return np.ascontiguousarray(array.transpose(np.argsort(order)))
