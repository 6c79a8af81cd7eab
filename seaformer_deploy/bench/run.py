"""``seaformer-deploy bench``: run exported artifacts on one core of a device and measure them.

Protocol, per runner (native ExecuTorch for .pte, ONNX Runtime for .onnx):
  * every artifact gets real inputs: the sample image for the whole model and the stem, the true
    intermediate tensors (written by the export) for the other components;
  * a runner loads all its artifacts, warms each up (>= N iterations and >= S seconds), then
    times them in interleaved rounds, so slow drift hits all alike;
  * the work is split in blocks that alternate between runners, so that comparisons across
    formats are interleaved too; the device state is read before and after every block;
  * the outputs of the final run are pulled back and compared with PyTorch FP32 (on-device
    parity, the export's thresholds).
"""

from __future__ import annotations

import math
import posixpath
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..devices import Device, DeviceInfo, get_device
from ..devices.probe import CoreChoice
from ..errors import UserError
from ..export import manifest as mf
from ..export.parity import THRESHOLDS, compare, failures, worst
from ..runners import native
from ..runners.plan import (ModelRun, PlannedModel, Protocol, RunResult, parse_result, plan_text,
                            read_output)
from .stats import DEFAULT_CV_LIMIT

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchOptions:
    artifacts: Path                      # an export folder (with manifest.json)
    device: str | None = None
    formats: tuple[str, ...] = ("pte", "onnx")
    precisions: tuple[str, ...] = ("fp32", "fp16")
    core: int | None = None
    protocol: Protocol = Protocol()
    blocks: int = 2
    cv_limit: float = DEFAULT_CV_LIMIT
    parity: bool = True
    runner_target: str | None = None     # adb devices: override android-arm64 (linux-arm64)


class BenchError(UserError):
    pass


@dataclass
class Runner:
    format: str
    argv: list[str]                 # the command, before PLAN and RESULT
    identity: dict                  # what the report records about it
    files: list[Path]               # what must be on the device (binary, shared libraries)


@dataclass
class Measurement:
    artifact: dict                  # the manifest's entry
    runs: list[ModelRun] = field(default_factory=list)
    outputs: list[np.ndarray] | None = None


@dataclass
class BenchRun:
    """Everything a report is made of."""

    manifest: dict
    folder: Path
    options: BenchOptions
    info: DeviceInfo
    choice: CoreChoice
    protocol: Protocol
    runners: dict[str, Runner]
    blocks: list[dict]
    measurements: list[Measurement]
    started: float
    finished: float = 0.0
    status: str = "complete"        # or "interrupted"
    events: list[str] = field(default_factory=list)


def bench(opts: BenchOptions, progress: Progress | None = None,
          device: Device | None = None) -> BenchRun:
    """Measure the selected artifacts of ``opts.artifacts`` on ``device``."""
    started = time.time()
    folder = Path(opts.artifacts)
    manifest = mf.load(folder)
    if manifest is None:
        raise BenchError(f"{folder} holds no valid export (manifest.json missing or invalid): "
                         f"run `seaformer-deploy export` first, or pass --variant/--model.")
    device = device or get_device(opts.device, opts.runner_target)
    info = device.probe()
    choice = device.choose_core(info, opts.core)
    protocol = replace(opts.protocol, core=choice.core)
    selected = _select(manifest, opts, device)
    runners = build_runners(selected, device, progress)
    staged = _stage(folder, manifest, selected, runners, device)
    measurements = {a["path"]: Measurement(a) for a in selected}
    run = BenchRun(manifest, folder, opts, info, choice, protocol, runners, [],
                   list(measurements.values()), started)
    plan = block_plan(selected, opts.blocks)
    last = {fmt: i for i, (fmt, _) in enumerate(plan)}
    try:
        for index, (fmt, arts) in enumerate(plan):
            if progress:
                progress(f"block {index + 1}/{len(plan)}: {len(arts)} {fmt} artifacts", index,
                         len(plan))
            block, result = _run_block(device, runners[fmt], arts, staged, protocol, opts, index,
                                       with_outputs=opts.parity and last[fmt] == index)
            run.blocks.append(block)
            for art in arts:
                measurements[art["path"]].runs.append(result.models[art["path"]])
        if opts.parity:
            _fetch_outputs(device, run.measurements, staged.workdir)
    except KeyboardInterrupt:
        run.status = "interrupted"
        run.events.append(f"interrupted by the user after {len(run.blocks)} of {len(plan)} "
                          f"blocks")
    finally:
        device.cleanup()
    run.finished = time.time()
    return run


