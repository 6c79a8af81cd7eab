"""Interleaved A/B: baseline and candidate artifacts timed side by side on one core, one session.

Protocol:
  * both export folders must hold the same workload (model, classes, input size, output mode);
    every artifact present in both (after --formats/--precisions/--units) is compared;
  * each block is one runner process holding both sides' artifacts, planned as
    ``A:x, B:x, A:y, B:y, ...`` and run round-robin, so each round times A and B of an artifact
    back to back (drift, frequency and thermal state hit both alike);
  * blocks alternate which side goes first (A-B, B-A, ...) and each loads the artifacts afresh,
    so neither side owns a load order or a memory layout;
  * a pair is the two sides' median latencies in the same round: drift between rounds cancels in
    the ratio, and the paired test (Wilcoxon signed-rank) decides on the pairs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..devices import Device, DeviceInfo, device_fingerprint, device_profile, get_device
from ..devices.probe import CoreChoice
from ..errors import option
from ..export import formats as fmts
from ..export import manifest as mf
from ..export.records import Artifact, Manifest
from ..runners.plan import PlannedModel, Protocol
from ..runners.session import (Runner, RunnerChoice, Staged, build_runners, check_start,
                               run_plan, stage_files)
from .compare import GateError, GateResult, Row, Selection, artifact_order, export_mismatch
from .stats import latency_problem, paired_shift
from .verdict import INCOMPARABLE, Rule, decide

SIDES = ("A", "B")                   # baseline, candidate
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ABOptions:
    baseline: Path                   # export folders
    candidate: Path
    device: str | None = None
    selection: Selection = Selection(formats=(fmts.PTE.name,), precisions=("fp32",))
    core: int | None = None
    blocks: int = 4                  # runner processes, alternating which side goes first
    rounds: int = 8                  # pairs per artifact per block
    iterations: int = 5              # timed iterations per side per round
    warmup_iterations: int = 5
    warmup_seconds: float = 0.2
    runner: RunnerChoice = RunnerChoice()   # which native runner build (default: the device's)
    wait_seconds: float = 0.0            # wait this long for another bench to free the device

    def __post_init__(self) -> None:
        """Refuse counts that cannot give a verdict before anything is staged or measured."""
        for field, value, least in (("blocks", self.blocks, 1), ("rounds", self.rounds, 1),
                                    ("iterations", self.iterations, 1),
                                    ("warmup_iterations", self.warmup_iterations, 0),
                                    ("wait_seconds", self.wait_seconds, 0)):
            if not value >= least:                    # also refuses NaN
                raise GateError(f"{option(field)} {value} is below {least}: an A/B run needs at "
                                f"least {least}.")


@dataclass
class Sides:
    """One artifact's samples on both sides, with their block and round."""

    artifact: Artifact
    samples: dict[str, list[np.ndarray]] = field(default_factory=lambda: {s: [] for s in SIDES})
    rounds: dict[str, list[np.ndarray]] = field(default_factory=lambda: {s: [] for s in SIDES})

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Per (block, round) present on both sides: each side's median latency."""
        a, b = [], []
        for block in range(len(self.samples["A"])):
            ra, rb = self.rounds["A"][block], self.rounds["B"][block]
            for r in np.intersect1d(ra, rb):
                a.append(np.median(self.samples["A"][block][ra == r]))
                b.append(np.median(self.samples["B"][block][rb == r]))
        return np.asarray(a), np.asarray(b)


@dataclass
class ABRun:
    options: ABOptions
    manifests: dict[str, Manifest]
    info: DeviceInfo
    choice: CoreChoice
    protocol: Protocol
    runners: dict[str, Runner]
    sides: dict[str, Sides]
    missing: dict[str, str]          # artifact -> side it is missing from
    blocks: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    events: list[str] = field(default_factory=list)   # teardown steps that failed


@dataclass(frozen=True)
class ABInputs:
    """The two export folders, read and checked: what an A/B run measures."""

    folders: dict[str, Path]
    manifests: dict[str, Manifest]
    selected: dict[str, Artifact]    # artifact path -> its (candidate) manifest record
    missing: dict[str, str]          # artifact path -> the side it is missing from


def check_inputs(opts: ABOptions) -> ABInputs:
    """Read both export folders and refuse an unusable pair, before any device is touched (the
    command line calls it before its progress display, so an error prints alone)."""
    folders = {"A": Path(opts.baseline), "B": Path(opts.candidate)}
    manifests = {side: _load(folder, side) for side, folder in folders.items()}
    problems = export_mismatch(*(manifests[side] for side in SIDES))
    if problems:
        raise GateError("the two exports are different workloads, not an A/B pair: "
                        + "; ".join(problems) + ". Export both with the same model and options.")
    selected, missing = _select(manifests, opts.selection)
    return ABInputs(folders, manifests, selected, missing)