def _select(manifest: dict, opts: BenchOptions, device: Device) -> list[dict]:
    formats = [f for f in opts.formats if f in device.formats]
    if not formats:
        raise BenchError(f"device {device.name} runs {', '.join(device.formats)} artifacts; "
                         f"--formats asked for {', '.join(opts.formats)}.")
    chosen = [a for a in manifest["artifacts"]
              if a["format"] in formats and a["precision"] in opts.precisions]
    if not chosen:
        raise BenchError(f"the export has no {'/'.join(formats)} artifact in "
                         f"{'/'.join(opts.precisions)}; re-export with those --formats and "
                         f"--precisions.")
    return chosen


def build_runners(selected: list[dict], device: Device, progress: Progress | None) -> dict:
    runners = {}
    formats = {a["format"] for a in selected}
    if "pte" in formats:
        if progress:
            progress(f"building the native runner for {device.runner_target}", 0, 0)
        build = native.build_runner(device.runner_target)
        runners["pte"] = Runner("pte", [], {
            "runner": "seaformer-native-runner", "target": build.target,
            "runtime": "executorch", "runtime_version": build.executorch_version,
            "build_digest": build.digest, "binary_sha256": mf.sha256_path(build.binary),
            "libraries": [p.name for p in build.libraries]}, [build.binary, *build.libraries])
    if "onnx" in formats:
        if device.kind != "local":
            raise BenchError("ONNX artifacts run on the local device only; pass --formats pte.")
        import onnxruntime

        runners["onnx"] = Runner(
            "onnx", [sys.executable, "-m", "seaformer_deploy.runners.onnx_runner"],
            {"runner": "seaformer-onnx-runner", "runtime": "onnxruntime",
             "runtime_version": onnxruntime.__version__, "python": sys.version.split()[0]}, [])
    return runners


@dataclass
class Staged:
    paths: dict[str, str]           # local name (see stage_files) -> path on the device
    workdir: str


def _stage(folder: Path, manifest: dict, selected: list[dict], runners: dict[str, Runner],
           device: Device) -> Staged:
    local = {a["path"]: folder / a["path"] for a in selected}
    local |= {t["path"]: folder / t["path"] for t in manifest["tensors"]}
    staged = stage_files(device, local, runners)
    make_dirs(device, [f"{staged.workdir}/outputs/{a['path']}" for a in selected])
    return staged


def stage_files(device: Device, local: dict[str, Path], runners: dict[str, Runner]) -> Staged:
    """Put ``local`` (name -> file) and the runners' files on the device; point each runner's
    command at its staged binary."""
    local = dict(local)
    for runner in runners.values():
        local |= {f.name: f for f in runner.files}
    where = device.stage(list(local.values()))
    paths = {name: where[path] for name, path in local.items()}
    if "pte" in runners:
        runners["pte"].argv = [paths[runners["pte"].files[0].name]]
    return Staged(paths, device.workdir())


def make_dirs(device: Device, folders: list[str]) -> None:
    if not folders:
        return
    made = device.shell("mkdir -p " + " ".join(shlex.quote(f) for f in folders))
    if made.returncode != 0:
        raise BenchError(f"cannot create the work folders on {device.name}: {made.stderr}")


def block_plan(selected: list[dict], blocks: int) -> list[tuple[str, list[dict]]]:
    """Blocks alternate between runners (pte, onnx, onnx, pte, ...)."""
    formats = sorted({a["format"] for a in selected}, key=lambda f: f != "pte")
    plan = []
    for b in range(max(1, blocks)):
        order = formats if b % 2 == 0 else formats[::-1]
        plan += [(f, [a for a in selected if a["format"] == f]) for f in order]
    return plan