def run_ab(opts: ABOptions, progress: Progress | None = None,
           device: Device | None = None, inputs: ABInputs | None = None) -> ABRun:
    started = time.perf_counter()
    inputs = inputs or check_inputs(opts)
    device = device or get_device(opts.device)
    device.acquire_lock(opts.wait_seconds)
    events: list[str] = []
    try:
        run = _run_ab_locked(opts, progress, device, inputs.folders, inputs.manifests,
                             inputs.selected, inputs.missing, started, events)
    finally:
        _teardown(events, device.release_lock, device.close)
    run.events = events
    return run


def _run_ab_locked(opts: ABOptions, progress: Progress | None, device: Device,
                   folders: dict, manifests: dict, selected: dict, missing: dict,
                   started: float, events: list[str]) -> ABRun:
    info = device.probe()
    choice = device.choose_core(info, opts.core)
    protocol = Protocol(core=choice.core, threads=1, warmup_iterations=opts.warmup_iterations,
                        warmup_seconds=opts.warmup_seconds,
                        iterations=opts.rounds * opts.iterations, min_seconds=0.0,
                        rounds=opts.rounds)
    runners = build_runners({a.format for a in selected.values()}, device, info,
                            opts.runner, device_profile(info), progress)
    run = ABRun(opts, manifests, info, choice, protocol, runners,
                {p: Sides(a) for p, a in selected.items()}, missing)
    try:
        staged = _stage(device, folders, manifests, selected, runners)
        for runner in (r for f, r in runners.items() if fmts.get(f).check_start):
            runner.identity["version_output"] = check_start(device, runner, staged.workdir)
        plan = [(b, fmt) for b in range(max(1, opts.blocks)) for fmt in runners]
        for index, (block, fmt) in enumerate(plan):
            if progress:
                progress(f"A/B block {block + 1}/{opts.blocks} ({fmt})", index, len(plan))
            order = SIDES if block % 2 == 0 else SIDES[::-1]
            arts = [p for p, a in selected.items() if a.format == fmt]
            models = [_planned(side, p, selected[p], staged) for p in arts for side in order]
            meta, result = run_plan(device, runners[fmt], models, protocol, staged.workdir, index)
            run.blocks.append({**meta, "first": order[0]})
            for p in arts:
                for side in SIDES:
                    got = result.models[f"{side}:{p}"]
                    run.sides[p].samples[side].append(got.samples_ms)
                    run.sides[p].rounds[side].append(got.rounds)
    finally:
        _teardown(events, device.kill_session, device.cleanup)
    run.seconds = time.perf_counter() - started
    return run


def _teardown(events: list[str], *steps: Callable[[], object]) -> None:
    """Run every step; a failing one is noted in ``events``, never raised: raised from a
    ``finally`` it would replace what is propagating (a Ctrl-C's KeyboardInterrupt, exit 130)
    and skip the steps after it (the device lock would stay held)."""
    for step in steps:
        try:
            step()
        except Exception as exc:              # noqa: BLE001 - recorded, see the docstring
            events.append(f"cleanup: {getattr(step, '__name__', step)} failed: {exc}")


def _load(folder: Path, side: str) -> Manifest:
    manifest = mf.load(folder)
    if manifest is None:
        name = "baseline" if side == "A" else "candidate"
        raise GateError(f"the {name} artifacts folder {folder} holds no valid export "
                        f"(manifest.json missing or invalid): pass an export folder made by "
                        f"`seaformer-deploy export`.")
    return manifest


def _select(manifests: dict[str, Manifest], selection: Selection) -> tuple[dict, dict]:
    kept = {side: {a.path: a for a in m.artifacts
                   if selection.allows(a.format, a.precision, a.unit)}
            for side, m in manifests.items()}
    both = [p for p in kept["A"] if p in kept["B"]]
    missing = {p: "candidate" for p in kept["A"] if p not in kept["B"]}
    missing |= {p: "baseline" for p in kept["B"] if p not in kept["A"]}
    if not both:
        raise GateError("the two exports have no artifact in common for the selected "
                        "--formats/--precisions/--units; export both with the same options.")
    return {p: kept["B"][p] for p in both}, missing