def block_protocol(protocol: Protocol, blocks: int) -> Protocol:
    """Each block takes its share of the timed iterations, seconds and rounds."""
    blocks = max(1, blocks)
    return replace(protocol, iterations=max(1, math.ceil(protocol.iterations / blocks)),
                   min_seconds=protocol.min_seconds / blocks,
                   rounds=max(1, math.ceil(protocol.rounds / blocks)))


def _run_block(device: Device, runner: Runner, arts: list[dict], staged: Staged,
               protocol: Protocol, opts: BenchOptions, index: int,
               with_outputs: bool) -> tuple[dict, RunResult]:
    models = [PlannedModel(a["path"], staged.paths[a["path"]],
                           tuple(staged.paths[t["file"]] for t in a["inputs"]),
                           f"outputs/{a['path']}" if with_outputs else None)
              for a in arts]
    return run_plan(device, runner, models, block_protocol(protocol, opts.blocks),
                    staged.workdir, index)


def run_plan(device: Device, runner: Runner, models: list[PlannedModel], protocol: Protocol,
             workdir: str, index: int) -> tuple[dict, RunResult]:
    """One runner process over ``models``, run in ``workdir`` (relative output folders in the
    plan resolve there), with the device state read before and after."""
    plan_path = f"{workdir}/plan-{index}.txt"
    result_path = f"{workdir}/result-{index}.json"
    device.write_text(plan_path, plan_text(protocol, models))
    before = device.state()
    started = time.perf_counter()
    proc = device.run([*runner.argv, plan_path, result_path],
                      timeout=_timeout(protocol, len(models)), cwd=workdir)
    wall = time.perf_counter() - started
    after = device.state()
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise BenchError(f"the {runner.format} runner failed (exit {proc.returncode}) in block "
                         f"{index + 1}:\n{tail}")
    result = parse_result(device.read_text(result_path))
    block = {"index": index, "format": runner.format, "artifacts": [m.id for m in models],
             "protocol": asdict(protocol), "state_before": before.to_dict(),
             "state_after": after.to_dict(), "wall_seconds": round(wall, 3),
             "pinned": result.pinned, "pin_error": result.pin_error,
             "threads": result.threads, "peak_rss_kb": result.peak_rss_kb,
             "runtime_version": result.runtime_version}
    return block, result


def _timeout(protocol: Protocol, n: int) -> float:
    """Generous: each model's warm-up and timing minima ten times over, plus a minute."""
    return 60 + 10 * n * (protocol.warmup_seconds + protocol.min_seconds + 5)


def _fetch_outputs(device: Device, measurements: list[Measurement], workdir: str) -> None:
    """Pull the outputs the last run wrote (paths relative to ``workdir``) and read them as
    logical (N, C, H, W) arrays."""
    with tempfile.TemporaryDirectory(prefix="seaformer-outputs-") as tmp:
        for m in measurements:
            arrays = []
            for i, record in enumerate(m.runs[-1].outputs):
                local = Path(tmp) / f"{m.artifact['path']}.{i}.bin"
                device.fetch(posixpath.join(workdir, record["path"]), local)
                arrays.append(read_output(record, local))
            m.outputs = arrays


def device_parity(art: dict, outputs: list[np.ndarray], folder: Path) -> dict:
    """Outputs of one on-device run against the export's FP32 references (first sample)."""
    metrics = {}
    for tensor, got in zip(art["outputs"], outputs, strict=True):
        dtype = "int64" if tensor["kind"] == "labels" else "float32"
        ref = np.fromfile(folder / tensor["file"], dtype=dtype).reshape(tensor["shape"])
        metrics[tensor["name"]] = compare(ref, got.astype(ref.dtype), tensor["kind"])
    summary = worst(list(metrics.values()))
    fails = failures(summary, art["precision"])
    return {"reference": "PyTorch FP32 eager on the first sample (from the export)",
            "samples": 1, "outputs": {k: m.to_dict() for k, m in metrics.items()},
            "worst": summary.to_dict(), "thresholds": THRESHOLDS[art["precision"]],
            "passed": not fails, "failures": fails}