def _stage(device: Device, folders: dict[str, Path], manifests: dict[str, Manifest],
           selected: dict[str, Artifact], runners: dict[str, Runner]) -> Staged:
    """Both sides' artifacts and input tensors, named ``A:<file>`` and ``B:<file>``."""
    local = {}
    for side, folder in folders.items():
        for path in selected:
            local[f"{side}:{path}"] = folder / path
            for tensor in manifests[side].artifact(path).inputs:
                local[f"{side}:{tensor.file}"] = folder / tensor.file
    return stage_files(device, local, runners)


def _planned(side: str, path: str, artifact: Artifact, staged: Staged) -> PlannedModel:
    return PlannedModel(f"{side}:{path}", staged.paths[f"{side}:{path}"],
                        tuple(staged.paths[f"{side}:{t.file}"] for t in artifact.inputs))


def gate_ab(run: ABRun, rule: Rule, unstable_is_failure: bool = False) -> GateResult:
    """One verdict per artifact, from its paired rounds."""
    rows = []
    for path, sides in run.sides.items():
        art = sides.artifact
        a, b = sides.pairs()
        if len(a) < 2:
            raise GateError(f"{path}: fewer than two paired rounds were measured")
        _check_pairs(path, a, b)
        shift = paired_shift(a, b, rule.confidence)
        verdict, reason = decide(shift, rule)
        rows.append(Row(path, art.unit, art.format, art.precision, verdict, reason, shift))
    for path, side in run.missing.items():
        art = next(a for m in run.manifests.values() for a in m.artifacts if a.path == path)
        rows.append(Row(path, art.unit, art.format, art.precision, INCOMPARABLE,
                        f"not in the {side} export"))
    rows.sort(key=lambda row: artifact_order(row.artifact))
    return GateResult("ab", rule, rows, _side(run, "A"), _side(run, "B"),
                      unstable_is_failure=unstable_is_failure)


def _check_pairs(path: str, a: np.ndarray, b: np.ndarray) -> None:
    """Latencies from the runner that the paired test cannot use (NaN, 0, negative) are a
    broken timer or runner, not a slowdown: say so instead of deciding on them."""
    for name, values in (("baseline", a), ("candidate", b)):
        if problem := latency_problem(values):
            raise GateError(f"{path}: the {name} side's per-round medians {problem}; the runner "
                            f"reported latencies no artifact can have. Re-run the A/B; if it "
                            f"repeats, rebuild the runner (`seaformer-deploy runner build "
                            f"--force`).")


def _side(run: ABRun, side: str) -> dict:
    m = run.manifests[side]
    folder = run.options.baseline if side == "A" else run.options.candidate
    return {"source": str(folder), "created": m.created, "model": m.model.name,
            "input_size": m.input.size, "output": m.output.mode,
            "weights": m.weights, "cache_key": m.cache_key,
            "manifest_sha256": mf.sha256_path(Path(folder) / mf.MANIFEST),
            "artifacts": {a.path: a.sha256 for a in m.artifacts},
            "device": run.info.name}


def measurements(run: ABRun) -> dict:
    """The raw material of an A/B verdict, for the verdict file: device, protocol, samples."""
    state = run.blocks[0]["state_before"] if run.blocks else {}
    runners = {f: r.identity for f, r in run.runners.items()}
    artifacts = {}
    for path, sides in run.sides.items():
        a, b = sides.pairs()
        artifacts[path] = {
            **{side: {"samples_ms": [round(float(v), 6) for arr in sides.samples[side]
                                     for v in arr],
                      "blocks": [i for i, arr in enumerate(sides.samples[side])
                                 for _ in range(len(arr))],
                      "rounds": [int(r) for arr in sides.rounds[side] for r in arr]}
               for side in SIDES},
            "pairs_ms": {"A": [round(float(v), 6) for v in a],
                         "B": [round(float(v), 6) for v in b]}}
    return {"device": {**run.info.to_dict(),
                       "core": {"index": run.choice.core, "reason": run.choice.reason},
                       "fingerprint": device_fingerprint(run.info, run.choice.core, state,
                                                         runners)},
            "protocol": {**{k: getattr(run.protocol, k) for k in (
                "core", "threads", "warmup_iterations", "warmup_seconds", "rounds")},
                "iterations_per_round": run.options.iterations, "blocks": run.options.blocks,
                "sides": {"A": "baseline", "B": "candidate"}},
            "runners": runners, "blocks": run.blocks, "seconds": round(run.seconds, 2),
            "events": run.events,
            "samples": artifacts}
